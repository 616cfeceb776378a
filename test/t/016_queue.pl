# The queue (src/queue.c): append-only tables emptied with TRUNCATE once
# read, a cursor with holes for changes not yet committed; a transaction
# holding the xmin horizon leaves no dead rows behind.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Utils;
use Test::More;
use TaskEventsTest;

my $dapr = start_sidecar();
my $node = new_node('queue', port => $dapr->port);
$node->safe_psql('postgres', tasks_ddl() . 'CREATE EXTENSION taskevents;');

sub titles
{
	return [ map { $_->{event}{data}{title} } grep { $_->{event}{type} eq 'task.created' } @{ delivered_events($dapr) } ];
}

sub insert
{
	my ($title) = @_;
	$node->safe_psql('postgres', "INSERT INTO tasks (user_id, title) VALUES (gen_random_uuid(), '$title')");
}

# 1. A hole: a change numbered before others, committed after them.
my $slow = session($node);
$slow->query("BEGIN; INSERT INTO tasks (user_id, title) VALUES (gen_random_uuid(), 'late commit');");
insert('early commit');
wait_until('the later number is delivered first', sub { grep { $_ eq 'early commit' } @{ titles() } });
like($node->safe_psql('postgres', 'SELECT array_length(hole_lo, 1) FROM taskevents.tick ORDER BY id DESC LIMIT 1'),
	qr/^[1-9]/, 'the open change is a hole in the cursor');
$slow->query('COMMIT;');
wait_until('the hole is delivered once committed', sub { grep { $_ eq 'late commit' } @{ titles() } });
$slow->query("BEGIN; INSERT INTO tasks (user_id, title) VALUES (gen_random_uuid(), 'rolled back'); ROLLBACK;");
insert('after a rollback');
wait_drained($node, 'nothing waits');
wait_until('the rolled back hole closes', sub {
	$node->safe_psql('postgres', 'SELECT cardinality(hole_lo) FROM taskevents.tick ORDER BY id DESC LIMIT 1') eq '0' });
ok(!grep({ $_ eq 'rolled back' } @{ titles() }), 'a rolled back change is never sent');

# 2. A REPEATABLE READ transaction holds the xmin horizon while 2,000
# changes are delivered: delivery leaves no dead row.
my $reader = session($node);
my $seen = $node->safe_psql('postgres', 'SELECT count(*) FROM taskevents.queue_0');
$reader->query('BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT count(*) FROM pg_class;');
$node->safe_psql('postgres',
	"INSERT INTO tasks (user_id, title) SELECT gen_random_uuid(), 'pinned ' || i FROM generate_series(1, 2000) i");
wait_drained($node, 'delivered under a pinned horizon', 60);
$node->safe_psql('postgres', 'SELECT pg_stat_force_next_flush()') if $node->safe_psql('postgres',
	"SELECT count(*) FROM pg_proc WHERE proname = 'pg_stat_force_next_flush'") eq '1';
sleep 2;    # the worker reports its statistics at most every second
is($node->safe_psql('postgres', q{
	SELECT coalesce(sum(n_dead_tup), 0) FROM pg_stat_user_tables
	 WHERE schemaname = 'taskevents' AND relname IN ('queue_0', 'queue_1', 'queue_2', 'outbox')}),
	'0', 'no dead rows in the queue after delivering under a pinned horizon');

# 3. Once a table's run of numbers is over and all of it is read, it is
# emptied with TRUNCATE, but not while a snapshot that could still see its
# changes unread lasts (TRUNCATE is not MVCC-safe; 018 shows a dump).
my $before = $node->safe_psql('postgres', "SELECT relfilenode FROM pg_class WHERE oid = 'taskevents.queue_0'::regclass");
cmp_ok($node->safe_psql('postgres', 'SELECT count(*) FROM taskevents.queue_0'), '>', 2000, 'the first table holds the delivered changes');
$node->safe_psql('postgres', "SELECT setval('taskevents.outbox_seq', 2 * 32768)");
insert('in the third run');
wait_until('the third run delivered', sub { grep { $_ eq 'in the third run' } @{ titles() } });
insert('later in the third run');
wait_until('later in the third run delivered', sub { grep { $_ eq 'later in the third run' } @{ titles() } });
is($reader->query('SELECT count(*) FROM taskevents.queue_0;'), $seen, 'the old snapshot still sees the first table as it was');
$reader->query('COMMIT;');
wait_until('the first table is emptied once the old snapshot is gone', sub {
	$node->safe_psql('postgres', 'SELECT count(*) FROM taskevents.queue_0') eq '0' });
isnt($node->safe_psql('postgres', "SELECT relfilenode FROM pg_class WHERE oid = 'taskevents.queue_0'::regclass"),
	$before, '... by TRUNCATE');
is($node->safe_psql('postgres', 'SELECT count(*) FROM taskevents.queue_2'), '2', 'the current table keeps its changes');

# 4. A change numbered in the first table's next run goes into the emptied
# table.  A session that holds a transaction id but no snapshot (idle in a
# READ COMMITTED transaction) does not keep the third table from emptying:
# its next statement takes a new snapshot.
my $xid_holder = session($node);
$xid_holder->query('BEGIN; SELECT pg_current_xact_id();');
$node->safe_psql('postgres', "SELECT setval('taskevents.outbox_seq', 3 * 32768)");
insert('back in the first table');
wait_until('delivered from the reused table', sub { grep { $_ eq 'back in the first table' } @{ titles() } });
is($node->safe_psql('postgres', "SELECT string_agg(title, ',') FROM taskevents.queue_0"), 'back in the first table',
	'the first table is written again');
insert('again in the first table');
wait_until('the third table is emptied while a transaction id is held', sub {
	$node->safe_psql('postgres', 'SELECT count(*) FROM taskevents.queue_2') eq '0' });
$xid_holder->query('COMMIT;');
$xid_holder->close;

# 5. After a crash the worker resumes where it recorded: everything is
# delivered (some events twice, with the same id), nothing is stuck.
$dapr->mode(mode => 'slow', ms => 20);
$node->safe_psql('postgres',
	"INSERT INTO tasks (user_id, title) SELECT gen_random_uuid(), 'crash ' || i FROM generate_series(1, 300) i");
wait_until('delivering', sub { grep { /^crash/ } @{ titles() } });
$node->stop('immediate');
$dapr->mode(mode => 'ok');
$node->start;
wait_drained($node, 'delivered after the crash', 60);
my %crash = map { $_ => 1 } grep { /^crash/ } @{ titles() };
is(scalar keys %crash, 300, 'every change of the crash delivered');
insert('after the crash');
wait_until('new changes flow after the crash', sub { grep { $_ eq 'after the crash' } @{ titles() } });

$slow->close;
$reader->close;
$node->stop;
done_testing();
