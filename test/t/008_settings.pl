# Settings: dapr_enabled = off, the API token (setting or DAPR_API_TOKEN,
# never in logs or visible to others), reload on SIGHUP, retention.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Utils;
use Test::More;
use TaskEventsTest;

my $token = 's3cr3t-token-value';
my $dapr = start_sidecar(token => $token);
my $node = new_node('settings', port => $dapr->port, conf => "taskevents.dapr_enabled = off\n");
$node->safe_psql('postgres', tasks_ddl() . 'CREATE EXTENSION taskevents;');

# dapr_enabled = off: logged at DEBUG1 and marked done, no HTTP call.
$node->safe_psql('postgres', "INSERT INTO tasks (user_id, title) VALUES (gen_random_uuid(), 'not sent')");
wait_drained($node, 'marked done without Dapr');
is($dapr->stats->{requests}, 0, 'dapr_enabled = off: no request reached the sidecar');
ok($node->log_contains(qr/dapr_enabled=off event_type=task\.created .*"title":"not sent"/),
	'the event is logged instead');

# On, without a token: daprd answers 401, a permanent failure.
$node->safe_psql('postgres', 'ALTER SYSTEM SET taskevents.dapr_enabled = on; SELECT pg_reload_conf();');
sleep 1;
$node->safe_psql('postgres', "INSERT INTO tasks (user_id, title) VALUES (gen_random_uuid(), 'no token')");
wait_drained($node, 'settled');
is($node->safe_psql('postgres', 'SELECT count(*) FROM taskevents.dead_letters WHERE last_status = 401'), '2',
	'without the token: 401, dead letters');

# The token from a file named by the superuser-only setting (a mounted
# Secret), read again on SIGHUP.
my $token_file = $node->basedir . '/dapr-api-token';
PostgreSQL::Test::Utils::append_to_file($token_file, "$token\n");
$node->safe_psql('postgres', "ALTER SYSTEM SET taskevents.api_token_file = '$token_file'; SELECT pg_reload_conf();");
sleep 1;
$node->safe_psql('postgres', 'SELECT taskevents.resend()');
wait_until('dead letters re-sent with the token', sub {
	$node->safe_psql('postgres', 'SELECT count(*) FROM taskevents.dead_letters') eq '0' });
my @ok = @{ delivered_events($dapr) };
is(scalar @ok, 2, 'delivered with the token');
is($ok[0]{token}, $token, 'dapr-api-token header sent, without the file\'s newline');

# The token never shows: not in the log, not to others.
my $log = slurp_file($node->logfile);
unlike($log, qr/\Q$token\E/, 'the token is not in the server log');
$node->safe_psql('postgres', 'CREATE ROLE app LOGIN; CREATE ROLE monitor LOGIN IN ROLE pg_monitor;');
my ($ret, $out, $err) = $node->psql('postgres', 'SHOW taskevents.api_token_file', extra_params => [ '-U', 'app' ]);
isnt($ret, 0, 'an application role cannot even see where the token is');
for my $role (qw(app monitor))
{
	($ret, $out, $err) = $node->psql('postgres',
		q{SELECT * FROM pg_settings WHERE name LIKE 'taskevents%'; SELECT * FROM taskevents.status},
		extra_params => [ '-U', $role ]);
	unlike($out . $err, qr/\Q$token\E/, "$role does not see the token in settings or status");
}

# The token from DAPR_API_TOKEN, as the Dapr injector's secret would give it.
$node->safe_psql('postgres', 'ALTER SYSTEM RESET taskevents.api_token_file;');
$node->stop;
{
	local $ENV{DAPR_API_TOKEN} = $token;
	$node->start;
}
$node->safe_psql('postgres', "INSERT INTO tasks (user_id, title) VALUES (gen_random_uuid(), 'env token')");
wait_until('delivered with the environment token', sub { scalar @{ delivered_events($dapr) } == 4 });
is(delivered_events($dapr)->[3]{token}, $token, 'DAPR_API_TOKEN is used when the setting is empty');

# SIGHUP: the sidecar moves to another port.
my $dapr2 = start_sidecar(token => $token);
$node->safe_psql('postgres', 'ALTER SYSTEM SET taskevents.port = ' . $dapr2->port . '; SELECT pg_reload_conf();');
sleep 1;
$node->safe_psql('postgres', "INSERT INTO tasks (user_id, title) VALUES (gen_random_uuid(), 'moved')");
wait_until('delivered to the new port', sub { scalar @{ delivered_events($dapr2) } == 2 });

# Topics, pubsub and source are settings too.
$node->safe_psql('postgres', q{
	ALTER SYSTEM SET taskevents.topic_task_events = 'te2';
	ALTER SYSTEM SET taskevents.source = 'db/tasks';
	SELECT pg_reload_conf();});
sleep 1;
$node->safe_psql('postgres', "INSERT INTO tasks (user_id, title) VALUES (gen_random_uuid(), 'renamed topic')");
wait_until('delivered to the renamed topic', sub { scalar @{ delivered_events($dapr2) } == 4 });
my $e = delivered_events($dapr2)->[2];
is($e->{path}, '/v1.0/publish/pubsub-kafka/te2', 'topic setting used');
is($e->{event}{source}, 'db/tasks', 'source setting used');

# Retention: delivered changes are kept for a while in taskevents.delivered.
$node->safe_psql('postgres', "ALTER SYSTEM SET taskevents.retention = '1h'; SELECT pg_reload_conf();");
sleep 1;
$node->safe_psql('postgres', "INSERT INTO tasks (user_id, title) VALUES (gen_random_uuid(), 'kept')");
wait_drained($node, 'delivered');
is($node->safe_psql('postgres', "SELECT count(*) FROM taskevents.delivered WHERE title = 'kept'"), '1',
	'with retention, the delivered change is kept');

$node->stop;
done_testing();
