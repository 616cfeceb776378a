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

$node->stop;
done_testing();
