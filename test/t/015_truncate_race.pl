# TRUNCATE racing writers never loses a deletion: every row it removes is a
# task.deleted, also rows committed while it waited for its lock, and rows
# a REPEATABLE READ transaction's snapshot does not see.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use IPC::Run;
use PostgreSQL::Test::Utils;
use Test::More;
use TaskEventsTest;

# Delivery off: the events stay in the queue to be looked at.
my $node = new_node('truncrace', conf => "taskevents.enabled = off\n");
$node->safe_psql('postgres', tasks_ddl() . 'CREATE EXTENSION taskevents;');

# Tasks created and not deleted, by the queued events (1: created, 4: deleted).
sub created_not_deleted
{
	return $node->safe_psql('postgres', q{
		SELECT count(*) FROM (SELECT task_id, bool_or(events & 1 <> 0) AS created, bool_or(events & 4 <> 0) AS deleted
		                        FROM taskevents.outbox GROUP BY task_id) s
		 WHERE created AND NOT deleted});
}

my $writer = session($node);
my $truncator = session($node);

# 1. A row committed while TRUNCATE waits for its lock.
$writer->query("BEGIN; INSERT INTO tasks (user_id, title) VALUES (gen_random_uuid(), 'committed while waiting');");
$truncator->send('TRUNCATE tasks;');
ok($node->poll_query_until('postgres',
		"SELECT count(*) > 0 FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE 'TRUNCATE%'"),
	'TRUNCATE waits for the writer');
$writer->query('COMMIT;');
$truncator->result;
is($node->safe_psql('postgres', 'SELECT count(*) FROM tasks'), '0', 'the row is gone');
is(created_not_deleted(), '0', 'the row committed while TRUNCATE waited has its task.deleted');

# 2. REPEATABLE READ: the transaction's snapshot predates the row.
$truncator->query('BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT count(*) FROM tasks;');
$writer->query("INSERT INTO tasks (user_id, title) VALUES (gen_random_uuid(), 'after the snapshot');");
$truncator->query('TRUNCATE tasks; COMMIT;');
is($node->safe_psql('postgres', 'SELECT count(*) FROM tasks'), '0', 'the row is gone');
is(created_not_deleted(), '0', 'the row newer than the REPEATABLE READ snapshot has its task.deleted');

# 3. Writers flat out while TRUNCATE runs again and again.
my $script = "$PostgreSQL::Test::Utils::tmp_check/insert.sql";
PostgreSQL::Test::Utils::append_to_file($script,
	"INSERT INTO tasks (user_id, title) VALUES (gen_random_uuid(), 'racing');\n");
my $bench = IPC::Run::start([ 'pgbench', '-n', '-c', '2', '-T', '5', '-f', $script, $node->connstr('postgres') ],
	'>', \my $out, '2>', \my $err);
for (1 .. 20)
{
	$truncator->query('TRUNCATE tasks;');
	$truncator->query("BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT 1; SELECT pg_sleep(0.05); TRUNCATE tasks; COMMIT;");
}
$bench->finish;
$truncator->query('TRUNCATE tasks;');
cmp_ok($node->safe_psql('postgres', q{SELECT count(*) FROM taskevents.outbox WHERE events & 1 <> 0}), '>', 100,
	'the writers wrote');
is(created_not_deleted(), '0', 'every task created while TRUNCATE ran again and again was deleted by an event');

$writer->close;
$truncator->close;
$node->stop;
done_testing();
