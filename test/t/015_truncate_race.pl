# TRUNCATE racing writers flat out never loses a deletion: every task
# created while TRUNCATE runs again and again, in READ COMMITTED and in
# REPEATABLE READ, is deleted by an event.  Each interleaving on its own (a
# row committed while TRUNCATE waits for its lock, a row newer than a
# REPEATABLE READ snapshot, a rollback) is spelled out in
# test/isolation/specs/truncate.spec.
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

my $truncator = session($node);

# Writers flat out while TRUNCATE runs again and again.
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

$truncator->close;
$node->stop;
done_testing();
