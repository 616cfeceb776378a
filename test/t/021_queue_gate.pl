# The queue's emptying gate and in-flight table under a review's attacks
# (issue 14): a snapshot imported after a table was found read, a standby
# with hot_standby_feedback that went away, the cost of waiting, and a
# writer whose nextval failed inside a savepoint before PREPARE.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Utils;
use Test::More;
use TaskEventsTest;

my $dapr = start_sidecar();
my $node = new_node('gate', port => $dapr->port, init => { allows_streaming => 1 },
	conf => "max_prepared_transactions = 4\n");
$node->safe_psql('postgres', tasks_ddl() . 'CREATE EXTENSION taskevents;');

sub sql { return $node->safe_psql('postgres', $_[0]) }
sub insert { sql("INSERT INTO tasks (user_id, title) VALUES (gen_random_uuid(), '$_[0]')") }

# Poke the worker until a queue table is emptied (or give up): true if it was.
sub emptied
{
	my ($table, $tries) = @_;
	for my $i (1 .. $tries)
	{
		return 1 if sql("SELECT count(*) FROM taskevents.$table") eq '0';
		insert("poke $table $i");
		wait_drained($node, 'poke delivered');
	}
	return sql("SELECT count(*) FROM taskevents.$table") eq '0';
}

# 1. A snapshot exported while a change was unread, imported after the
# record that found its table read, its exporter then gone: the table waits
# for the importer too.
sql("SELECT setval('taskevents.outbox_seq', 32765)");
insert('a0');
wait_drained($node, 'a0 delivered');
set_delivery($node, 'off');
insert('a1 unread at the snapshot');
my $exporter = session($node);
my ($snap) = $exporter->query("BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT pg_export_snapshot();") =~ /(\S+)\s*$/;
set_delivery($node, 'on');
wait_drained($node, 'a1 delivered');
insert('a2 in the next run');
wait_drained($node, 'a2 delivered: its record finds queue_0 read');
my $importer = session($node);
$importer->query("BEGIN ISOLATION LEVEL REPEATABLE READ; SET TRANSACTION SNAPSHOT '$snap'; SELECT 1;");
$exporter->query('COMMIT;');
ok(!emptied('queue_0', 5), 'queue_0 waits for a snapshot imported from an exporter that is gone');
is($importer->query('SELECT count(*) FROM taskevents.queue_0;'), '2',
	'the importer still sees queue_0 as it was (a dump taken with it holds a1)');

# 2. While a table waits, the worker takes no lock and no transaction id.
my $x0 = sql('SELECT pg_current_xact_id()');
insert('while waiting');
wait_drained($node, 'delivered while waiting');
my $x1 = sql('SELECT pg_current_xact_id()');
$node->poll_query_until('postgres', "SELECT count(*) = 0 FROM pg_locks l JOIN pg_stat_activity a USING (pid)"
	  . " WHERE a.backend_type = 'taskevents worker' AND l.mode = 'AccessExclusiveLock'");
sleep 2;    # ten polls of 200 ms
cmp_ok(sql('SELECT pg_current_xact_id()') - $x1, '<=', 2, 'an idle worker waiting to empty a table takes no transaction id');
$importer->query('COMMIT;');
ok(emptied('queue_0', 20), 'queue_0 is emptied once the importer is gone');

# 3. A standby with hot_standby_feedback holds tables while it is connected,
# not after it went away (its walsender's PGPROC keeps an xmin).
$node->backup('backup');
my $standby = PostgreSQL::Test::Cluster->new('gate_standby');
$standby->init_from_backup($node, 'backup', has_streaming => 1);
$standby->append_conf('postgresql.conf', "hot_standby_feedback = on\nwal_receiver_status_interval = 1\n");
$standby->start;
$node->poll_query_until('postgres', 'SELECT backend_xmin IS NOT NULL FROM pg_stat_replication') or die 'no feedback';
$standby->stop;
$node->poll_query_until('postgres', 'SELECT count(*) = 0 FROM pg_stat_replication') or die 'the walsender stays';
sql("SELECT setval('taskevents.outbox_seq', 2 * 32768)");
insert('b0 in run 2');
wait_drained($node, 'b0 delivered');
ok(emptied('queue_1', 20), 'a table is emptied once the standby with feedback is gone');

# 4. A writer whose nextval failed (lock_timeout, behind an ALTER SEQUENCE)
# inside a savepoint, then PREPAREd, holds no number: it keeps no hole open.
my $alter = session($node);
$alter->query('BEGIN; ALTER SEQUENCE taskevents.outbox_seq MAXVALUE 9223372036854775807;');
my $victim = session($node);
$victim->query(q{BEGIN; DO $$ BEGIN
	SET LOCAL lock_timeout = '300ms';
	INSERT INTO tasks (user_id, title) VALUES (gen_random_uuid(), 'timed out');
EXCEPTION WHEN lock_not_available THEN NULL; END $$;
PREPARE TRANSACTION 'stuck';});
$alter->query('COMMIT;');
rolled_back_inserts($node, 300);
insert('after the rollbacks');
wait_drained($node, 'delivered after the rollbacks');
wait_until('no hole is kept by a transaction that holds no number', sub { cursor_holes($node) eq '0' });
sql("ROLLBACK PREPARED 'stuck'");

# 5. A transaction that writes now and then keeps little more than its own
# numbers in flight: rollbacks between its writes close.
my $batch = session($node);
$batch->query("BEGIN; INSERT INTO tasks (user_id, title) VALUES (gen_random_uuid(), 'batch 1');");
for my $i (2 .. 4)
{
	rolled_back_inserts($node, 100);
	$batch->query("INSERT INTO tasks (user_id, title) VALUES (gen_random_uuid(), 'batch $i');");
}
insert('after the batch');
wait_drained($node, 'delivered beside the batch');
wait_until('only the batch\'s own numbers are holes', sub { cursor_holes($node) eq '4' });
$batch->query('COMMIT;');
wait_until('no hole after the batch', sub { cursor_holes($node) eq '0' });

$exporter->close;
$importer->close;
$alter->close;
$victim->close;
$batch->close;
$node->stop;
done_testing();
