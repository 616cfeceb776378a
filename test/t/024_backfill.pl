# Backfill (taskevents.backfill()): the current state of every task, through
# the queue, while writers write the same tasks.  A consumer that applies
# every event from the backfill's first one, in each task's order, ends with
# exactly the table; a restart in the middle resumes; cancel stops it;
# refusals are clear.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use IPC::Run;
use PostgreSQL::Test::Utils;
use Test::More;
use TaskEventsTest;

my $TASKS = 10000;
my $dapr = start_sidecar();
my $node = new_node('backfill', port => $dapr->port, conf => "max_connections = 40\n");
$node->safe_psql('postgres', tasks_ddl() . q{
	CREATE FUNCTION te_id(i int) RETURNS uuid LANGUAGE sql IMMUTABLE
	    AS $$ SELECT ('00000000-0000-4000-8000-' || lpad(to_hex(i), 12, '0'))::uuid $$;
	CREATE EXTENSION taskevents;
	ALTER SYSTEM SET taskevents.enabled = off; SELECT pg_reload_conf();});
$node->safe_psql('postgres', "INSERT INTO tasks (id, user_id, title, due_date)
	SELECT te_id(i), gen_random_uuid(), 'task ' || i, CASE WHEN i % 3 = 0 THEN now() + i * interval '1 minute' END
	  FROM generate_series(1, $TASKS) i");
# The consumer starts late: what was captured before the backfill is gone.
$node->safe_psql('postgres', 'TRUNCATE taskevents.queue_0, taskevents.queue_1, taskevents.queue_2');
set_delivery($node, 'on');

sub sql { return $node->safe_psql('postgres', $_[0]) }

# A consumer from the first event of the backfill on: task-events applied in
# arrival order (each task's events come in its order) as upserts and deletes.
sub rebuild
{
	my ($events, $from_type) = @_;
	my %state;
	my $started = 0;
	for my $e (map { $_->{event} } @$events)
	{
		$started ||= $e->{type} eq $from_type;
		next unless $started && $e->{type} =~ /^task\./;
		my $d = $e->{data};
		if ($e->{type} eq 'task.deleted') { delete $state{ $d->{task_id} } }
		else { $state{ $d->{task_id} } = join '|', $d->{title}, ($d->{completed} ? 't' : 'f') }
	}
	return join "\n", map { "$_|$state{$_}" } sort keys %state;
}

# 1. Refusals.
my ($ret, $out, $err) = $node->psql('postgres', q{SELECT taskevents.backfill('pg_class')});
like($err, qr/pg_class is not attached/, 'a table that is not attached is refused');
($ret, $out, $err) = $node->psql('postgres', q{SELECT taskevents.backfill(filter => 'no_such_column > 0')});
like($err, qr/no_such_column/, 'a filter that does not work is refused when the backfill is asked for');

# 2. The backfill while eight writers write the same tasks.
my $bf = sql('SELECT taskevents.backfill()');
my $writers = IPC::Run::start([ 'pgbench', '-n', '-c', '8', '-j', '2', '-T', '8', '-D', "tasks=$TASKS",
	'-f', "$TaskEventsTest::TOP/test/bench/backfill_writer.sql", '-d', $node->connstr('postgres') ],
	'>', \my $pgb_out, '2>&1');
($ret, $out, $err) = $node->psql('postgres', 'SELECT taskevents.backfill()');
like($err, qr/backfill $bf of (public\.)?tasks is running/, 'a second backfill while one runs is refused, naming it');
$writers->finish or diag($pgb_out);
like($pgb_out, qr/number of failed transactions: 0/, 'the writers wrote the whole time, none failed');
wait_until('the backfill is done', sub { sql("SELECT state FROM taskevents.backfill_progress WHERE id = $bf") eq 'done' }, 120);
wait_drained($node, 'everything delivered', 120);
cmp_ok(sql("SELECT rows_done FROM taskevents.backfill WHERE id = $bf"), '>', $TASKS / 2, 'it read the table');
my $events = delivered_events($dapr);
is(rebuild($events, 'task.snapshot'), sql(q{SELECT string_agg(id || '|' || title || '|' || CASE WHEN completed THEN 't' ELSE 'f' END, E'\n' ORDER BY id::text) FROM tasks}),
	'a consumer applying every event from the backfill\'s first ends with exactly the table');
my @snap = grep { $_->{event}{type} eq 'task.snapshot' } @$events;
is($snap[0]{event}{traceid}, "backfill-$bf", 'snapshots carry the backfill as their trace id');
is(scalar(grep { $_->{event}{type} eq 'sync.task' && $_->{event}{data}{action} eq 'snapshot' } @$events),
	scalar @snap, 'each snapshot has its sync.task');
my %snapped = map { $_->{event}{data}{task_id} => 1 } @snap;
my @reminders = grep { $_->{event}{type} eq 'reminder.scheduled' && $_->{event}{traceid} eq "backfill-$bf" } @$events;
# which tasks still had their due date when their chunk was read depends on
# the writers (they delete tasks and bring them back without one): each
# reminder is of a snapshotted task created with a due date (every third),
# and none twice
my %reminded;
$reminded{ $_->{event}{data}{task_id} }++ for @reminders;
ok(@reminders > 0 && !grep({ !$snapped{$_} || hex(substr($_, 24)) % 3 || $reminded{$_} > 1 } keys %reminded),
	'tasks with a due date also get reminder.scheduled, once each (' . scalar(@reminders) . ')');

# 3. A restart in the middle: the backfill resumes where it stopped.
my $bf2 = sql("SELECT taskevents.backfill('tasks', 'completed', rows_per_second => 2000)");
my $want = sql('SELECT count(*) FROM tasks WHERE completed');
wait_until('the throttled backfill is under way', sub { sql("SELECT rows_done FROM taskevents.backfill WHERE id = $bf2") > 0 });
$node->restart;
wait_until('it resumes and ends', sub { sql("SELECT state FROM taskevents.backfill WHERE id = $bf2") eq 'done' }, 60);
is(sql("SELECT rows_done FROM taskevents.backfill WHERE id = $bf2"), $want, 'every matching row once, across the restart');
wait_drained($node, 'the second backfill delivered');
my %got = map { $_->{event}{data}{task_id} => 1 }
  grep { $_->{event}{type} eq 'task.snapshot' && $_->{event}{traceid} eq "backfill-$bf2" } @{ delivered_events($dapr) };
is(scalar keys %got, $want, 'each completed task published');

# 4. Cancel.
my $bf3 = sql("SELECT taskevents.backfill(rows_per_second => 100)");
wait_until('the slow backfill is under way', sub { sql("SELECT rows_done FROM taskevents.backfill WHERE id = $bf3") > 0 });
is(sql("SELECT taskevents.backfill_cancel($bf3)"), '1', 'cancel stops it');
my $done = sql("SELECT rows_done FROM taskevents.backfill WHERE id = $bf3");
sql("INSERT INTO tasks (user_id, title) VALUES (gen_random_uuid(), 'after the cancel')");
wait_drained($node, 'a change after the cancel delivered');
is(sql("SELECT state || ' ' || rows_done FROM taskevents.backfill WHERE id = $bf3"), "cancelled $done", 'and nothing more is read');

$node->stop;
done_testing();
