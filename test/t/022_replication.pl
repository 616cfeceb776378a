# Logical replication that carries the taskevents schema (a publication FOR
# ALL TABLES): the subscriber's queue stays its own.  No row of the
# publisher's queue lands there (so none is delivered twice or collides
# with a local number), its worker halts saying why, and its own writes go
# on.  The subscriber starts as a populated 1.1 install updated to 1.2.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Utils;
use Test::More;
use TaskEventsTest;

my $dapr_pub = start_sidecar();
my $dapr_sub = start_sidecar();
my $pub = new_node('publisher', port => $dapr_pub->port, conf => "wal_level = logical\nmax_wal_senders = 4\nmax_replication_slots = 4\n");
my $sub = new_node('subscriber', port => $dapr_sub->port);

sub titles
{
	my ($dapr) = @_;
	my %n;
	$n{ $_->{event}{data}{title} }++ for grep { $_->{event}{type} eq 'task.created' } @{ delivered_events($dapr) };
	return \%n;
}

sub insert
{
	my ($node, $title) = @_;
	$node->safe_psql('postgres', "INSERT INTO tasks (user_id, title) VALUES (gen_random_uuid(), '$title')");
}

# The subscriber: a 1.1 install with a change waiting, updated to 1.2.
$sub->safe_psql('postgres', tasks_ddl() . "CREATE EXTENSION taskevents VERSION '1.1';");
set_delivery($sub, 'off');
insert($sub, 'queued under 1.1');
$sub->safe_psql('postgres', "ALTER EXTENSION taskevents UPDATE TO '1.2'");
is($sub->safe_psql('postgres', "SELECT extversion FROM pg_extension WHERE extname = 'taskevents'"), '1.2', 'updated to 1.2');
set_delivery($sub, 'on');
wait_until('the change queued under 1.1 is delivered after the update', sub { titles($dapr_sub)->{'queued under 1.1'} });

# The publisher, FOR ALL TABLES; the subscriber subscribes.
$pub->safe_psql('postgres', tasks_ddl() . 'CREATE EXTENSION taskevents; CREATE PUBLICATION everything FOR ALL TABLES;');
insert($pub, "publisher $_") for 1 .. 3;
wait_drained($pub, 'the publisher delivers');
(my $conn = $pub->connstr('postgres')) =~ s/'/''/g;
$sub->safe_psql('postgres', "CREATE SUBSCRIPTION everything CONNECTION '$conn' PUBLICATION everything");
$sub->poll_query_until('postgres', q{SELECT count(*) = 3 FROM tasks WHERE title LIKE 'publisher%'})
  or fail('the tasks are replicated');
insert($pub, "publisher $_") for 4 .. 6;
$sub->poll_query_until('postgres', q{SELECT count(*) = 6 FROM tasks WHERE title LIKE 'publisher%'})
  or fail('later tasks are replicated');
is($sub->safe_psql('postgres', q{SELECT count(*) FROM taskevents.queue WHERE title LIKE 'publisher%'}), '0',
	'no row of the publisher\'s queue lands in the subscriber\'s');
is($sub->safe_psql('postgres', 'SELECT count(*) FROM taskevents.tick WHERE hi > 1000'), '0',
	'nor its cursor');
$sub->poll_query_until('postgres', q{SELECT worker_state = 'halted' FROM taskevents.status})
  or fail('the subscriber\'s worker halts');
like($sub->safe_psql('postgres', 'SELECT last_error FROM taskevents.status'), qr/subscription "everything"/,
	'and says which subscription');
insert($sub, 'local write while subscribed');
is($sub->safe_psql('postgres', q{SELECT count(*) FROM taskevents.outbox WHERE title = 'local write while subscribed'}), '1',
	'local writes go on and are queued');

# The publisher empties a read queue table: the TRUNCATE replicated to the
# subscriber, whose same table holds its own changes, is refused there.
$pub->safe_psql('postgres', "SELECT setval('taskevents.outbox_seq', 32765)");
insert($pub, "publisher $_") for 7 .. 9;
wait_drained($pub, 'the publisher delivers its first run');
insert($pub, 'publisher 10');
$pub->poll_query_until('postgres', 'SELECT count(*) = 0 FROM taskevents.queue_0')
  or fail('the publisher empties its first queue table');
ok($sub->wait_for_log(qr/a replicated TRUNCATE of taskevents\.queue_0 is refused/),
	'the replicated TRUNCATE is refused on the subscriber');
isnt($sub->safe_psql('postgres', 'SELECT count(*) FROM taskevents.queue_0'), '0',
	'whose queue keeps its own changes');

# The subscription gone, the subscriber delivers its own changes only.
$sub->safe_psql('postgres', 'DROP SUBSCRIPTION everything');
wait_until('the subscriber delivers again', sub { titles($dapr_sub)->{'local write while subscribed'} });
wait_drained($sub, 'the subscriber\'s queue drained');
ok(!grep({ /^publisher/ } keys %{ titles($dapr_sub) }), 'the subscriber never delivered the publisher\'s events');
wait_drained($pub, 'the publisher\'s queue drained');
is_deeply([ map { titles($dapr_pub)->{"publisher $_"} } 1 .. 10 ], [ (1) x 10 ], 'the publisher delivered each of its events once');

$pub->stop;
$sub->stop;
done_testing();
