# A backfill (taskevents.backfill()) through a real daprd and Apache Kafka
# while eight writers edit, complete, delete and bring back the same tasks:
# a consumer that reads task-events from the backfill's first record on,
# each partition in offset order, and applies each task's last event (a
# snapshot or change as an upsert, task.deleted as a delete) ends with
# exactly the table.  The rebuild is SQL over the consumer's records
# (TaskEventsTest's load_events and rebuild_diff, as in test/t/024_backfill.pl).
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin, "$FindBin::RealBin/../../t";
use IPC::Run;
use PostgreSQL::Test::Utils;
use Test::More;
use TaskEventsTest;
use RealPipeline;

my $TASKS = 20000;
my $kafka = start_kafka();
my $consumer = start_consumer($kafka);
my $daprd = start_daprd(kafka => $kafka);
my $node = real_node('real_backfill', $daprd, conf => "max_connections = 40\n");
sub sql { return $node->safe_psql('postgres', $_[0]) }
sql(tasks_ddl() . te_id_ddl() . 'CREATE EXTENSION taskevents;');

# The tasks exist before the consumer cares: their own events are in Kafka
# too, before the backfill's.
sql("INSERT INTO tasks (id, user_id, title, due_date)
	SELECT te_id(i), gen_random_uuid(), 'task ' || i, CASE WHEN i % 3 = 0 THEN now() + i * interval '1 minute' END
	  FROM generate_series(1, $TASKS) i");
wait_drained($node, 'the tasks delivered', 120);

my $bf = sql('SELECT taskevents.backfill(rows_per_second => 5000)');
my $pgb_out = '';
my $writers = IPC::Run::start([ 'pgbench', '-n', '-c', '8', '-j', '2', '-T', '6', '-D', "tasks=$TASKS",
	'-f', "$RealPipeline::TOP/test/bench/backfill_writer.sql", '-d', $node->connstr('postgres') ],
	'>', \$pgb_out, '2>&1');
wait_until('the backfill is under way', sub { sql("SELECT rows_done FROM taskevents.backfill WHERE id = $bf") > 0 });
$writers->finish or diag($pgb_out);
like($pgb_out, qr/number of failed transactions: 0/, 'eight writers wrote during the backfill, none failed');
wait_until('the backfill is done', sub { sql("SELECT state FROM taskevents.backfill WHERE id = $bf") eq 'done' }, 120);
wait_drained($node, 'everything delivered', 180);
is(sql('SELECT dead FROM taskevents.status'), '0', 'no dead letters');
my $published = sql('SELECT published FROM taskevents.status');
my $file = $consumer->file;
wait_until("the consumer read every record ($published)", sub {
	`wc -l < '$file'` >= $published }, 120);

load_events($node, 'received', 'kafka', $file);
my $done = sql("SELECT rows_done FROM taskevents.backfill WHERE id = $bf");
is(sql(qq{SELECT count(DISTINCT event->>'id') || ' ' || count(DISTINCT event->'data'->>'task_id') FROM received
	WHERE event->>'type' = 'task.snapshot' AND event->>'traceid' = 'backfill-$bf'}), "$done $done",
	"every row the backfill read is one task.snapshot in Kafka ($done)");
my ($diff, $examples) = rebuild_diff($node, 'received', "backfill-$bf");
is($diff, sql('SELECT count(*) FROM tasks') . ' tasks: 0 missing, 0 stale, 0 resurrected or extra',
	'a consumer reading task-events from the backfill\'s first record, in partition order, ends with exactly the table')
  or diag($examples);
is(sql(q{SELECT count(*) FROM (SELECT event->>'subject' FROM received WHERE topic = 'task-events'
	GROUP BY 1 HAVING count(DISTINCT part) > 1) m}), '0', 'each task\'s records on one partition');

$node->stop;
done_testing();
