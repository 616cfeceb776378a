# An event is published only once its commit is durable (SPEC §4): with
# synchronous_commit = off a writer's commit reaches the disk only when the
# WAL writer flushes, up to wal_writer_delay (10 s here) later.  A server
# crash right after the sidecar received an event must never un-commit the
# change that event told consumers about.
#
# Deterministic: each round first waits for the WAL writer's flush (an
# unrelated commit becomes durable), so the next flush is about 10 s away;
# the change is committed, its event awaited at the sidecar (milliseconds)
# and the server crashed at once.  Only the worker's own flush can have made
# the change durable by then.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Utils;
use Test::More;
use TaskEventsTest;

my $dapr = start_sidecar();
my $node = new_node('durability', port => $dapr->port, conf => q{
synchronous_commit = off
wal_writer_delay = '10s'
wal_writer_flush_after = '1GB'
bgwriter_lru_maxpages = 0
autovacuum = off
checkpoint_timeout = '1h'
});
$node->safe_psql('postgres', tasks_ddl() . 'CREATE EXTENSION taskevents; CREATE TABLE unrelated (i int);');

# The task ids of the task.created events the sidecar accepted.
sub created_ids
{
	return [ map { $_->{event}{subject} } grep { $_->{event}{type} eq 'task.created' } @{ delivered_events($dapr) } ];
}

for my $round (1 .. 3)
{
	# Wait for a flush of the WAL writer: the next is wal_writer_delay away.
	my $lsn = $node->safe_psql('postgres',
		'INSERT INTO unrelated VALUES (1); SELECT pg_current_wal_insert_lsn()');
	$node->poll_query_until('postgres', "SELECT pg_current_wal_flush_lsn() >= '$lsn'")
	  or die 'the WAL writer did not flush';

	my $before = scalar @{ created_ids() };
	my $id = $node->safe_psql('postgres',
		"INSERT INTO tasks (user_id, title) VALUES (gen_random_uuid(), 'round $round') RETURNING id");
	wait_until("round $round: the event reached the sidecar", sub { scalar @{ created_ids() } > $before }, 20);
	$node->stop('immediate');
	$node->start;

	my %uniq = map { $_ => 1 } @{ created_ids() };    # a crash may send one twice
	my @seen = sort keys %uniq;
	my $list = join(',', map { "'$_'" } @seen);
	is($node->safe_psql('postgres', "SELECT count(*) FROM tasks WHERE id IN ($list)"), scalar @seen,
		"round $round: after a crash right after the publish, every published change is still committed");
	ok((grep { $_ eq $id } @seen), "round $round: the event was of this round's change");
}

$node->stop;
done_testing();
