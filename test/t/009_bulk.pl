# taskevents.bulk = on: Dapr's bulk publish, one request per topic with up to
# 500 entries (shared out over taskevents.concurrency requests), each keyed
# by its task; per-entry failures are retried alone and per-task order holds.
# taskevents.bulk = auto (the default): bulk when the sidecar's bulk publish
# API answers (daprd 1.17 or later), asked again after a reload and after an
# outage.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Utils;
use Test::More;
use TaskEventsTest;
use JSON::PP;

my $dapr = start_sidecar();
my $node = new_node('bulk', port => $dapr->port,
	conf => "taskevents.bulk = on\ntaskevents.enabled = off\n");
$node->safe_psql('postgres', tasks_ddl() . 'CREATE EXTENSION taskevents;');

# 300 tasks, each created then completed: 1,200 events.
$node->safe_psql('postgres', q{
	INSERT INTO tasks (user_id, title) SELECT gen_random_uuid(), 'bulk ' || i FROM generate_series(1, 300) i;
	UPDATE tasks SET completed = true;
});
my %expected = map { my ($id, $body) = split /\|/, $_, 2; ($id => $body) }
  split /\n/, $node->safe_psql('postgres', 'SELECT event_id, event FROM taskevents.pending');
is(scalar keys %expected, 1200, '1,200 events queued');

# One task's entries fail twice inside otherwise successful bulk requests.
my $slow = $node->safe_psql('postgres', 'SELECT id FROM tasks ORDER BY id LIMIT 1');
$dapr->mode(mode => 'fail', status => 500, code => 'ERR_PUBSUB_PUBLISH_MESSAGE', count => 2, match => $slow);
$node->safe_psql('postgres', 'ALTER SYSTEM SET taskevents.enabled = on; SELECT pg_reload_conf();');
wait_drained($node, 'all delivered');

my @recs = @{ $dapr->records };
my @bulk = grep { $_->{path} =~ m{^/v1\.0/publish/bulk/pubsub-kafka/} } @recs;
is(scalar @bulk, scalar @recs, 'every request was a bulk publish');
cmp_ok(scalar @bulk, '<', 20, 'far fewer requests than events');
ok(!(grep { $_->{content_type} ne 'application/json' } @bulk), 'bulk requests are application/json');

my @got = @{ delivered_events($dapr) };
my %seen;
$seen{ $_->{event}{id} }++ for @got;
is(scalar keys %seen, 1200, 'every event delivered');
is(scalar(grep { $seen{$_} > 1 } keys %seen), 0, 'none twice');
my $mismatch = grep {
	my $want = JSON::PP::decode_json($expected{ $_->{event}{id} });
	JSON::PP->new->canonical->encode($want) ne JSON::PP->new->canonical->encode($_->{event})
} @got;
is($mismatch, 0, 'each entry is exactly the previewed CloudEvent');
my $bad_entry = grep {
	$_->{entry}{contentType} ne 'application/cloudevents+json'
	  || $_->{entry}{metadata}{partitionKey} ne $_->{event}{subject}
	  || $_->{entry}{entryId} ne $_->{event}{id}
} @got;
is($bad_entry, 0, 'entries carry contentType, partitionKey = task id, entryId = event id');

my %order;
push @{ $order{ $_->{event}{subject} } }, $_->{event}{type} for @got;
my $want = 'task.created sync.task task.completed sync.task';
is(scalar(grep { join(' ', @{ $order{$_} }) ne $want } keys %order), 0,
	'per task, commit order across bulk requests');
is(join(' ', @{ $order{$slow} }), $want, 'the task whose entries failed kept its order too');
my %by_topic = map { ($_->{path} =~ m{/([^/]+)$})[0] => 1 } @bulk;
is_deeply([ sort keys %by_topic ], [ 'task-events', 'task-updates' ], 'one topic per bulk request');
is($node->safe_psql('postgres', 'SELECT retried FROM taskevents.status'), '2', 'the failed entries were retried');

# The events ready are shared out so that taskevents.concurrency requests
# are in flight: with 4, the first events of 800 tasks go as 4 requests of
# 200 (not 500 and 300, the other two requests waiting for those tasks' next
# events).  The round's DEBUG1 line says where its time went.
set_delivery($node, 'off');
$node->safe_psql('postgres', 'ALTER SYSTEM SET taskevents.concurrency = 4; SELECT pg_reload_conf();');
$node->safe_psql('postgres', q{INSERT INTO tasks (user_id, title) SELECT gen_random_uuid(), 'shared out ' || i FROM generate_series(1, 800) i});
my $seen_requests = scalar @{ $dapr->records };
my $log_at = -s $node->logfile;
set_delivery($node, 'on');
wait_drained($node, 'the 800 tasks delivered');
my @round = @{ $dapr->records }[ $seen_requests .. $#{ $dapr->records } ];
my @sizes = map { scalar @{ $_->{body} } } grep { $_->{path} =~ m{/task-events$} } @round;
is("@sizes", '200 200 200 200', 'concurrency 4: the first events of 800 tasks as 4 requests of 200');
my $updates = 0;
$updates += scalar @{ $_->{body} } for grep { $_->{path} =~ m{/task-updates$} } @round;
is($updates, 800, '... their next events after them');
like(slurp_file($node->logfile, $log_at),
	qr/taskevents: round of 800 changes in 1 claims, \d+ requests: claim [\d.]+ ms, build [\d.]+ ms, durable [\d.]+ ms, send [\d.]+ ms \([\d.]+ requests in flight on average; [\d.]+ ms of it claiming and building more\), record [\d.]+ ms/,
	'the round logs its stages at DEBUG1');
$node->safe_psql('postgres', 'ALTER SYSTEM RESET taskevents.concurrency; SELECT pg_reload_conf();');

# A request-level error applies to every entry.
$dapr->mode(mode => 'fail', status => 403, code => 'ERR_PUBSUB_FORBIDDEN', count => 1);
$node->safe_psql('postgres', "INSERT INTO tasks (user_id, title) VALUES (gen_random_uuid(), 'forbidden')");
wait_drained($node, 'settled');
is($node->safe_psql('postgres', "SELECT type FROM taskevents.dead_letters"), 'task.created',
	'a 403 on a bulk request dead-letters its entries');

# An entry Kafka's producer refuses as too large (a real daprd lists it in
# failedEntries, test/real/t/004_refusals.pl): that entry is a dead letter at
# once, the others of the request are published.
$node->safe_psql('postgres', 'SELECT taskevents.drop_dead_letters()');
my $big = '7d1f3d3e-0000-4000-8000-000000000001';
$dapr->mode(mode => 'fail', status => 500, code => 'ERR_PUBSUB_PUBLISH_MESSAGE', count => 1, match => 'too large for Kafka',
	error => 'kafka: invalid configuration (Attempt to produce message larger than configured Producer.MaxMessageBytes: 1126677 > 1048576)');
my $retried = $node->safe_psql('postgres', 'SELECT retried FROM taskevents.status');
$node->safe_psql('postgres', "INSERT INTO tasks (id, user_id, title) VALUES ('$big', gen_random_uuid(), 'too large for Kafka')");
wait_drained($node, 'settled');
like($node->safe_psql('postgres', "SELECT type || ' ' || attempts || ' ' || last_error FROM taskevents.dead_letters"),
	qr/^task\.created 1 HTTP 500 bulk entry failed: .*larger than configured Producer\.MaxMessageBytes/,
	'a bulk entry too large for Kafka: a dead letter at once');
is($node->safe_psql('postgres', 'SELECT retried FROM taskevents.status'), $retried, '... not retried');
$dapr->mode(mode => 'ok');

# auto: how the sidecar's bulk publish API answers a request of no entries
# decides, and the log says why.
sub paths_after
{
	my ($n) = @_;
	my @r = grep { ref $_->{body} ne 'ARRAY' || @{ $_->{body} } } @{ $dapr->records };    # not the question
	return join ' ', sort keys %{ { map { (($_->{path} =~ m{^/v1\.0/publish/(bulk/)?})[0] // 'single') => 1 } @r[ $n .. $#r ] } };
}
sub nrecords { scalar grep { ref $_->{body} ne 'ARRAY' || @{ $_->{body} } } @{ $dapr->records } }
my $i = 0;
for my $case (
	[ 1, 'single', qr/publishing one event per request: the Dapr sidecar at \S+ has no bulk publish API \(HTTP 404: fakedapr: no such route ?\), which needs Dapr 1\.17 or later with the publish API allowed/ ],
	[ 0, 'bulk/', qr/publishing in bulk: the Dapr sidecar at \S+ has the bulk publish API/ ])
{
	my ($nobulk, $want, $log) = @$case;
	$dapr->mode(nobulk => $nobulk);
	my $offset = -s $node->logfile;
	my $n = nrecords();
	# a reload makes the worker ask again (a session that sees the new value
	# starts after the postmaster told the worker)
	$node->safe_psql('postgres', "ALTER SYSTEM SET taskevents.bulk = auto; ALTER SYSTEM SET taskevents.source = 'auto $i'; SELECT pg_reload_conf();");
	$node->poll_query_until('postgres', "SELECT current_setting('taskevents.source') = 'auto $i'") or die;
	$node->safe_psql('postgres', "INSERT INTO tasks (user_id, title) SELECT gen_random_uuid(), 'auto $i ' || g FROM generate_series(1, 20) g");
	wait_drained($node, "auto, nobulk=$nobulk: delivered");
	is(paths_after($n), $want, "auto, nobulk=$nobulk: $want publish requests");
	ok($node->wait_for_log($log, $offset), "auto, nobulk=$nobulk: the log says why");
	$i++;
}
is($node->safe_psql('postgres', "SELECT boot_val FROM pg_settings WHERE name = 'taskevents.bulk'"), 'auto', 'the default is auto');

# After an outage the worker asks again: the daprd that comes back may be another.
$dapr->mode(mode => 'down', nobulk => 1);
my $offset = -s $node->logfile;
my $n = nrecords();
$node->safe_psql('postgres', "INSERT INTO tasks (user_id, title) SELECT gen_random_uuid(), 'outage ' || g FROM generate_series(1, 20) g");
wait_until('paused', sub { $node->safe_psql('postgres', 'SELECT worker_state FROM taskevents.status') =~ /paused/ });
$dapr->mode(mode => 'ok');
wait_drained($node, 'delivered after the outage');
is(paths_after($n), 'single', 'after the outage, a sidecar with no bulk API: one event per request');
ok($node->wait_for_log(qr/publishing one event per request: the Dapr sidecar at \S+ has no bulk publish API/, $offset),
	'... and the log says so');
$dapr->mode(nobulk => 0);

# The boolean spellings of 1.2 and before still mean on and off.
$node->safe_psql('postgres', "ALTER SYSTEM SET taskevents.bulk = true; SELECT pg_reload_conf();");
ok($node->poll_query_until('postgres', "SELECT current_setting('taskevents.bulk') = 'on'"), 'bulk = true reads as on');
$node->safe_psql('postgres', "ALTER SYSTEM SET taskevents.bulk = no; SELECT pg_reload_conf();");
ok($node->poll_query_until('postgres', "SELECT current_setting('taskevents.bulk') = 'off'"), 'bulk = no reads as off');
my ($ret, $out, $err) = $node->psql('postgres', "ALTER SYSTEM SET taskevents.bulk = sometimes");
like($err, qr/invalid value for parameter "taskevents.bulk": "sometimes".*\n.*Available values: auto, on, off/, 'another value: a clear error naming the choices');

unlike(slurp_file($node->logfile), qr/ERROR:  xlog flush request/,
	'the worker never asks to flush WAL past what was written');
$node->stop;
done_testing();
