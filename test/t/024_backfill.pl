# Backfill (taskevents.backfill()): the current state of every task, through
# the queue, while writers write the same tasks.  A consumer that applies
# every event from the backfill's first one, in each task's order, ends with
# exactly the table, across a crash in the middle; a restart in the middle
# resumes; cancel stops it; refusals are clear.  The consumer's rebuild is
# SQL over the events the sidecar accepted (load_events, rebuild_diff).
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use IPC::Run;
use PostgreSQL::Test::Utils;
use Test::More;
use TaskEventsTest;

my $TASKS = 100000;
my $dapr = start_sidecar();
my $node = new_node('backfill', port => $dapr->port, conf => "max_connections = 40\ntaskevents.bulk = on\n");
$node->safe_psql('postgres', tasks_ddl() . te_id_ddl() . q{
	CREATE EXTENSION taskevents;
	ALTER SYSTEM SET taskevents.enabled = off; SELECT pg_reload_conf();});
$node->safe_psql('postgres', "INSERT INTO tasks (id, user_id, title, due_date)
	SELECT te_id(i), gen_random_uuid(), 'task ' || i, CASE WHEN i % 3 = 0 THEN now() + i * interval '1 minute' END
	  FROM generate_series(1, $TASKS) i");
# The consumer starts late: what was captured before the backfill is gone.
$node->safe_psql('postgres', 'TRUNCATE taskevents.queue_0, taskevents.queue_1, taskevents.queue_2');
set_delivery($node, 'on');

sub sql { return $node->safe_psql('postgres', $_[0]) }

# Eight writers editing, completing, deleting and bringing back the tasks
# for $secs seconds, in the background.
sub writers
{
	my ($secs) = @_;
	my $out = '';
	my $h = IPC::Run::start([ 'pgbench', '-n', '-c', '8', '-j', '2', '-T', $secs, '-D', "tasks=$TASKS",
		'-f', "$TaskEventsTest::TOP/test/bench/backfill_writer.sql", '-d', $node->connstr('postgres') ],
		'>', \$out, '2>&1');
	return { h => $h, out => \$out };
}

# The sidecar's events, loaded as the table received.
sub received
{
	wait_drained($node, $_[0], 120);
	load_events($node, 'received', 'fakedapr', $dapr->record_file);
}

# 1. Refusals.
my ($ret, $out, $err) = $node->psql('postgres', q{SELECT taskevents.backfill('pg_class')});
like($err, qr/pg_class is not attached/, 'a table that is not attached is refused');
($ret, $out, $err) = $node->psql('postgres', q{SELECT taskevents.backfill(filter => 'no_such_column > 0')});
like($err, qr/no_such_column/, 'a filter that does not work is refused when the backfill is asked for');

# 2. The backfill while eight writers write the same tasks, and a crash in
# the middle (writers in flight), then writers again while it resumes.
my $bf = sql('SELECT taskevents.backfill(rows_per_second => 20000)');
my $w = writers(60);
($ret, $out, $err) = $node->psql('postgres', 'SELECT taskevents.backfill()');
like($err, qr/backfill $bf of (public\.)?tasks is running/, 'a second backfill while one runs is refused, naming it');
wait_until('the backfill is a third of the way', sub { sql("SELECT rows_done FROM taskevents.backfill WHERE id = $bf") > $TASKS / 3 }, 60);
$node->stop('immediate');
$w->{h}->finish;    # its clients lost their connections
$node->start;
my $at_crash = sql("SELECT rows_done FROM taskevents.backfill WHERE id = $bf");
cmp_ok($at_crash, '<', $TASKS * 0.9, "crashed in the middle of the backfill ($at_crash rows done)");
$w = writers(4);
$w->{h}->finish or diag(${ $w->{out} });
like(${ $w->{out} }, qr/number of failed transactions: 0/, 'the writers wrote again while it resumed, none failed');
wait_until('the backfill is done', sub { sql("SELECT state FROM taskevents.backfill_progress WHERE id = $bf") eq 'done' }, 120);
received('everything delivered');
my $done = sql("SELECT rows_done FROM taskevents.backfill WHERE id = $bf");
cmp_ok($done, '>', $TASKS / 2, "it read the table ($done rows)");
my ($diff, $examples) = rebuild_diff($node, 'received', "backfill-$bf");
is($diff, sql('SELECT count(*) FROM tasks') . ' tasks: 0 missing, 0 stale, 0 resurrected or extra',
	'a consumer applying every event from the backfill\'s first ends with exactly the table') or diag($examples);
is(sql(qq{SELECT count(DISTINCT event->>'id') || ' ' || count(DISTINCT event->'data'->>'task_id') FROM received
	WHERE event->>'type' = 'task.snapshot' AND event->>'traceid' = 'backfill-$bf'}), "$done $done",
	'each row read once across the crash: as many snapshots as rows done, each of another task');
is(sql(qq{SELECT count(DISTINCT s.event->>'id') FROM received s JOIN received y ON y.event->>'subject' = s.event->>'subject'
	WHERE s.event->>'type' = 'task.snapshot' AND y.event->>'type' = 'sync.task' AND y.event->'data'->>'action' = 'snapshot'
	  AND y.event->>'traceid' = 'backfill-$bf' AND s.event->>'traceid' = 'backfill-$bf'}), $done,
	'each snapshot has its sync.task');
# which tasks still had their due date when their chunk was read depends on
# the writers (they delete tasks and bring them back without one): each
# reminder is of a snapshotted task created with a due date (every third),
# and none twice
my ($reminded, $wrong) = split /\|/, sql(qq{
	WITH r AS (SELECT event->>'subject' AS task, count(DISTINCT event->>'id') AS n FROM received
	            WHERE event->>'type' = 'reminder.scheduled' AND event->>'traceid' = 'backfill-$bf' GROUP BY 1)
	SELECT count(*), count(*) FILTER (WHERE n > 1 OR ('x' || substr(task, 25))::bit(48)::bigint % 3 <> 0
	                                   OR NOT EXISTS (SELECT FROM received s WHERE s.event->>'subject' = r.task
	                                                    AND s.event->>'type' = 'task.snapshot' AND s.event->>'traceid' = 'backfill-$bf'))
	  FROM r});
ok($reminded > $TASKS / 10 && $wrong == 0, "tasks with a due date also get reminder.scheduled, once each ($reminded, $wrong wrong)");

my $last = sql('SELECT max(id::text) FROM tasks');
sql("DELETE FROM received WHERE event->>'subject' = '$last'");
is((rebuild_diff($node, 'received', "backfill-$bf"))[0], sql('SELECT count(*) FROM tasks') . ' tasks: 1 missing, 0 stale, 0 resurrected or extra',
	'(the check itself: without one task\'s events, that task is missing)');

# 3. A restart in the middle: the backfill resumes where it stopped.
my $bf2 = sql("SELECT taskevents.backfill('tasks', 'completed', rows_per_second => 2000)");
my $want = sql('SELECT count(*) FROM tasks WHERE completed');
wait_until('the throttled backfill is under way', sub { sql("SELECT rows_done FROM taskevents.backfill WHERE id = $bf2") > 0 });
$node->restart;
wait_until('it resumes and ends', sub { sql("SELECT state FROM taskevents.backfill WHERE id = $bf2") eq 'done' }, 60);
is(sql("SELECT rows_done FROM taskevents.backfill WHERE id = $bf2"), $want, 'every matching row once, across the restart');
received('the second backfill delivered');
is(sql(qq{SELECT count(DISTINCT event->'data'->>'task_id') FROM received
	WHERE event->>'type' = 'task.snapshot' AND event->>'traceid' = 'backfill-$bf2' AND (event->'data'->>'completed')::boolean}),
	$want, "each completed task published ($want)");

# 4. Cancel.
my $bf3 = sql("SELECT taskevents.backfill(rows_per_second => 100)");
wait_until('the slow backfill is under way', sub { sql("SELECT rows_done FROM taskevents.backfill WHERE id = $bf3") > 0 });
is(sql("SELECT taskevents.backfill_cancel($bf3)"), '1', 'cancel stops it');
$done = sql("SELECT rows_done FROM taskevents.backfill WHERE id = $bf3");
sql("INSERT INTO tasks (user_id, title) VALUES (gen_random_uuid(), 'after the cancel')");
wait_drained($node, 'a change after the cancel delivered');
is(sql("SELECT state || ' ' || rows_done FROM taskevents.backfill WHERE id = $bf3"), "cancelled $done", 'and nothing more is read');

$node->stop;
done_testing();
