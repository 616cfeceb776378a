# The whole task lifecycle reaches the sidecar as the exact CloudEvents the
# preview shows, in order, on the right topics, with the Dapr contract.
use strict;
use warnings;
use utf8;
use FindBin;
use lib $FindBin::RealBin;
use JSON::PP;
use PostgreSQL::Test::Utils;
use Test::More;
use TaskEventsTest;

my $dapr = start_sidecar();
my $node = new_node('lifecycle', port => $dapr->port, conf => "taskevents.enabled = off\n");
$node->safe_psql('postgres', tasks_ddl() . 'CREATE EXTENSION taskevents;');

my $task = '6f1f3d3e-0000-4000-8000-000000000001';
my $user = '6f1f3d3e-0000-4000-8000-0000000000aa';
$node->safe_psql('postgres', qq{
	BEGIN;
	SET LOCAL taskevents.trace_id = 'request-1';
	INSERT INTO tasks (id, user_id, title, due_date)
	  VALUES ('$task', '$user', E'Buy milk "2%" \\\\ \\n 🥛', '2030-01-01 09:00Z');
	COMMIT;
	UPDATE tasks SET title = 'Buy oat milk' WHERE id = '$task';
	UPDATE tasks SET due_date = '2030-01-02 09:00Z' WHERE id = '$task';
	UPDATE tasks SET completed = true WHERE id = '$task';
	UPDATE tasks SET completed = false, due_date = NULL WHERE id = '$task';
	UPDATE tasks SET updated_at = now() WHERE id = '$task';
	DELETE FROM tasks WHERE id = '$task';
});

# What the worker will send, from the preview, before delivery starts.
my @expected = map { decode_json($_) } split /\n/, $node->safe_psql('postgres',
	'SELECT event FROM taskevents.pending ORDER BY seq, '
	  . q{array_position(ARRAY['task.created','task.updated','task.deleted','task.completed','task.uncompleted','sync.task','reminder.scheduled','reminder.rescheduled','reminder.cancelled'], type)});
is(scalar @expected, 16, 'the lifecycle queued 16 events');
is($node->safe_psql('postgres', 'SELECT worker_state FROM taskevents.status'), 'disabled',
	'taskevents.enabled = off: the worker idles');
is(scalar @{ $dapr->records }, 0, 'nothing sent while disabled');

$node->safe_psql('postgres', 'ALTER SYSTEM SET taskevents.enabled = on; SELECT pg_reload_conf();');
wait_drained($node, 'all events delivered');

my @got = @{ delivered_events($dapr) };
is(scalar @got, 16, 'the sidecar received 16 events');
is_deeply([ map { $_->{event} } @got ], \@expected,
	'received exactly the previewed CloudEvents, in order');
is_deeply([ map { $_->{event}{type} } @got ],
	[qw(task.created sync.task reminder.scheduled
		task.updated sync.task
		task.updated sync.task reminder.rescheduled
		task.completed sync.task
		task.updated task.uncompleted sync.task reminder.cancelled
		task.deleted sync.task)],
	'event types in commit order');

my %topic = ('task' => 'task-events', 'sync' => 'task-updates', 'reminder' => 'reminders');
my ($bad_path, $bad_ct, $bad_key) = (0, 0, 0);
for my $r (@got)
{
	my ($kind) = $r->{event}{type} =~ /^(\w+)\./;
	$bad_path++ unless $r->{path} eq "/v1.0/publish/pubsub-kafka/$topic{$kind}";
	$bad_ct++ unless $r->{content_type} eq 'application/cloudevents+json';
	$bad_key++ unless $r->{query} eq "metadata.partitionKey=$task";
}
is($bad_path, 0, 'each event on its topic of pubsub-kafka');
is($bad_ct, 0, 'Content-Type application/cloudevents+json on every request');
is($bad_key, 0, 'partitionKey is the task id');
ok(!defined $got[0]{token}, 'no dapr-api-token header without a token');

my $first = $got[0]{event};
is($first->{traceid}, 'request-1', 'the writer\'s correlation id is the traceid');
is($first->{data}{title}, "Buy milk \"2%\" \\ \n 🥛", 'a title with quotes, backslash, newline and emoji arrives intact');
is($first->{specversion}, '1.0', 'specversion 1.0');
is($first->{datacontenttype}, 'application/json', 'datacontenttype');
is(ref $first->{data}, 'HASH', 'data is a JSON object');
ok(JSON::PP::is_bool($first->{data}{completed}), 'completed is a JSON boolean');
my %ids = map { $_->{event}{id} => 1 } @got;
is(scalar keys %ids, 16, 'every event has its own id');

my ($published, $depth) = split /\|/, $node->safe_psql('postgres',
	'SELECT published, queue_depth FROM taskevents.status');
is($published, 16, 'status counts 16 published');
is($depth, 0, 'queue is empty');
is($node->safe_psql('postgres', 'SELECT sidecar_reachable FROM taskevents.status'), 't',
	'status says the sidecar is reachable');

# A new write is delivered promptly (woken at commit, not by the poll).
$node->safe_psql('postgres', "ALTER SYSTEM SET taskevents.poll_interval = '1h'; SELECT pg_reload_conf();");
sleep 1;
$node->safe_psql('postgres', "INSERT INTO tasks (user_id, title) VALUES ('$user', 'woken')");
wait_until('commit wakes the worker', sub { scalar @{ delivered_events($dapr) } == 18 }, 10);

$node->stop;
done_testing();
