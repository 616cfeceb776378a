# Per-task order under retries: while an event of a task waits for a retry,
# that task's later events wait behind it; other tasks' events flow on.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Utils;
use Test::More;
use TaskEventsTest;

my $dapr = start_sidecar();
my $node = new_node('order', port => $dapr->port, conf => "taskevents.backoff_min = '200ms'\n");
$node->safe_psql('postgres', tasks_ddl() . 'CREATE EXTENSION taskevents;');

my @tasks = map { sprintf('00de0000-0000-4000-8000-%012d', $_) } 1 .. 5;
my $slow = $tasks[0];

# The slow task's first three requests fail; nobody else's do.
$dapr->mode(mode => 'fail', status => 500, code => 'ERR_PUBSUB_PUBLISH_MESSAGE', count => 3, match => $slow);
$node->safe_psql('postgres', 'ALTER SYSTEM SET taskevents.enabled = off; SELECT pg_reload_conf();');
for my $step (0 .. 3)
{
	for my $t (@tasks)
	{
		$node->safe_psql('postgres', $step == 0
			? "INSERT INTO tasks (id, user_id, title) VALUES ('$t', gen_random_uuid(), 'v0')"
			: "UPDATE tasks SET title = 'v$step' WHERE id = '$t'");
	}
}
$node->safe_psql('postgres', 'ALTER SYSTEM SET taskevents.enabled = on; SELECT pg_reload_conf();');
wait_drained($node, 'all delivered');

my @got = @{ delivered_events($dapr) };
is(scalar @got, 40, '5 tasks x 4 changes x 2 events delivered');
my %seq;
for my $i (0 .. $#got)
{
	my $e = $got[$i]{event};
	push @{ $seq{ $e->{subject} } }, $e->{type} . ($e->{type} eq 'sync.task' ? '' : ':' . $e->{data}{title});
}
my $want = 'task.created:v0 sync.task task.updated:v1 sync.task task.updated:v2 sync.task task.updated:v3 sync.task';
for my $t (@tasks)
{
	is(join(' ', @{ $seq{$t} }), $want, "task $t: events in commit order" . ($t eq $slow ? ' despite 3 failures' : ''));
}
my ($last_slow) = grep { $got[$_]{event}{subject} eq $slow } reverse 0 .. $#got;
my $first_slow = (grep { $got[$_]{event}{subject} eq $slow } 0 .. $#got)[0];
my $others_done_before = grep { $got[$_]{event}{subject} ne $slow } 0 .. $first_slow - 1;
is($others_done_before, 32, 'the other tasks were all delivered while the slow task waited');
is($node->safe_psql('postgres', 'SELECT retried FROM taskevents.status'), '3', 'three retries');

# A round cut short by taskevents.batch_size claims more while it sends
# (round.c, rd_claim_more): a task whose event is in flight when its next
# change is claimed keeps its order, and when that event fails the next
# waits behind it for the retry; each event goes once.  The slow task's
# first request fails after 2 s, so the whole round, in 4 claims of 10
# changes, is claimed while it is in flight.  Per request, then in bulk.
$node->safe_psql('postgres', "ALTER SYSTEM SET taskevents.batch_size = 10; ALTER SYSTEM SET taskevents.timeout = '5s'; SELECT pg_reload_conf();");
for my $bulk ('off', 'on')
{
	my $n = $bulk eq 'off' ? 1 : 2;
	my @t = map { sprintf('00de%04d-0000-4000-8000-%012d', $n, $_) } 0 .. 30;
	my $s = $t[0];
	my $log_at = -s $node->logfile;
	$dapr->mode(mode => 'fail', status => 500, code => 'ERR_PUBSUB_PUBLISH_MESSAGE', count => 1, match => $s, ms => 2000);
	$node->safe_psql('postgres', "ALTER SYSTEM SET taskevents.enabled = off; ALTER SYSTEM SET taskevents.bulk = $bulk; SELECT pg_reload_conf();");
	wait_until('delivery off', sub { $node->safe_psql('postgres', 'SELECT worker_state FROM taskevents.status') eq 'disabled' });
	$node->safe_psql('postgres', "INSERT INTO tasks (id, user_id, title) VALUES ('$_', gen_random_uuid(), 'v0')") for @t;
	$node->safe_psql('postgres', "UPDATE tasks SET title = 'v1' WHERE id = '$_'") for @t[0 .. 5];
	$node->safe_psql('postgres', 'ALTER SYSTEM SET taskevents.enabled = on; SELECT pg_reload_conf();');
	wait_drained($node, "bulk $bulk: all delivered");

	my @got = grep { $_->{event}{subject} =~ /^00de000$n-/ } @{ delivered_events($dapr) };
	my (%seq, %ids);
	$ids{ $_->{event}{id} }++ for @got;
	push @{ $seq{ $_->{event}{subject} } }, $_->{event}{type} . ($_->{event}{type} eq 'sync.task' ? '' : ':' . $_->{event}{data}{title})
	  for @got;
	is(scalar @got, 74, "bulk $bulk: 37 changes x 2 events delivered");
	is(scalar(grep { $_ > 1 } values %ids), 0, "bulk $bulk: each event once");
	my @wrong = grep { join(' ', @{ $seq{$_} // [] }) ne 'task.created:v0 sync.task' . ($_ le $t[5] ? ' task.updated:v1 sync.task' : '') } @t;
	is("@wrong", '', "bulk $bulk: every task's events in commit order, the slow one's update behind its retry");
	my $first_slow = (grep { $got[$_]{event}{subject} eq $s } 0 .. $#got)[0];
	is(scalar(grep { $got[$_]{event}{subject} ne $s } 0 .. $first_slow - 1), 70,
		"bulk $bulk: the other tasks' events went while the slow one's first waited");
	# per request: every event of the round sent once but the slow task's three
	like(slurp_file($node->logfile, $log_at), $bulk eq 'off' ? qr/taskevents: round of 37 changes in 4 claims, 71 requests:/
		: qr/taskevents: round of 37 changes in 4 claims, /, "bulk $bulk: one round claimed them all, in 4 claims, while it sent");
}
$node->safe_psql('postgres', 'ALTER SYSTEM RESET taskevents.batch_size; ALTER SYSTEM RESET taskevents.timeout; ALTER SYSTEM RESET taskevents.bulk; SELECT pg_reload_conf();');

$node->stop;
done_testing();
