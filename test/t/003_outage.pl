# A sidecar that is away is nobody's fault: the worker pauses, probes
# readiness, resumes within seconds of its return without charging attempts,
# and writers never notice.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);
use TaskEventsTest;

my $port = PostgreSQL::Test::Cluster::get_free_port();

# Absent at start: nothing listens on the port yet.
my $node = new_node('outage', port => $port, conf => "taskevents.max_attempts = 2\n");
$node->safe_psql('postgres', tasks_ddl() . 'CREATE EXTENSION taskevents;');
$node->safe_psql('postgres',
	"INSERT INTO tasks (user_id, title) SELECT gen_random_uuid(), 'early ' || i FROM generate_series(1, 20) i");
wait_until('worker paused', sub {
	$node->safe_psql('postgres', 'SELECT worker_state FROM taskevents.status') =~ /paused/ });
is($node->safe_psql('postgres', 'SELECT sidecar_reachable FROM taskevents.status'), 'f',
	'status: sidecar unreachable');
sleep 3;    # longer than max_attempts x backoff: attempts must not be burned meanwhile
is($node->safe_psql('postgres', 'SELECT count(*) FROM taskevents.dead_letters'), '0',
	'no dead letters while the sidecar is away');
is($node->safe_psql('postgres', 'SELECT count(*) FROM taskevents.outbox'), '20', 'all 20 changes wait');

my $dapr = start_sidecar(port => $port);
my $back = time;
wait_drained($node, 'delivered after the sidecar came', 10);
my $took = time - $back;
note sprintf('resumed and drained %.2f s after the sidecar started', $took);
is(scalar @{ delivered_events($dapr) }, 40, 'all 40 events delivered once the sidecar is there');
is($node->safe_psql('postgres', 'SELECT count(*) FROM taskevents.dead_letters'), '0', 'still no dead letters');
ok($node->log_contains(qr/unreachable .* delivery paused/), 'one log line when pausing');
ok($node->log_contains(qr/is back after \d+ s; delivery resumed/), 'one log line when resuming');

# Down mid-stream (connections refused), while writers keep writing.
$dapr->mode(mode => 'down');
my $t0 = time;
$node->safe_psql('postgres', q{
	SET statement_timeout = '5s';
	INSERT INTO tasks (user_id, title) SELECT gen_random_uuid(), 'during outage ' || i FROM generate_series(1, 50) i;
	UPDATE tasks SET completed = true;
});
ok(1, 'writes succeed while the sidecar refuses connections');
wait_until('paused again', sub {
	$node->safe_psql('postgres', 'SELECT worker_state FROM taskevents.status') =~ /paused/ });
$dapr->mode(mode => 'ok');
wait_drained($node, 'drained after the outage', 10);
is(scalar @{ delivered_events($dapr) }, 40 + 100 + 140, 'every event of the outage delivered');
is($node->safe_psql('postgres', 'SELECT count(*) FROM taskevents.dead_letters'), '0', 'no dead letters');

# A sidecar frozen whole (SIGSTOP): requests and the readiness probe time
# out; that is the sidecar away, writers are not held up, nothing is charged.
$dapr->freeze;
my $out = $node->safe_psql('postgres', q{
	SET statement_timeout = '2s';
	INSERT INTO tasks (user_id, title) SELECT gen_random_uuid(), 'while frozen' FROM generate_series(1, 10);
	SELECT 'written';
});
is($out, 'written', 'writes finish while the sidecar is frozen');
wait_until('paused on a frozen sidecar', sub {
	$node->safe_psql('postgres', 'SELECT worker_state FROM taskevents.status') =~ /paused/ }, 15);
sleep 3;    # longer than max_attempts x backoff
$dapr->thaw;
wait_drained($node, 'drained after the thaw', 10);
is($node->safe_psql('postgres', 'SELECT count(*) FROM taskevents.dead_letters'), '0', 'no dead letters after the freeze');

# A sidecar that is ready but whose publishes hang (a broker slower than the
# timeout): each timeout is an attempt, so the worker backs off and gives up
# after max_attempts instead of pausing and re-sending for ever.
$dapr->mode(mode => 'hang');
my $retried = $node->safe_psql('postgres', 'SELECT retried FROM taskevents.status');
$node->safe_psql('postgres', "INSERT INTO tasks (user_id, title) VALUES (gen_random_uuid(), 'slow broker')");
wait_until('the slow publish is charged and dead-lettered', sub {
	$node->safe_psql('postgres', 'SELECT count(*) FROM taskevents.dead_letters') eq '2' }, 20);
like($node->safe_psql('postgres', 'SELECT string_agg(DISTINCT last_error, \',\') FROM taskevents.dead_letters'),
	qr/Timeout/i, 'the dead letters say the requests timed out');
cmp_ok($node->safe_psql('postgres', 'SELECT retried FROM taskevents.status'), '>', $retried,
	'the timeouts were retried with backoff first');
unlike($node->safe_psql('postgres', 'SELECT worker_state FROM taskevents.status'), qr/paused/,
	'a ready sidecar is not paused for');
$dapr->mode(mode => 'ok');
$node->safe_psql('postgres', 'SELECT taskevents.drop_dead_letters()');

# A hanging sidecar with a backlog (a frozen daprd): once a request timed out
# and none was answered, the round starts no more requests; the worker pauses
# after one wave (taskevents.concurrency) instead of sending every queued
# task into the hang, where a frozen daprd would keep them and publish them
# when thawed, as copies of what the worker sends again.
$node->safe_psql('postgres', 'ALTER SYSTEM SET taskevents.concurrency = 4; SELECT pg_reload_conf();');
$dapr->mode(mode => 'hang', healthz => 500);
my $hung_before = grep { ($_->{action} // '') eq 'hang' } @{ $dapr->records };
$node->safe_psql('postgres',
	"INSERT INTO tasks (user_id, title) SELECT gen_random_uuid(), 'backlog ' || i FROM generate_series(1, 40) i");
wait_until('paused on a hanging sidecar with a backlog', sub {
	$node->safe_psql('postgres', 'SELECT worker_state FROM taskevents.status') =~ /paused/ }, 30);
my $hung = grep { ($_->{action} // '') eq 'hang' } @{ $dapr->records };
is($hung - $hung_before, 4, 'one wave of 4 requests went into the hang, not the 40 queued tasks');
$dapr->mode(mode => 'ok', healthz => 204);
$node->safe_psql('postgres', 'ALTER SYSTEM RESET taskevents.concurrency; SELECT pg_reload_conf();');
wait_drained($node, 'drained after the hang with a backlog', 20);

# A cancel (pg_cancel_backend(), what a script cancelling long queries
# sends) has no query of the worker's to cancel: it is ignored, and the
# round being sent is neither dropped nor sent again.
$dapr->mode(mode => 'slow', ms => 300);
my $cancel_at = -s $node->logfile;
$node->safe_psql('postgres',
	"INSERT INTO tasks (user_id, title) SELECT gen_random_uuid(), 'cancelled ' || i FROM generate_series(1, 40) i");
my $cancelled = sub { [ grep { ($_->{event}{data}{title} // '') =~ /^cancelled / } @{ delivered_events($dapr) } ] };
wait_until('the round is being sent', sub { @{ $cancelled->() } > 0 });
$node->safe_psql('postgres',
	"SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE backend_type = 'taskevents worker'");
wait_drained($node, 'the round delivered despite the cancel', 60);
my %tasks = map { $_->{event}{data}{task_id} => 1 } @{ $cancelled->() };
my %ids;
$ids{ $_->{event}{id} }++ for grep { $tasks{ $_->{event}{data}{task_id} // '' } } @{ delivered_events($dapr) };
is(scalar keys %ids, 80, 'every event of the cancelled round delivered');
is_deeply([ grep { $ids{$_} > 1 } keys %ids ], [], '... once each');
unlike(slurp_file($node->logfile, $cancel_at), qr/canceling statement/, 'the worker took no cancel');
$dapr->mode(mode => 'ok');

# A publish daprd never answers, with the default timeout (5 minutes): once
# the silence is noted, the worker waits in curl's poll with no timer of its
# own, and still takes a procsignal barrier at once (DROP DATABASE waits
# for every backend's), and SIGTERM.  (Its exit on the postmaster's death:
# 012_worker_lifecycle.)
$node->safe_psql('postgres', 'CREATE DATABASE spare');
$node->safe_psql('postgres', "ALTER SYSTEM SET taskevents.timeout = '300s'; SELECT pg_reload_conf();");
$dapr->mode(mode => 'hang');
my $offset = -s $node->logfile;
$node->safe_psql('postgres', "INSERT INTO tasks (user_id, title) VALUES (gen_random_uuid(), 'into the silence')");
ok($node->wait_for_log(qr/has not answered 1 requests for 10 s/, $offset), 'the silence is noted');
my $timed_out = 0;
$node->psql('postgres', 'DROP DATABASE spare', timeout => 30, timed_out => \$timed_out);
ok(!$timed_out && $node->safe_psql('postgres', "SELECT count(*) FROM pg_database WHERE datname = 'spare'") eq '0',
	'DROP DATABASE does not wait for the unanswered publish');
my $worker = $node->safe_psql('postgres',
	"SELECT pid FROM pg_stat_activity WHERE backend_type = 'taskevents worker'");
$node->safe_psql('postgres', "SELECT pg_terminate_backend($worker)");
wait_until('the worker in the silence exits on SIGTERM', sub { !-e "/proc/$worker" }, 30);
$dapr->mode(mode => 'ok');
$node->safe_psql('postgres', "ALTER SYSTEM RESET taskevents.timeout; SELECT pg_reload_conf();");
wait_drained($node, 'the silenced change delivered by the next worker', 30);

# Only one kind of summary during a long outage, not a line per event.
my $log = slurp_file($node->logfile);
my $per_event = () = $log =~ /outcome=retry/g;
cmp_ok($per_event, '<=', 20, 'at most a burst of per-event lines during outages');

# The sidecar restarting (process gone, back on the same port).
$dapr->stop;
$node->safe_psql('postgres', "INSERT INTO tasks (user_id, title) VALUES (gen_random_uuid(), 'across restart')");
sleep 1;
$dapr->restart;
wait_drained($node, 'delivered after the sidecar restarted', 10);

$node->stop;
done_testing();
