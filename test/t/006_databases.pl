# Delivery runs in every database with the extension, with no per-database
# setting: it starts at CREATE EXTENSION and at server start, stops at DROP
# EXTENSION, and DROP DATABASE neither hangs nor fails because of it.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Utils;
use Test::More;
use TaskEventsTest;

my $dapr = start_sidecar();
my $node = new_node('dbs', port => $dapr->port);

sub workers
{
	return $node->safe_psql('postgres',
		q{SELECT coalesce(string_agg(datname, ',' ORDER BY datname), '') FROM pg_stat_activity
		   WHERE backend_type = 'taskevents worker'});
}

$node->safe_psql('postgres', 'CREATE DATABASE app1; CREATE DATABASE app2; CREATE DATABASE plain;');
wait_until('probe workers for databases without the extension exit', sub { workers() eq '' });

# CREATE EXTENSION starts delivery when it commits.
for my $db (qw(app1 app2))
{
	$node->safe_psql($db, tasks_ddl() . 'CREATE EXTENSION taskevents;');
}
wait_until('a worker in each database with the extension', sub { workers() eq 'app1,app2' }, 10);

$node->safe_psql('app1', "INSERT INTO tasks (user_id, title) VALUES (gen_random_uuid(), 'in app1')");
$node->safe_psql('app2', "INSERT INTO tasks (user_id, title) VALUES (gen_random_uuid(), 'in app2')");
wait_until('both databases delivered', sub { scalar @{ delivered_events($dapr) } == 4 });
my %titles = map { $_->{event}{data}{title} => 1 } grep { $_->{event}{type} eq 'task.created' } @{ delivered_events($dapr) };
is_deeply(\%titles, { 'in app1' => 1, 'in app2' => 1 }, 'each database\'s events delivered');
like($node->safe_psql('app1', 'SELECT string_agg(database, \',\' ORDER BY database) FROM taskevents.workers'),
	qr/^app1,app2$/, 'taskevents.workers lists every database');

# At server start.
$node->restart;
wait_until('workers back after a restart', sub { workers() eq 'app1,app2' }, 15);

# DROP EXTENSION while delivering: the worker goes away, nothing hangs.
$dapr->mode(mode => 'slow', ms => 50);
$node->safe_psql('app2',
	"INSERT INTO tasks (user_id, title) SELECT gen_random_uuid(), 'x' || i FROM generate_series(1, 200) i");
wait_until('app2 delivering', sub { scalar @{ delivered_events($dapr) } > 10 });
$node->safe_psql('app2', 'SET statement_timeout = \'30s\'; DROP EXTENSION taskevents;');
wait_until('no worker in app2 after DROP EXTENSION', sub { workers() eq 'app1' }, 10);
is($node->safe_psql('app2', "SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'taskevents%'"), '0',
	'DROP EXTENSION removed the triggers');
$node->safe_psql('app2', "INSERT INTO tasks (user_id, title) VALUES (gen_random_uuid(), 'uncaptured')");
$dapr->mode(mode => 'ok');

# Installed again: delivery again.
$node->safe_psql('app2', 'CREATE EXTENSION taskevents;');
wait_until('worker back in app2', sub { workers() eq 'app1,app2' }, 10);

# DROP DATABASE with a worker in it: neither hangs nor fails.
my ($ret, $stdout, $stderr) = $node->psql('postgres', 'DROP DATABASE app2', timeout => 30);
is($ret, 0, 'DROP DATABASE of a database with a worker succeeds') or diag $stderr;
wait_until('only app1 left', sub { workers() eq 'app1' }, 10);

# A template database with the extension: CREATE DATABASE ... TEMPLATE works,
# and the new database delivers.
($ret, $stdout, $stderr) = $node->psql('postgres', 'CREATE DATABASE app3 TEMPLATE app1', timeout => 30);
is($ret, 0, 'CREATE DATABASE from a database with a worker succeeds') or diag $stderr;
wait_until('a worker in the copy', sub { workers() eq 'app1,app3' }, 10);
my $n = scalar @{ delivered_events($dapr) };
$node->safe_psql('app3', "INSERT INTO tasks (user_id, title) VALUES (gen_random_uuid(), 'in app3')");
wait_until('the copy delivers', sub { scalar @{ delivered_events($dapr) } == $n + 2 });

# ALTER DATABASE ... RENAME needs the database to itself too.
($ret, $stdout, $stderr) = $node->psql('postgres', 'ALTER DATABASE app3 RENAME TO app4', timeout => 30);
is($ret, 0, 'ALTER DATABASE RENAME of a database with a worker succeeds') or diag $stderr;
wait_until('worker back in the renamed database', sub { workers() eq 'app1,app4' }, 10);

# With delivery disabled, workers still leave databases without the extension.
$node->safe_psql('postgres', 'ALTER SYSTEM SET taskevents.enabled = off; SELECT pg_reload_conf();');
$node->restart;
wait_until('only the databases with the extension keep a worker while disabled',
	sub { workers() eq 'app1,app4' }, 10);
$node->safe_psql('app1', 'DROP EXTENSION taskevents;');
wait_until('DROP EXTENSION ends a disabled worker too', sub { workers() eq 'app4' }, 10);

$node->stop;
done_testing();
