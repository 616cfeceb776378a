# The queue's assumptions under adversaries (issue 14): a reader whose
# snapshot predates an emptying (pg_dump), rows that arrive by another path
# than the capture trigger (above the sequence, a sequence moved back), a
# transaction that holds an xid for long while others roll back, prepared
# transactions, and objects of the schema altered by a superuser.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use IPC::Run;
use PostgreSQL::Test::Utils;
use Test::More;
use TaskEventsTest;

my $dapr = start_sidecar();
my $node = new_node('adversaries', port => $dapr->port, conf => "max_prepared_transactions = 4\n");
$node->safe_psql('postgres', tasks_ddl() . 'CREATE EXTENSION taskevents;');
my $bindir = $node->config_data('--bindir');

sub sql { return $node->safe_psql('postgres', $_[0]) }

sub insert
{
	my ($title) = @_;
	sql("INSERT INTO tasks (user_id, title) VALUES (gen_random_uuid(), '$title')");
}

# How many times each task.created title reached the sidecar.
sub created
{
	my %n;
	$n{ $_->{event}{data}{title} }++ for grep { $_->{event}{type} eq 'task.created' } @{ delivered_events($dapr) };
	return \%n;
}

# 1. A dump whose snapshot predates an emptying keeps every change.  The
# change is unread at the snapshot, then fails once (it moves to
# taskevents.retry), and its table's run ends: emptying the table then would
# leave it in neither table of the dump.  (pg_dump locks an extension's
# tables only when it copies them: the snapshot comes first.)
sql("SELECT setval('taskevents.outbox_seq', 32765)");
insert('before the dump');
wait_drained($node, 'the start is delivered');
set_delivery($node, 'off');
insert('unread at the dump');
my $dumper = session($node);
my ($snap) = $dumper->query(
	"BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT pg_export_snapshot();")
  =~ /(\S+)\s*$/;
$dapr->mode(mode => 'fail', status => 500, code => 'ERR_PUBSUB_PUBLISH_MESSAGE', match => 'unread at the dump');
set_delivery($node, 'on');
wait_until('the unread change failed', sub { sql('SELECT count(*) FROM taskevents.retry') ne '0' });
$dapr->mode(mode => 'ok');
wait_drained($node, 'then delivered');
insert('in the next run');
wait_drained($node, 'the next run delivered (its record would empty the first table)');
is($dumper->query('SELECT count(*) FROM taskevents.queue_0;'), '2',
	'a snapshot older than the emptying still sees the first table');
my $dump = "$PostgreSQL::Test::Utils::tmp_check/adversaries.dump";
my ($out, $err);
ok(IPC::Run::run([ "$bindir/pg_dump", '-Fc', "--snapshot=$snap", '-f', $dump, '-d', $node->connstr('postgres') ],
		'>', \$out, '2>', \$err), 'pg_dump with that snapshot') or diag($err);
set_delivery($node, 'off');    # the restored copy is only looked at
sql('CREATE DATABASE restored');
IPC::Run::run([ "$bindir/pg_restore", '-d', $node->connstr('restored'), $dump ], '>', \$out, '2>', \$err);
is($node->safe_psql('restored', "SELECT string_agg(title, ',') FROM taskevents.outbox"), 'unread at the dump',
	'the dump holds the change that was unread at its snapshot');
$node->safe_psql('postgres', 'DROP DATABASE restored');
set_delivery($node, 'on');
$dumper->query('COMMIT;');
insert('after the dump');
wait_until('the first table is emptied once the old snapshot is gone', sub {
	sql('SELECT count(*) FROM taskevents.queue_0') eq '0' });

# 2. Rows above the last number given out: published once, and local writes
# go on (the sequence is moved past them).
my $next = sql("SELECT last_value + 10 FROM taskevents.outbox_seq");
sql("INSERT INTO taskevents.queue_1 SELECT $next, gen_random_uuid(), events, changed_at, 'foreign-task', user_id,"
	  . " 'above the sequence', completed, due_date, changes, trace_id, traceparent"
	  . " FROM taskevents.queue_1 ORDER BY seq DESC LIMIT 1");
wait_until('the row above the sequence is delivered', sub { created()->{'above the sequence'} });
cmp_ok(sql('SELECT last_value FROM taskevents.outbox_seq'), '>=', $next, 'the sequence is moved past it');
insert("after the row above $_") for 1 .. 12;
wait_drained($node, 'later changes delivered');
is(created()->{'above the sequence'}, 1, 'a row above the sequence is published once');
is(created()->{'after the row above 12'}, 1, 'local writes after it succeed');

# The sequence moved back below what was read: moved forward again before a
# writer collides with a number in use.
my $hi = sql('SELECT last_value FROM taskevents.outbox_seq');
sql("SELECT setval('taskevents.outbox_seq', $hi - 5)");
$node->poll_query_until('postgres', "SELECT last_value >= $hi FROM taskevents.outbox_seq")
  or fail('the sequence moved back is moved forward again');
insert('after setval backwards');
wait_drained($node, 'delivered after the sequence was moved back');
is(created()->{'after setval backwards'}, 1, 'a write after setval backwards is delivered');

# 3. Holes cost what is in flight, not what rolled back: a transaction that
# holds a number (and its xid) for long, 500 rollbacks meanwhile.
my $holder = session($node);
$holder->query("BEGIN; INSERT INTO tasks (user_id, title) VALUES (gen_random_uuid(), 'held open');");
my $other_db = session($node);
sql('CREATE DATABASE elsewhere');
my $elsewhere = session($node, 'elsewhere');
$elsewhere->query('BEGIN; SELECT pg_current_xact_id();');
rolled_back_inserts($node, 500, 50);
for my $i (1 .. 100)
{
	$other_db->query("BEGIN; INSERT INTO tasks (user_id, title) VALUES (gen_random_uuid(), 'aborted $i'); ROLLBACK;");
}
insert('after the rollbacks');
wait_until('delivered past the rollbacks', sub { created()->{'after the rollbacks'} });
wait_until('only the held change is a hole', sub { cursor_holes($node) eq '1' });
ok(!created()->{'held open'}, 'the held change is not sent before it commits');
ok(!$node->log_contains('cursor is inconsistent'), 'the cursor stayed consistent');
$holder->query('COMMIT;');
wait_until('the held change is delivered at its commit', sub { created()->{'held open'} });
wait_until('no hole is left', sub { cursor_holes($node) eq '0' });
ok(!grep({ /^(rolled back|aborted)/ } keys %{ created() }), 'no rolled-back change is sent');
$elsewhere->query('COMMIT;');

# 4. Prepared transactions: a hole until COMMIT PREPARED, also across a restart.
sql("BEGIN; INSERT INTO tasks (user_id, title) VALUES (gen_random_uuid(), 'prepared'); PREPARE TRANSACTION 'p1';");
sql("BEGIN; INSERT INTO tasks (user_id, title) VALUES (gen_random_uuid(), 'prepared across a restart'); PREPARE TRANSACTION 'p2';");
insert('after the prepare');
wait_until('delivered past the prepared ones', sub { created()->{'after the prepare'} });
is(cursor_holes($node), '2', 'the prepared changes are holes');
sql("COMMIT PREPARED 'p1';");
wait_until('a committed prepared change is delivered', sub { created()->{prepared} });
wait_drained($node, 'nothing in flight at the restart');
$node->restart;
insert('after the restart');
wait_until('delivered after the restart', sub { created()->{'after the restart'} });
sql("COMMIT PREPARED 'p2';");
wait_until('a change prepared before the restart is delivered', sub { created()->{'prepared across a restart'} });
wait_until('no hole is left after the prepared ones', sub { cursor_holes($node) eq '0' });

# 5. Objects a superuser may alter: a sequence that caches or skips numbers
# breaks the holes' reasoning, an unlogged queue is lost in a crash.  The
# worker stops delivering and says why; put right, it goes on.
sql('ALTER SEQUENCE taskevents.outbox_seq CACHE 20');
$node->poll_query_until('postgres', "SELECT worker_state = 'halted' FROM taskevents.status")
  or fail('a caching sequence halts delivery');
like(sql('SELECT last_error FROM taskevents.status'), qr/outbox_seq.*CACHE 1/, 'and the status says why');
insert('while halted');
sql('ALTER SEQUENCE taskevents.outbox_seq CACHE 1');
wait_until('delivery goes on once put right', sub { created()->{'while halted'} });
sql('ALTER TABLE taskevents.queue_2 SET UNLOGGED');
$node->poll_query_until('postgres', "SELECT worker_state = 'halted' FROM taskevents.status")
  or fail('an unlogged queue table halts delivery');
like(sql('SELECT last_error FROM taskevents.status'), qr/queue_2.*SET LOGGED/, 'and the status says why');
sql('ALTER TABLE taskevents.queue_2 SET LOGGED');
insert('after set logged');
wait_until('delivery goes on once logged again', sub { created()->{'after set logged'} });

my %n = %{ created() };
is_deeply([ grep { $n{$_} > 1 } sort keys %n ], [], 'no change was published twice');

$holder->close;
$other_db->close;
$elsewhere->close;
$dumper->close;
$node->stop;
done_testing();
