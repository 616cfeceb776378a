# What a real daprd refuses, and how each case heals: a component whose
# publishingScopes forbid a topic (403, dead letters, sent again with the
# same ids once the component allows it), a token mismatch (401, dead
# letters, sent again once the token is right), and the component absent
# when daprd starts (404 ERR_PUBSUB_NOT_FOUND, retried until daprd
# hot-reloads it).  Writers never wait; in the end every event is in Kafka.
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
my $node;
my $token_file = "$PostgreSQL::Test::Utils::tmp_check/api_token";

# Scopes: this app may publish to task-events and task-updates only.
# Send the dead letters again until none is left: a resend() that races a
# reload (of daprd's component, or of the worker's token) fails again, and
# is repeated once the worker has recorded that.
sub resend_until_delivered
{
	my ($what) = @_;
	wait_until($what, sub {
		my ($left, $waiting) = split /\|/, $node->safe_psql('postgres',
			'SELECT count(*), count(requeued_at) FROM taskevents.dead_letter');
		$node->safe_psql('postgres', 'SELECT taskevents.resend()') if $left > 0 && $waiting == 0;
		$left == 0;
	}, 60);
}

my $daprd = start_daprd(kafka => $kafka,
	metadata => [ [ 'publishingScopes', APP_ID . '=task-events,task-updates' ] ]);
$node = real_node('real_refusals', $daprd);
$node->safe_psql('postgres', tasks_ddl() . 'CREATE EXTENSION taskevents;');

writer($node, lifecycle_sql('scoped', 3));
wait_drained($node, '403: settled');
my $dead = $node->safe_psql('postgres',
	q{SELECT count(*), string_agg(DISTINCT topic || ' ' || last_status || ' ' || last_error, '; ') FROM taskevents.dead_letters});
like($dead, qr/^12\|reminders 403 HTTP 403 ERR_PUBSUB_FORBIDDEN: topic reminders is not allowed for app id taskevents-db$/,
	'403: the twelve reminders are dead letters with daprd\'s reason');
my @dead_ids = split /\n/, $node->safe_psql('postgres', 'SELECT event_id FROM taskevents.dead_letter ORDER BY seq, event_id');

# The component is fixed (daprd hot-reloads it); the dead letters go again.
my $loaded = () = slurp_file($daprd->log) =~ /Component loaded: pubsub-kafka/g;
$daprd->write_component();
wait_until('daprd reloaded the component', sub {
	my $n = () = slurp_file($daprd->log) =~ /Component loaded: pubsub-kafka/g;
	$n > $loaded });
resend_until_delivered('403: the dead letters were sent again');
my $events = sent_events($node);
wait_records($consumer, $events, '403: every event read from Kafka');
check_records($consumer, $events, 'scopes: forbidden, then allowed and re-sent');
my %in_kafka = map { $_->{ce}{id} => 1 } grep { $_->{topic} eq 'reminders' } @{ $consumer->records };
is(scalar(grep { $in_kafka{$_} } @dead_ids), 12, 're-sent reminders reach Kafka with the ids they had as dead letters');

# A token mismatch: daprd wants one token, the database sends another.
$daprd->stop;
$daprd = start_daprd(kafka => $kafka, token => 'the-right-token');
PostgreSQL::Test::Utils::append_to_file($token_file, "a-wrong-token\n");
$node->safe_psql('postgres', "ALTER SYSTEM SET taskevents.port = " . $daprd->port . ";"
	  . " ALTER SYSTEM SET taskevents.api_token_file = '$token_file'; SELECT pg_reload_conf();");
writer($node, lifecycle_sql('token', 2));
wait_drained($node, '401: settled');
is($node->safe_psql('postgres',
		q{SELECT count(*), string_agg(DISTINCT last_status || ' ' || last_error, '; ') FROM taskevents.dead_letters}),
	'38|401 HTTP 401: invalid api token ', '401: every event is a dead letter with daprd\'s answer (its text/plain body, newline as a space)');
ok(!$node->log_contains(qr/a-wrong-token|the-right-token/), 'the token is in no log line');
open(my $fh, '>', $token_file) or die;
print $fh "the-right-token\n";
close $fh;
$node->safe_psql('postgres', 'SELECT pg_reload_conf()');
resend_until_delivered('401: the dead letters were sent again');
$events = sent_events($node);
wait_records($consumer, $events, '401: every event read from Kafka');
check_records($consumer, $events, 'token: refused, then right and re-sent');

# The component absent when daprd starts; it appears later (hot reload).
$daprd->stop;
$daprd = start_daprd(kafka => $kafka, component => 0);
$node->safe_psql('postgres', "ALTER SYSTEM SET taskevents.port = " . $daprd->port . ";"
	  . " ALTER SYSTEM RESET taskevents.api_token_file; SELECT pg_reload_conf();");
my $retried = $node->safe_psql('postgres', 'SELECT retried FROM taskevents.status');
writer($node, lifecycle_sql('absent', 2));
wait_until('404: the worker retries', sub {
	$node->safe_psql('postgres', 'SELECT retried FROM taskevents.status') > $retried + 3 });
like($node->safe_psql('postgres', 'SELECT last_error FROM taskevents.status'),
	qr/^HTTP 404 ERR_PUBSUB_NOT_FOUND: pubsub pubsub-kafka is not found/, '404: daprd\'s answer is the last error');
is($node->safe_psql('postgres', 'SELECT count(*) FROM taskevents.dead_letters'), '0', '404: retried, not dead');
$daprd->write_component();
wait_drained($node, '404: delivered once the component appeared', 60);
is($node->safe_psql('postgres', 'SELECT count(*) FROM taskevents.dead_letters'), '0', 'no dead letters');
$events = sent_events($node);
wait_records($consumer, $events, '404: every event read from Kafka');
check_records($consumer, $events, 'component absent, then hot-reloaded');

# An event larger than the component's maxMessageBytes (1 MiB in docker/,
# under daprd's 4 MiB body limit): Kafka's producer refuses it, and no retry
# can change that, so it is a dead letter at once, per request and in bulk.
my %too_big;
for my $mode ('per request', 'bulk')
{
	$node->safe_psql('postgres', 'ALTER SYSTEM SET taskevents.bulk = ' . ($mode eq 'bulk' ? 'on' : 'off')
		  . '; SELECT pg_reload_conf();');
	my $retried = $node->safe_psql('postgres', 'SELECT retried FROM taskevents.status');
	writer($node, "INSERT INTO tasks (user_id, title) VALUES (gen_random_uuid(), repeat('x', 1100000));");
	wait_drained($node, "$mode, too large: settled");
	my ($id, $type, $attempts, $status, $error) = split /\|/, $node->safe_psql('postgres',
		'SELECT event_id, type, attempts, last_status, last_error FROM taskevents.dead_letters');
	is("$type $attempts $status", 'task.created 1 500', "$mode, too large: a dead letter at the first attempt");
	like($error, qr/larger than configured Producer\.MaxMessageBytes/, "$mode, too large: with the producer's reason");
	is($node->safe_psql('postgres', 'SELECT retried FROM taskevents.status'), $retried, "$mode, too large: not retried");
	$too_big{$id} = 1;
	$node->safe_psql('postgres', 'SELECT taskevents.drop_dead_letters()');
}
$events = [ grep { !$too_big{ $_->{json}{id} } } @{ sent_events($node) } ];
wait_records($consumer, $events, 'too large: every other event read from Kafka');
check_records($consumer, $events, 'everything but the events too large for Kafka');

$node->stop;
done_testing();
