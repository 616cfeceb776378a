# The worker loop and its lifecycle: no memory growth while idle, no worker
# outliving its extension or its postmaster, nothing recorded into a new
# install, no restart storm for a dropped or invalid database, counters that
# start again with the worker.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Utils;
use Test::More;
use TaskEventsTest;

my $dapr = start_sidecar();
my $node = new_node('lifecycle2', port => $dapr->port,
	conf => "taskevents.max_databases = 3\nlog_min_messages = info\n");

sub worker_pid
{
	my ($db) = @_;
	return $node->safe_psql('postgres',
		"SELECT pid FROM pg_stat_activity WHERE backend_type = 'taskevents worker' AND datname = '$db'");
}

sub rss_anon_kb
{
	my ($pid) = @_;
	my ($kb) = slurp_file("/proc/$pid/status") =~ /RssAnon:\s+(\d+)/;
	return $kb;
}

sub insert
{
	my ($db, $n, $title) = @_;
	$node->safe_psql($db,
		"INSERT INTO tasks (user_id, title) SELECT gen_random_uuid(), '$title ' || i FROM generate_series(1, $n) i");
}

$node->safe_psql('postgres', 'CREATE DATABASE app');
$node->safe_psql('app', tasks_ddl() . 'CREATE EXTENSION taskevents;');
wait_until('a worker in app', sub { worker_pid('app') ne '' });
insert('app', 10, 'warm');
wait_drained($node, 'warmed up', 30, 'app');

# 1. Idle, polling every 10 ms: no memory growth.
$node->safe_psql('postgres', "ALTER SYSTEM SET taskevents.poll_interval = '10ms'; SELECT pg_reload_conf();");
sleep 2;
my $pid = worker_pid('app');
my $before = rss_anon_kb($pid);
sleep 15;
my $after = rss_anon_kb($pid);
note "worker RssAnon idle at 10 ms polls: $before kB, 15 s later $after kB";
cmp_ok($after - $before, '<', 1024, 'no memory growth over 1,500 idle polls');
$node->safe_psql('postgres', "ALTER SYSTEM RESET taskevents.poll_interval; SELECT pg_reload_conf();");

# 1b. Delivery turned off and on again: the step that resumes looks at the
# extension afresh, in a transaction of its own, then claims a round; that
# round's memory is the step's, freed with it, not the worker's for good.
# The worker's memory contexts in all, from pg_log_backend_memory_contexts.
sub memory_total
{
	my ($pid) = @_;
	my $at = -s $node->logfile;
	my $total;
	$node->safe_psql('postgres', "SELECT pg_log_backend_memory_contexts($pid)");
	wait_until('the worker logs its memory contexts', sub {
		($total) = slurp_file($node->logfile, $at) =~ /Grand total: (\d+) bytes/;
		defined $total });
	return $total;
}

sub resume_with_backlog
{
	$node->safe_psql('postgres', 'ALTER SYSTEM SET taskevents.enabled = off; SELECT pg_reload_conf();');
	wait_until('delivery off', sub { $node->safe_psql('app', 'SELECT worker_state FROM taskevents.status') eq 'disabled' });
	insert('app', 2000, 'backlog');
	$node->safe_psql('postgres', 'ALTER SYSTEM SET taskevents.enabled = on; SELECT pg_reload_conf();');
	wait_drained($node, 'the backlog delivered', 60, 'app');
}
resume_with_backlog();
$before = memory_total($pid);
resume_with_backlog() for 1 .. 3;
$after = memory_total($pid);
note "worker memory contexts: $before bytes, after 3 more resumes with 2,000 changes waiting $after bytes";
cmp_ok($after - $before, '<', 1024 * 1024, 'a resumed round leaves no memory behind');

# 2. Counters start again with the worker (status says "since the worker started").
cmp_ok($node->safe_psql('app', 'SELECT published FROM taskevents.status'), '>', 0, 'events counted');
$node->safe_psql('postgres', "SELECT pg_terminate_backend($pid)");
wait_until('a new worker', sub { my $p = worker_pid('app'); $p ne '' && $p ne $pid });
is($node->safe_psql('app', 'SELECT published || \'/\' || retried || \'/\' || dead FROM taskevents.status'),
	'0/0/0', 'a new worker counts from zero');

# 3. A paused worker notices DROP EXTENSION and leaves.
$dapr->mode(mode => 'down');
insert('app', 1, 'while down');
wait_until('paused', sub { $node->safe_psql('app', 'SELECT worker_state FROM taskevents.status') =~ /paused/ });
$node->safe_psql('app', 'DROP EXTENSION taskevents');
wait_until('the paused worker left with its extension', sub { worker_pid('app') eq '' }, 10);
$dapr->mode(mode => 'ok');

# 4. DROP EXTENSION while a round is being sent: the worker leaves at once,
# nothing more is published, and its round is never recorded into the next
# install's tables (whose numbers start again at 1).
$node->safe_psql('postgres',
	"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE backend_type = 'taskevents worker' AND datname = 'app'");
wait_until('no worker in app', sub { worker_pid('app') eq '' });
$node->safe_psql('app', 'CREATE EXTENSION taskevents');
wait_until('a worker again', sub { worker_pid('app') ne '' });
$dapr->mode(mode => 'slow', ms => 100);
insert('app', 300, 'old install');
wait_until('sending', sub { scalar @{ delivered_events($dapr) } > 0 });
my $old_pid = worker_pid('app');
$node->safe_psql('app', 'DROP EXTENSION taskevents');
my $at_drop = scalar @{ delivered_events($dapr) };
wait_until('the worker left at DROP EXTENSION', sub { worker_pid('app') ne $old_pid }, 5);
sleep 2;
cmp_ok(scalar @{ delivered_events($dapr) } - $at_drop, '<=', 16,
	'nothing published after DROP EXTENSION but the requests already in flight');
$dapr->mode(mode => 'ok');
$node->safe_psql('app', 'CREATE EXTENSION taskevents');
insert('app', 5, 'new install');
wait_until('the new install is delivered', sub {
	scalar(grep { ($_->{event}{data}{title} // '') =~ /^new install/ } @{ delivered_events($dapr) }) == 5 });
is($node->safe_psql('app', 'SELECT count(*) FROM taskevents.outbox'), '0', 'nothing of the new install is waiting');
is($node->safe_psql('app', 'SELECT count(*) FROM taskevents.dead_letters'), '0', 'and nothing is dead');

# 5. DROP DATABASE: no worker is started again for it (no storm of FATALs).
my $offset = -s $node->logfile;
$node->safe_psql('postgres', 'DROP DATABASE app');
sleep 5;
my $log = substr(slurp_file($node->logfile), $offset);
my $fatals = () = $log =~ /FATAL:.*database .* does not exist/g;
is($fatals, 0, 'no worker tried the dropped database');

# 6. A database that is invalid (an interrupted DROP DATABASE) or over
# taskevents.max_databases is reported once, not every second.
$node->safe_psql('postgres', q{
	CREATE DATABASE broken ALLOW_CONNECTIONS false;
	UPDATE pg_database SET datconnlimit = -2, datallowconn = true WHERE datname = 'broken';
	CREATE DATABASE d1; CREATE DATABASE d2; CREATE DATABASE d3; CREATE DATABASE d4;});
for my $db (qw(d1 d2 d3 d4))
{
	$node->safe_psql($db, tasks_ddl() . 'CREATE EXTENSION taskevents;');
}
sleep 6;
$node->safe_psql('postgres', 'CREATE DATABASE d5');    # one more look at every database
sleep 1;
$log = substr(slurp_file($node->logfile), $offset);
my $invalid = () = $log =~ /database "broken" is invalid/g;
is($invalid, 1, 'the invalid database is reported once');
unlike($log, qr/cannot connect to invalid database/, 'no worker tried to connect to it');
my %full;
$full{$1}++ while $log =~ /more databases than taskevents.max_databases \(\d+\): database (\d+)/g;
cmp_ok(scalar keys %full, '>=', 1, 'a database over max_databases is reported');
is_deeply([ grep { $full{$_} > 1 } keys %full ], [], '... once each, not every second');
$node->safe_psql('postgres', 'DROP DATABASE d5; DROP DATABASE d4; DROP DATABASE d3; DROP DATABASE d2; DROP DATABASE d1;');

# 7. The postmaster dies in the middle of a long drain, while the worker
# waits on publishes the sidecar does not answer (timeout 5 minutes): the
# worker exits within a moment, not when its rounds are done.
$node->safe_psql('postgres', tasks_ddl() . 'CREATE EXTENSION taskevents;');
$node->safe_psql('postgres', "ALTER SYSTEM SET taskevents.timeout = '300s'; SELECT pg_reload_conf();");
$dapr->mode(mode => 'slow', ms => 200);
insert('postgres', 2000, 'drain');
wait_until('draining', sub { scalar @{ delivered_events($dapr) } > 0 });
$dapr->mode(mode => 'hang');
wait_until('publishes hang', sub { grep { ($_->{action} // '') eq 'hang' } @{ $dapr->records } });
$pid = worker_pid('postgres');
my $postmaster = $node->{_pid};
kill 'KILL', $postmaster;
wait_until('the worker exits after the postmaster died', sub { !-e "/proc/$pid" }, 5);
kill 'KILL', $pid if -e "/proc/$pid";
wait_until('the postmaster is gone', sub { !-e "/proc/$postmaster" });
$node->{_pid} = undef;    # nothing left for the framework to stop

done_testing();
