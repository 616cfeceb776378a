# Retry timing within its bounds (docs/delivery.md): the wait before
# attempt n+1 is backoff_min doubled n-1 times, capped at backoff_max, with
# jitter of x0.5-1; no retry comes before it is due; after max_attempts the
# event is a dead letter and the change's next event goes at once;
# max_attempts = 0 means no limit.
#
# No timing assumption: the bounds are read from the retry state the worker
# wrote, against the database's clock.  Before attempt n the test notes the
# time t0 and makes the event due (instead of waiting out the backoff); the
# worker's failure, and so the base of its backoff, comes after t0 and
# before the moment the test reads the state, so
#     next_attempt_at - t0  >=  backoff  >=  0.5 x nominal
#     next_attempt_at - now <=  backoff  <=  nominal.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Utils;
use Test::More;
use TaskEventsTest;

my ($min, $max, $attempts) = (10, 21, 8);
my $dapr = start_sidecar();
my $node = new_node('backoff', port => $dapr->port, conf => qq{
taskevents.backoff_min = '${min}s'
taskevents.backoff_max = '${max}s'
taskevents.max_attempts = $attempts
});
$node->safe_psql('postgres', tasks_ddl() . 'CREATE EXTENSION taskevents;');
$dapr->mode(mode => 'fail', status => 500, code => 'ERR_PUBSUB_PUBLISH_MESSAGE');

sub sql { return $node->safe_psql('postgres', $_[0]) }

# Requests for events of a task, by type.
sub requests
{
	my ($task, $type) = @_;
	return scalar grep { ref $_->{event} eq 'HASH' && ($_->{event}{subject} // '') eq $task && $_->{event}{type} eq $type }
	  @{ $dapr->records };
}

sub dead
{
	my ($task, $type) = @_;
	return sql("SELECT coalesce(max(attempts), 0) FROM taskevents.dead_letter WHERE task_id = '$task' AND type = '$type'");
}

my $t0 = sql('SELECT clock_timestamp()');
my $task = sql("INSERT INTO tasks (user_id, title) VALUES (gen_random_uuid(), 'failing') RETURNING id");
for my $n (1 .. $attempts - 1)
{
	wait_until("attempt $n failed", sub {
		sql("SELECT coalesce(max(attempts), 0) >= $n FROM taskevents.retry WHERE task_id = '$task'") eq 't' });
	my ($got, $since, $ahead) = split /\|/, sql(qq{
		SELECT attempts, extract(epoch FROM next_attempt_at - '$t0'), extract(epoch FROM next_attempt_at - clock_timestamp())
		  FROM taskevents.retry WHERE task_id = '$task'});
	my $nominal = $min * 2**($n - 1);
	$nominal = $max if $nominal > $max;
	my $ok = is($got, $n, "after attempt $n: no retry came before it was due");
	$ok &= is(requests($task, 'task.created'), $n, "after attempt $n: the sidecar was asked $n times");
	$ok &= cmp_ok($since, '>=', 0.5 * $nominal, "after attempt $n: the backoff is at least half of $nominal s");
	$ok &= cmp_ok($ahead, '<=', $nominal, "after attempt $n: the backoff is at most $nominal s");
	die "the retries are out of their bounds: the rest would only wait\n" unless $ok;
	$t0 = sql('SELECT clock_timestamp()');
	sql("UPDATE taskevents.retry SET next_attempt_at = clock_timestamp() WHERE task_id = '$task'");
}

# Attempt max_attempts fails: a dead letter, and sync.task goes at once.
wait_until('the last attempt', sub { requests($task, 'task.created') >= $attempts });
wait_until('the event is a dead letter', sub { dead($task, 'task.created') > 0 }, 15);
is(dead($task, 'task.created'), $attempts, "a dead letter after exactly max_attempts ($attempts) attempts");
is(requests($task, 'task.created'), $attempts, 'and no attempt more');
wait_until("the change's next event is sent at once", sub { requests($task, 'sync.task') > 0 }, 15);

# max_attempts = 0: no limit.
sql("ALTER SYSTEM SET taskevents.max_attempts = 0; SELECT pg_reload_conf();");
$node->poll_query_until('postgres', q{SELECT current_setting('taskevents.max_attempts') = '0'});
my $other = sql("INSERT INTO tasks (user_id, title) VALUES (gen_random_uuid(), 'no limit') RETURNING id");
for my $n (1 .. 2)
{
	wait_until("no limit: attempt $n failed", sub {
		sql("SELECT count(*) FROM taskevents.dead_letter WHERE task_id = '$other'") ne '0'
		  || sql("SELECT coalesce(max(attempts), 0) >= $n FROM taskevents.retry WHERE task_id = '$other'") eq 't' });
	is(sql("SELECT count(*) FROM taskevents.dead_letter WHERE task_id = '$other'"), '0',
		"max_attempts = 0: no dead letter after $n failed attempts");
	sql("UPDATE taskevents.retry SET next_attempt_at = clock_timestamp() WHERE task_id = '$other'");
}

# While a task's event waits for its retry, a later change of that task,
# claimed in a later round, waits behind it; other tasks flow on.
my $x = '00de0000-0000-4000-8000-000000000022';
$dapr->mode(mode => 'fail', status => 500, code => 'ERR_PUBSUB_PUBLISH_MESSAGE', match => $x);
sql("INSERT INTO tasks (id, user_id, title) VALUES ('$x', gen_random_uuid(), 'v0')");
wait_until('its first attempt failed', sub {
	sql("SELECT count(*) FROM taskevents.retry WHERE task_id = '$x' AND attempts > 0") ne '0' });
sql("UPDATE tasks SET title = 'v1' WHERE id = '$x'");
my $y = sql("INSERT INTO tasks (user_id, title) VALUES (gen_random_uuid(), 'flows') RETURNING id");
wait_until('a later task is delivered and recorded', sub {
	sql("SELECT count(*) FROM taskevents.outbox WHERE task_id = '$y'") eq '0' });
is(requests($x, 'task.updated'), 0, 'the later change of a task waiting for a retry was not sent');
is(sql("SELECT count(*) FROM taskevents.retry WHERE task_id = '$x' AND attempts > 0"), '1',
	'only the waiting change was tried');
$dapr->mode(mode => 'ok');
sql("UPDATE taskevents.retry SET next_attempt_at = clock_timestamp() WHERE task_id = '$x' AND next_attempt_at IS NOT NULL");
wait_until('the task delivered', sub { sql("SELECT count(*) FROM taskevents.outbox WHERE task_id = '$x'") eq '0' });
is(join(' ', map { $_->{event}{type} . ($_->{event}{data}{title} ? ":$_->{event}{data}{title}" : '') }
	grep { $_->{event}{subject} eq $x } @{ delivered_events($dapr) }),
	'task.created:v0 sync.task task.updated:v1 sync.task', 'its events in commit order');

$node->stop;
done_testing();
