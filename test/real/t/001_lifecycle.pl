# The whole task lifecycle through PostgreSQL -> taskevents -> a real daprd ->
# Apache Kafka, per request and with bulk publish: what a consumer reads with
# the CloudEvents SDK is exactly what the extension sent, plus what daprd
# adds, keyed by task id, each task's events on one partition in commit order.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin, "$FindBin::RealBin/../../t";
use PostgreSQL::Test::Utils;
use Test::More;
use TaskEventsTest;
use RealPipeline;

my $kafka = start_kafka();
my $consumer = start_consumer($kafka);
my $daprd = start_daprd(kafka => $kafka);
my $node = real_node('real_lifecycle', $daprd, conf => "taskevents.bulk = off\n");
$node->safe_psql('postgres', tasks_ddl() . 'CREATE EXTENSION taskevents;');

# Per request (bulk = off): POST /v1.0/publish/pubsub-kafka/{topic}?metadata.partitionKey=…
$node->safe_psql('postgres', lifecycle_sql('life', 5));
wait_drained($node, 'per request: the outbox drained');
my $events = sent_events($node);
is(scalar @$events, 5 * RealPipeline::LIFECYCLE_EVENTS, 'five lifecycles: 95 events sent');
is_deeply([ sort keys %{ { map { $_->{type} => 1 } @$events } } ],
	[qw(reminder.cancelled reminder.rescheduled reminder.scheduled sync.task
		task.completed task.created task.deleted task.uncompleted task.updated)],
	'every event type of the lifecycle');
wait_records($consumer, $events, 'per request: every event read from Kafka');
check_records($consumer, $events, 'per request');
is($node->safe_psql('postgres', 'SELECT count(*) FROM taskevents.dead_letters'), '0', 'no dead letters');

my @created = grep { $_->{ce} && $_->{ce}{type} eq 'task.created' } @{ $consumer->records };
is($created[0]{ce}{extensions}{traceparent}, '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01',
	'the writer\'s traceparent reaches the consumer');
like($created[0]{ce}{extensions}{traceid}, qr/^life-request-\d$/, 'the writer\'s correlation id is the traceid');
is($created[0]{headers}{partitionKey}, $created[0]{key}, 'daprd also passes the partitionKey as a record header');

# Bulk, the default (auto) with daprd 1.18: POST
# /v1.0/publish/bulk/pubsub-kafka/{topic}, entries keyed by task.
$node->safe_psql('postgres', 'ALTER SYSTEM SET taskevents.bulk = auto; SELECT pg_reload_conf();');
$node->poll_query_until('postgres', "SELECT current_setting('taskevents.bulk') = 'auto'") or die;
$node->safe_psql('postgres', lifecycle_sql('bulk', 40));
wait_drained($node, 'bulk: the outbox drained');
$events = sent_events($node);
is(scalar @$events, 45 * RealPipeline::LIFECYCLE_EVENTS, 'forty more lifecycles: 855 events sent in all');
wait_records($consumer, $events, 'bulk: every event read from Kafka');
check_records($consumer, $events, 'per request, then bulk');
my $log = slurp_file($daprd->log);
my $bulk_calls = () = $log =~ m{/v1\.0/publish/bulk/pubsub-kafka/}g;
cmp_ok($bulk_calls, '>', 0, "the worker used daprd's bulk publish ($bulk_calls requests logged)");
ok($node->log_contains(qr/publishing in bulk: the Dapr sidecar at \S+ has the bulk publish API/),
	'auto asked daprd and logged why it publishes in bulk');
is($node->safe_psql('postgres', 'SELECT published, dead FROM taskevents.status'),
	scalar(@$events) . '|0', 'status: every event published, none dead');

$node->stop;
done_testing();
