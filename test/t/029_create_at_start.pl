# A worker that found no extension just before CREATE EXTENSION committed:
# its verdict is stale (a reprobe came after it started), and the database
# must get its worker at once, not at the next CREATE DATABASE.  Found by a
# full run on PostgreSQL 18 under load (019_durability waited 40 s for a
# worker that never came): the launcher took the reprobe first, then freed
# the dead worker's slot and put the database back on its list of databases
# without the extension.  Here the launcher is stopped (SIGSTOP) while the
# worker finds no extension and exits, and goes on once CREATE EXTENSION has
# committed: the order the load made.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Utils;
use Test::More;
use TaskEventsTest;

my $node = new_node('create_race', conf => "log_min_messages = info\n");
$node->safe_psql('postgres', tasks_ddl());

sub pid_of
{
	my ($type, $db) = @_;
	return $node->safe_psql('postgres',
		"SELECT pid FROM pg_stat_activity WHERE backend_type = '$type'" . ($db ? " AND datname = '$db'" : ''));
}

# A worker for postgres that waits, looking for the extension, on a lock.
my $locker = $node->background_psql('postgres');
$locker->query_safe('BEGIN; LOCK pg_catalog.pg_extension IN ACCESS EXCLUSIVE MODE');
$node->safe_psql('template1', 'CREATE DATABASE reprobe');    # the launcher looks again
wait_until('a worker looking at postgres', sub { pid_of('taskevents worker', 'postgres') ne '' });
my $launcher = pid_of('taskevents launcher');
kill 'STOP', $launcher;
$locker->query_safe('ROLLBACK');
wait_until('the worker found no extension and left', sub { pid_of('taskevents worker', 'postgres') eq '' });
$node->safe_psql('postgres', 'CREATE EXTENSION taskevents');
kill 'CONT', $launcher;
ok(wait_until('a worker for the new extension',
	sub { $node->safe_psql('postgres', 'SELECT worker_state FROM taskevents.status') eq 'delivering' }, 10),
	'the worker that looked before CREATE EXTENSION committed does not keep its database waiting');
$locker->quit;

done_testing();
