# daprd's answers, class by class (SPEC §4): what heals is retried with
# backoff, what cannot is dead-lettered at once with its error, and dead
# letters can be sent again.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Utils;
use Test::More;
use TaskEventsTest;

my $dapr = start_sidecar();
my $node = new_node('errors', port => $dapr->port, conf => "taskevents.max_attempts = 4\n");
$node->safe_psql('postgres', tasks_ddl() . 'CREATE EXTENSION taskevents;');

my $n = 0;

# Write one task (task.created + sync.task) while the sidecar behaves as told;
# wait until the outbox is empty; return what happened.
sub one_task
{
	my (%mode) = @_;
	$n++;
	$node->safe_psql('postgres', 'SELECT taskevents.drop_dead_letters()');
	$dapr->mode(%mode);
	my $before = scalar @{ delivered_events($dapr) };
	my $retried = $node->safe_psql('postgres', 'SELECT retried FROM taskevents.status');
	$node->safe_psql('postgres',
		"INSERT INTO tasks (user_id, title) VALUES (gen_random_uuid(), 'case $n')");
	wait_drained($node, "case $n settled");
	$dapr->mode(mode => 'ok');
	my @got = @{ delivered_events($dapr) };
	return {
		delivered => [ map { $_->{event}{type} } @got[ $before .. $#got ] ],
		dead => $node->safe_psql('postgres',
			q{SELECT string_agg(type || ' ' || last_status || ' ' || last_error, E'\n') FROM taskevents.dead_letters}),
		retried => $node->safe_psql('postgres', 'SELECT retried FROM taskevents.status') - $retried,
	};
}

# Retried, then delivered in order, nothing dead.
for my $case (
	[ 'HTTP 500 ERR_PUBSUB_PUBLISH_MESSAGE', status => 500, code => 'ERR_PUBSUB_PUBLISH_MESSAGE' ],
	[ 'HTTP 400 ERR_PUBSUB_NOT_FOUND (component loading)', status => 400, code => 'ERR_PUBSUB_NOT_FOUND' ],
	[ 'HTTP 404 ERR_PUBSUB_NOT_FOUND', status => 404, code => 'ERR_PUBSUB_NOT_FOUND' ],
	[ 'HTTP 503 without a body', status => 503, code => '' ])
{
	my ($name, %m) = @$case;
	my $r = one_task(mode => 'fail', count => 2, %m);
	is_deeply($r->{delivered}, [ 'task.created', 'sync.task' ], "$name: retried, then delivered in order");
	is($r->{retried}, 2, "$name: two retries counted");
	is($r->{dead}, '', "$name: no dead letter");
}

{
	my $r = one_task(mode => 'garbage', status => 500, count => 1);
	is_deeply($r->{delivered}, [ 'task.created', 'sync.task' ], 'a 500 with an HTML body: retried');
	$r = one_task(mode => 'garbage', raw => 1, count => 1);
	is_deeply($r->{delivered}, [ 'task.created', 'sync.task' ], 'an answer that is not HTTP: retried');
	$r = one_task(mode => 'reset', count => 1);
	is_deeply($r->{delivered}, [ 'task.created', 'sync.task' ], 'a reset connection: retried');
	$r = one_task(mode => 'hang', count => 1);
	is_deeply($r->{delivered}, [ 'task.created', 'sync.task' ], 'a hung request: timed out, retried');
	like($node->safe_psql('postgres', 'SELECT last_error FROM taskevents.status'),
		qr/Timeout/i, 'the timeout is the last error');
}

# Dead-lettered at once; the task's next event still goes.
for my $case (
	[ 'HTTP 400 ERR_MALFORMED_REQUEST', 400, 'ERR_MALFORMED_REQUEST' ],
	[ 'HTTP 403 ERR_PUBSUB_FORBIDDEN', 403, 'ERR_PUBSUB_FORBIDDEN' ],
	[ 'HTTP 404 ERR_TOPIC_NAME_EMPTY', 404, 'ERR_TOPIC_NAME_EMPTY' ],
	[ 'HTTP 404 ERR_PUBSUB_EMPTY', 404, 'ERR_PUBSUB_EMPTY' ],
	[ 'HTTP 500 ERR_PUBSUB_CLOUD_EVENTS_SER', 500, 'ERR_PUBSUB_CLOUD_EVENTS_SER' ])
{
	my ($name, $status, $code) = @$case;
	my $r = one_task(mode => 'fail', count => 1, status => $status, code => $code);
	is_deeply($r->{delivered}, ['sync.task'], "$name: the next event is delivered");
	like($r->{dead}, qr/^task\.created $status HTTP $status $code/, "$name: dead letter with status and code");
	is($r->{retried}, 0, "$name: not retried");
}

# Kafka's producer refusing a record over the component's maxMessageBytes, as
# a real daprd answers it (test/real/t/004_refusals.pl): no retry can help.
{
	my $r = one_task(mode => 'fail', count => 1, status => 500, code => 'ERR_PUBSUB_PUBLISH_MESSAGE',
		error => 'kafka: invalid configuration (Attempt to produce message larger than configured Producer.MaxMessageBytes: 1126677 > 1048576)');
	is_deeply($r->{delivered}, ['sync.task'], 'a record too large for Kafka: the next event is delivered');
	like($r->{dead}, qr/^task\.created 500 HTTP 500 ERR_PUBSUB_PUBLISH_MESSAGE: .*larger than configured Producer\.MaxMessageBytes/,
		'a record too large for Kafka: a dead letter at once, with the producer\'s reason');
	is($r->{retried}, 0, 'a record too large for Kafka: not retried');
}

# Too many attempts: dead letter with the last error; then sent again.
{
	my $r = one_task(mode => 'fail', status => 500, code => 'ERR_PUBSUB_PUBLISH_MESSAGE');
	is_deeply($r->{delivered}, [], 'still failing: nothing delivered');
	like($r->{dead}, qr/task\.created 500 HTTP 500 ERR_PUBSUB_PUBLISH_MESSAGE.*\nsync\.task 500/s,
		'after max_attempts both events are dead letters, with the last error');
	is($node->safe_psql('postgres', 'SELECT min(attempts) FROM taskevents.dead_letters'), '4',
		'dead after taskevents.max_attempts');
	my $bodies = $node->safe_psql('postgres', 'SELECT string_agg(event::text, \'|\' ORDER BY type) FROM taskevents.dead_letters');
	like($bodies, qr/"specversion":"1.0"/, 'dead letters keep the exact event');

	my $before = scalar @{ delivered_events($dapr) };
	is($node->safe_psql('postgres', 'SELECT taskevents.resend()'), '2', 'resend re-queues both');
	wait_until('dead letters re-sent',
		sub { $node->safe_psql('postgres', 'SELECT count(*) FROM taskevents.dead_letters') eq '0' });
	my @got = @{ delivered_events($dapr) };
	is(scalar(@got) - $before, 2, 'both re-sent events delivered');
	is($node->safe_psql('postgres', 'SELECT dead FROM taskevents.status') > 0, 1, 'dead letters counted');
}

# A re-sent dead letter that fails again stays dead, with the new error.
{
	one_task(mode => 'fail', count => 1, status => 403, code => 'ERR_PUBSUB_FORBIDDEN');
	$dapr->mode(mode => 'fail', status => 403, code => 'ERR_PUBSUB_FORBIDDEN', count => 1);
	$node->safe_psql('postgres', 'SELECT taskevents.resend()');
	wait_until('re-sent dead letter failed again', sub {
		$node->safe_psql('postgres', 'SELECT requeued_at IS NULL AND attempts = 2 FROM taskevents.dead_letters') eq 't' });
	$dapr->mode(mode => 'ok');
	pass('a re-sent dead letter that fails again is dead again');
}

# An event over taskevents.max_body_size never leaves; the daprd limit answer is dead too.
{
	my $r;
	$node->safe_psql('postgres', 'SELECT taskevents.drop_dead_letters()');
	$node->safe_psql('postgres', "INSERT INTO tasks (user_id, title) VALUES (gen_random_uuid(), repeat('x', 5 * 1024 * 1024))");
	wait_drained($node, 'oversized event settled');
	like($node->safe_psql('postgres', 'SELECT string_agg(last_error, \',\') FROM taskevents.dead_letters'),
		qr/over taskevents.max_body_size/, 'a 5 MB event is a dead letter without being sent');

	$node->safe_psql('postgres', "ALTER SYSTEM SET taskevents.max_body_size = '8MB'; SELECT pg_reload_conf();");
	$r = one_task(mode => 'ok');
	$node->safe_psql('postgres', 'SELECT taskevents.drop_dead_letters()');
	$node->safe_psql('postgres', "INSERT INTO tasks (user_id, title) VALUES (gen_random_uuid(), repeat('y', 5 * 1024 * 1024))");
	wait_drained($node, 'oversized event answered by the sidecar');
	like($node->safe_psql('postgres', 'SELECT string_agg(last_status || \' \' || last_error, \',\') FROM taskevents.dead_letters'),
		qr/^500 HTTP 500 ERR_PUBSUB_PUBLISH_MESSAGE: .*stream too large/,
		'daprd\'s body limit answer (500 ... stream too large) is permanent');
}

# The outcome log lines are structured.
ok($node->log_contains(qr/taskevents: outcome=dead_letter event_type=task\.created topic=task-events task_id=\S+ user_id=\S+ correlation_id=\S+ event_id=\S+ dapr_status=403 attempt=1 error="HTTP 403 ERR_PUBSUB_FORBIDDEN/),
	'a structured log line per dead letter');
ok($node->log_contains(qr/outcome=retry event_type=\S+ topic=\S+ .* dapr_status=500 attempt=1/),
	'a structured log line per retry');

$node->stop;
done_testing();
