# Replay (taskevents.replay()): the changes taskevents.retention keeps are
# published again, by time and by number, while writers write the same
# tasks.  Each replayed event carries its original id and CloudEvent; each
# task's events go out in queue order; consumers that apply the stream
# (whole, deduplicated, or from their state before the range plus the
# replay) end with the table.  A range no longer kept is a clear error; an
# application role cannot replay, nor can anyone while a backfill runs; a
# change and its copy dead in one round make one dead letter.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use IPC::Run;
use JSON::PP;
use PostgreSQL::Test::Utils;
use Test::More;
use TaskEventsTest;

my $TASKS = 200;
my $json = JSON::PP->new->canonical;
my $dapr = start_sidecar();
my $node = new_node('replay', port => $dapr->port, conf => "taskevents.retention = '1h'\n");
$node->safe_psql('postgres', tasks_ddl() . te_id_ddl() . q{
	CREATE EXTENSION taskevents;
	CREATE ROLE app LOGIN;
	GRANT SELECT, INSERT, UPDATE, DELETE ON tasks TO app;});

sub sql { return $node->safe_psql('postgres', $_[0]) }

# The state a consumer builds from task-events applied in the given order:
# task id => title|completed, deleted tasks gone.
sub apply_events
{
	my ($state, @events) = @_;
	for my $e (@events)
	{
		next unless $e->{type} =~ /^task\./;
		my $d = $e->{data};
		if ($e->{type} eq 'task.deleted') { delete $state->{ $d->{task_id} } }
		else { $state->{ $d->{task_id} } = join '|', $d->{title}, ($d->{completed} ? 't' : 'f') }
	}
	return $state;
}

sub state_text { my ($s) = @_; return join "\n", map { "$_|$s->{$_}" } sort keys %$s }

my $table_sql = q{SELECT string_agg(id || '|' || title || '|' || CASE WHEN completed THEN 't' ELSE 'f' END, E'\n' ORDER BY id::text) FROM tasks};

# Every queued event, as the worker builds it: [task id, event id], in number order.
my $queued_events_sql = q{
	SELECT q.task_id, e.event_id FROM taskevents.queue q
	       CROSS JOIN LATERAL taskevents._cloudevents(ROW(q.*)::taskevents.outbox, 0) WITH ORDINALITY e
	 ORDER BY q.seq, e.ordinality};

# 1. Refusals.
my ($ret, $out, $err) = $node->psql('postgres', 'SELECT taskevents.replay()');
like($err, qr/give either since or from_seq/, 'neither since nor from_seq: refused');
($ret, $out, $err) = $node->psql('postgres', 'SELECT taskevents.replay(now(), 1)');
like($err, qr/give either since or from_seq/, 'both: refused');
($ret, $out, $err) = $node->psql('postgres',
	'BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT taskevents.replay(from_seq => 1); COMMIT;');
like($err, qr/must be READ COMMITTED, not REPEATABLE READ/, 'a REPEATABLE READ transaction is refused');
($ret, $out, $err) = $node->psql('postgres', 'SELECT taskevents.replay(from_seq => 1)',
	extra_params => [ '-U', 'app' ]);
like($err, qr/permission denied for schema taskevents/, 'an application role cannot replay');

# 2. History, delivered: the tasks, then (after t_mid) edits, completions and deletions.
sql("INSERT INTO tasks (id, user_id, title, due_date)
	SELECT te_id(i), gen_random_uuid(), 'task ' || i, CASE WHEN i % 3 = 0 THEN now() + i * interval '1 minute' END
	  FROM generate_series(1, $TASKS) i");
wait_drained($node, 'the tasks delivered');
my $t_mid = sql(q{SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')});
sql("UPDATE tasks SET title = 'edited ' || title WHERE id IN (SELECT te_id(i) FROM generate_series(1, $TASKS, 2) i)");
sql("UPDATE tasks SET completed = true WHERE id IN (SELECT te_id(i) FROM generate_series(1, $TASKS, 5) i)");
sql("DELETE FROM tasks WHERE id IN (SELECT te_id(i) FROM generate_series(1, $TASKS, 7) i)");
wait_drained($node, 'the edits delivered');
my $from_seq = sql("SELECT min(seq) FROM taskevents.queue WHERE title LIKE 'edited%'");
my $first_round = scalar @{ delivered_events($dapr) };
cmp_ok($first_round, '>', 2 * $TASKS, "history delivered ($first_round events), kept for taskevents.retention");

# 3. Replays by time and by number while four writers edit, complete,
# delete and bring back the same tasks.
my $rows_before = sql('SELECT count(*) FROM taskevents.queue');
my $writers = IPC::Run::start([ 'pgbench', '-n', '-c', '4', '-j', '2', '-T', '8', '-R', '400', '-D', "tasks=$TASKS",
	'-f', "$TaskEventsTest::TOP/test/bench/backfill_writer.sql", $node->connstr('postgres') ],
	'>', \my $pgb_out, '2>&1');
wait_until('the writers write', sub { sql('SELECT count(*) FROM taskevents.queue') > $rows_before + 200 });
my $n_time = sql("SELECT taskevents.replay(since => '$t_mid')");
wait_until('the writers write more', sub { sql('SELECT count(*) FROM taskevents.queue') > $rows_before + 600 });
my $n_seq = sql("SELECT taskevents.replay(from_seq => $from_seq)");
$writers->finish or diag($pgb_out);
like($pgb_out, qr/number of failed transactions: 0/, 'the writers wrote the whole time, none failed');
wait_drained($node, 'everything delivered', 60);

# What each replay queued: its copies, numbered one after another (no
# writer's change between them), are the changes of its range committed
# before it, in number order, with their ids, times and contents.
my @replays = ([ 'by time', $n_time, "changed_at >= '$t_mid'" ], [ 'by number', $n_seq, "seq >= $from_seq" ]);
my $copy_after = 0;
for my $r (@replays)
{
	my ($what, $n, $range) = @$r;
	my ($lo, $hi) = split /\|/, sql("SELECT min(seq), max(seq) FROM (SELECT seq FROM taskevents.queue
		WHERE events & 65536 <> 0 AND seq > $copy_after ORDER BY seq LIMIT $n) c");
	cmp_ok($n, '>', $TASKS, "replay $what queued $n changes");
	is($hi - $lo + 1, $n, "replay $what: its copies are numbered one after another");
	my $cols = 'event_id, events & ~65536, changed_at, task_id, user_id, title, completed, due_date, changes, trace_id, traceparent';
	my $copies = sql("SELECT $cols FROM taskevents.queue WHERE seq BETWEEN $lo AND $hi ORDER BY seq");
	my $originals = sql("SELECT $cols FROM taskevents.queue WHERE $range AND seq < $lo AND events & 65536 = 0 ORDER BY seq");
	is($copies, $originals, "replay $what: every kept change of the range committed before it, in order, as it was");
	is(sql("SELECT count(*) FROM taskevents.queue WHERE seq BETWEEN $lo AND $hi AND events & 65536 = 0"), '0',
		"replay $what: no writer's change among its copies");
	$copy_after = $hi;
}

# On the wire: each event as often as it is queued (original and copies),
# the same CloudEvent every time; each task's events in queue order.
my $events = delivered_events($dapr);
my (%seen, %body_differs, %wire);
for my $e (map { $_->{event} } @$events)
{
	my $body = $json->encode($e);
	$body_differs{ $e->{id} } = 1 if exists $seen{ $e->{id} } && $seen{ $e->{id} }{body} ne $body;
	$seen{ $e->{id} }{body} //= $body;
	$seen{ $e->{id} }{n}++;
	push @{ $wire{ $e->{subject} } }, $e->{id};
}
my %queued;
my $want_total = 0;
for (split /\n/, sql($queued_events_sql))
{
	my ($task, $id) = split /\|/;
	push @{ $queued{$task} }, $id;
	$want_total++;
}
my %want_n;
$want_n{$_}++ for map { @$_ } values %queued;
my @wrong_n = grep { ($seen{$_}{n} // 0) != $want_n{$_} } keys %want_n;
is(scalar @wrong_n, 0, "every event sent as often as it is queued ($want_total sends)")
  or diag("e.g. $wrong_n[0]: sent " . ($seen{ $wrong_n[0] }{n} // 0) . ", queued $want_n{ $wrong_n[0] }");
is(scalar @$events, $want_total, 'and nothing else');
my @again = grep { $seen{$_}{n} > 1 } keys %seen;
cmp_ok(scalar @again, '>', 2 * $TASKS, scalar(@again) . ' events sent again by the replays');
is(scalar keys %body_differs, 0, 'a replayed event is the original CloudEvent: same id, time, trace and data');
my @out_of_order = grep { join(' ', @{ $wire{$_} // [] }) ne join(' ', @{ $queued{$_} }) } keys %queued;
is(scalar @out_of_order, 0, 'each task\'s events in queue order: originals, copies and live changes interleaved as queued')
  or diag("e.g. task $out_of_order[0]");

# Consumers.
my $table = sql($table_sql);
my @stream = map { $_->{event} } @$events;
is(state_text(apply_events({}, @stream)), $table, 'a consumer applying the whole stream ends with the table');
my %once;
is(state_text(apply_events({}, grep { !$once{ $_->{id} }++ } @stream)), $table,
	'so does one that deduplicates by id');
my %sent;
my ($first_copy) = grep { $sent{ $stream[$_]{id} }++ } 0 .. $#stream;
my $base = apply_events({}, grep { $_->{time} lt $t_mid } @stream[ 0 .. $first_copy - 1 ]);
is(state_text(apply_events($base, @stream[ $first_copy .. $#stream ])), $table,
	'so does one that lost what came after t_mid: its state before t_mid, then everything from the replay on');

# A replay while a backfill runs is refused (a chunk's snapshots, numbered
# below the copies, could commit after them).
my $bf = sql('SELECT taskevents.backfill(rows_per_second => 10)');
($ret, $out, $err) = $node->psql('postgres', 'SELECT taskevents.replay(from_seq => 1)');
like($err, qr/taskevents.replay: backfill $bf of (public\.)?tasks is running.*HINT:  .*backfill_cancel\($bf\)/s,
	'a replay while a backfill runs is refused, naming it');
sql("SELECT taskevents.backfill_cancel($bf)");
wait_drained($node, 'the cancelled backfill\'s snapshots delivered');

# 4. A change and its copy, both dead in one round: one dead letter per event.
set_delivery($node, 'off');
my $P = sql(q{INSERT INTO tasks (id, user_id, title) VALUES (te_id(9001), gen_random_uuid(), 'refused') RETURNING id});
my $p_seq = sql("SELECT max(seq) FROM taskevents.queue WHERE task_id = '$P'");
is(sql("SELECT taskevents.replay(from_seq => $p_seq)"), '1', 'a change not yet delivered is replayed too');
$dapr->mode(mode => 'fail', status => 403, code => 'ERR_PUBSUB_FORBIDDEN');
set_delivery($node, 'on');
wait_drained($node, 'the refused change and its copy settled');
is(sql("SELECT count(*) || ' ' || count(DISTINCT event_id) FROM taskevents.dead_letter WHERE task_id = '$P'"), '2 2',
	'their two events are one dead letter each');
ok(!$node->log_contains(qr/cannot affect row a second time/), 'and the round was recorded');
$dapr->mode(mode => 'ok');

# 5. Out of retention: the runs of numbers before the current one end and
# are emptied; a replay that reaches back there is refused, naming the
# setting.
sql(q{ALTER SYSTEM SET taskevents.retention = '1s'; SELECT pg_reload_conf();
	SELECT setval('taskevents.outbox_seq', (SELECT last_value FROM taskevents.outbox_seq) + 2 * 32768)});
sleep 2;    # past the retention: the round of the next change finds the older tables ready
sql(q{INSERT INTO tasks (id, user_id, title) VALUES (te_id(9002), gen_random_uuid(), 'after the jump')});
my $kept = sql(q{SELECT (last_value / 32768) * 32768 FROM taskevents.outbox_seq});
wait_until('the older queue tables are emptied', sub { sql("SELECT count(*) FROM taskevents.queue WHERE seq < $kept") eq '0' }, 60);
($ret, $out, $err) = $node->psql('postgres', "SELECT taskevents.replay(from_seq => $from_seq)");
like($err, qr/ERROR:  taskevents.replay: changes numbered below $kept are no longer kept/,
	'a replay from a number no longer kept is refused, saying from where changes are kept');
like($err, qr/HINT:  Replay from $kept on, and raise taskevents.retention to keep more history./, 'the hint names taskevents.retention');
like($err, qr/DETAIL:  .*taskevents.retention \(1s\)/, 'the detail gives its value');
($ret, $out, $err) = $node->psql('postgres', "SELECT taskevents.replay(since => '$t_mid')");
like($err, qr/ERROR:  taskevents.replay: changes made before .* are no longer kept.*HINT:  .*raise taskevents.retention/s,
	'a replay from a time no longer kept is refused too');
my $newest = sql(q{SELECT changed_at FROM taskevents.queue WHERE task_id = te_id(9002)::text});
is(sql("SELECT taskevents.replay(since => '$newest')"), '1', 'from the oldest change kept on, a replay works');
is(sql("SELECT taskevents.replay(from_seq => $kept)"), '1', 'as from the first number kept');
wait_drained($node, 'the last replays delivered');

$node->stop;
done_testing();
