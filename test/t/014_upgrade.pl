# Versions and upgrades (SPEC §9): ALTER EXTENSION taskevents UPDATE from a
# populated 1.0 install keeps every queued event, retry state and dead
# letter, and delivery continues after it; so does the update of a
# populated 1.2 install to 1.3, whose kept history can then be replayed
# with its ids; pg_dump / pg_restore of a
# populated 1.1 database keeps the queue, the cursor, retry state and dead
# letters.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use JSON::PP;
use TaskEventsTest;

my $needs_update = 'not delivering: run ALTER EXTENSION taskevents UPDATE';
my $json = JSON::PP->new->canonical;

sub uuid { sprintf('00000000-0000-4000-8000-%012x', $_[0]) }

# Every event still to be sent, oldest change first and in each change's
# order: [task id, event id, canonical JSON] (the exact CloudEvents).
sub queued_events
{
	my ($node, $db) = @_;
	my $rows = $node->safe_psql($db, q{
		SELECT o.task_id, e.event_id, e.event
		  FROM taskevents.outbox o
		       LEFT JOIN taskevents.retry r ON r.seq = o.seq
		       CROSS JOIN LATERAL taskevents._cloudevents(o, coalesce(r.done, 0)) WITH ORDINALITY e
		 WHERE NOT e.delivered
		 ORDER BY o.seq, e.ordinality});
	return [ map { my @f = split /\|/, $_, 3; [ $f[0], $f[1], $json->encode(decode_json($f[2])) ] }
		  split /\n/, $rows ];
}

# The events the sidecar accepted, in arrival order, as [task id, event id, canonical JSON].
sub received
{
	my ($dapr) = @_;
	return [ map { [ $_->{event}{subject}, $_->{event}{id}, $json->encode($_->{event}) ] }
		  @{ delivered_events($dapr) } ];
}

# Events grouped per task, in order: { task id => [ "id json", ... ] }.
sub per_task
{
	my ($events) = @_;
	my %t;
	push @{ $t{ $_->[0] } }, "$_->[1] $_->[2]" for @$events;
	return \%t;
}

sub types_of
{
	my ($events, $task) = @_;
	return join ' ', map { decode_json($_->[2])->{type} } grep { $_->[0] eq $task } @$events;
}

sub state { $_[0]->safe_psql($_[1] // 'postgres', 'SELECT worker_state FROM taskevents.status') }

############################################################################
# A populated 1.0 install under the 1.3 library.
############################################################################
my $dapr = start_sidecar();
my $node = new_node('upgrade', port => $dapr->port);
$node->safe_psql('postgres', tasks_ddl() . q{
	CREATE ROLE monitor LOGIN IN ROLE pg_monitor;
	CREATE EXTENSION taskevents VERSION '1.0';});
is($node->safe_psql('postgres', q{SELECT extversion FROM pg_extension WHERE extname = 'taskevents'}), '1.0',
	'version 1.0 installed');
wait_until('the worker looked at the extension', sub { state($node) !~ /^(starting|stopped)$/ });
is(state($node), $needs_update, 'with 1.0\'s objects the status says to run ALTER EXTENSION UPDATE');
ok($node->log_contains(qr/taskevents: the extension's objects in database "postgres" are older than its library; changes are captured but not delivered/)
	  && $node->log_contains(qr/HINT:  Run ALTER EXTENSION taskevents UPDATE in that database\./),
	'and so does the log');

# The tasks.  D: its events were dead-lettered (its change left the queue).
# H: its first change is half delivered (task.created went out, sync.task
# failed three times and waits for a retry an hour from now), its two later
# changes wait behind it.  F: its first change failed twice and is due.
# A, B: plain queued changes.
my ($D, $H, $F, $A, $B) = map { uuid($_) } 0xd, 0x11, 0xf, 0xa, 0xb;
$node->safe_psql('postgres', qq{
	INSERT INTO tasks (id, user_id, title) VALUES ('$D', gen_random_uuid(), 'dead');
	INSERT INTO taskevents.dead_letter (event_id, seq, type, topic, task_id, body, attempts, last_status, last_error, created_at, failed_at)
	SELECT e.event_id, o.seq, e.type, e.topic, o.task_id, e.event::text, 20, 403,
	       'HTTP 403 ERR_PUBSUB_FORBIDDEN: topic ' || e.topic || ' is not allowed for app id app', o.changed_at, now()
	  FROM taskevents.outbox o CROSS JOIN LATERAL taskevents._cloudevents(o, 0) e;
	DELETE FROM taskevents.outbox;
	INSERT INTO tasks (id, user_id, title, due_date) VALUES ('$H', gen_random_uuid(), 'h0', '2030-01-01Z');
	INSERT INTO tasks (id, user_id, title) VALUES ('$F', gen_random_uuid(), 'f0');
	INSERT INTO tasks (id, user_id, title) VALUES ('$A', gen_random_uuid(), 'a0');
	INSERT INTO tasks (id, user_id, title, due_date) VALUES ('$B', gen_random_uuid(), 'b0', '2030-01-01Z');
	UPDATE tasks SET title = 'h1' WHERE id = '$H';
	UPDATE tasks SET title = 'a1' WHERE id = '$A';
	UPDATE tasks SET due_date = '2031-01-01Z' WHERE id = '$B';
	UPDATE tasks SET completed = true WHERE id = '$H';
	UPDATE tasks SET title = 'f1' WHERE id = '$F';
	DELETE FROM tasks WHERE id = '$B';
	INSERT INTO taskevents.retry (seq, task_id, done, attempts, next_attempt_at, last_status, last_error)
	SELECT min(seq), '$H', 1, 3, now() + interval '1 hour', 500,
	       'HTTP 500 ERR_PUBSUB_PUBLISH_MESSAGE: error when publishing to topic task-updates in pubsub pubsub-kafka: broker down'
	  FROM taskevents.outbox WHERE task_id = '$H';
	INSERT INTO taskevents.retry (seq, task_id, done, attempts, next_attempt_at, last_status, last_error)
	SELECT min(seq), '$F', 0, 2, now() - interval '1 minute', 0, 'Couldn''t connect to server'
	  FROM taskevents.outbox WHERE task_id = '$F';});
is($node->safe_psql('postgres', 'SELECT count(*) FROM taskevents.outbox'), '10',
	'the capture trigger queued 10 changes in 1.0\'s outbox');
is($node->safe_psql('postgres', 'SELECT queue_depth FROM taskevents.status'), '10', 'the status counts them');
my $want = queued_events($node, 'postgres');
is(scalar @$want, 22, '22 events to send (H\'s first change: its last two only)');
is(types_of($want, $H), 'sync.task reminder.scheduled task.updated sync.task task.completed sync.task',
	'H: the half-delivered change owes its remaining events, then its later changes');
my $retry_before = $node->safe_psql('postgres',
	'SELECT seq, task_id, done, attempts, next_attempt_at, last_status, last_error FROM taskevents.retry ORDER BY seq');
my $dead_before = $node->safe_psql('postgres', 'SELECT * FROM taskevents.dead_letter ORDER BY event_id');
is($node->safe_psql('postgres', 'SELECT count(*) FROM taskevents.dead_letter'), '2', 'D: two dead letters');
is($node->safe_psql('postgres', 'SELECT count(*) FROM taskevents.dead_letter', extra_params => [ '-U', 'monitor' ]), '2',
	'1.0: pg_monitor can read the dead letters');

# The update runs while a writer is in a transaction (the update waits for
# it) and another writer comes while the update runs (it waits for the
# update, then writes into the new queue).  Delivery is off, so the state
# the update leaves can be looked at; it is read at start, so no race.
$node->safe_psql('postgres', 'ALTER SYSTEM SET taskevents.enabled = off');
$node->restart;
wait_until('the worker idles again', sub { state($node) eq $needs_update });
is(scalar @{ delivered_events($dapr) }, 0, 'with 1.0\'s objects nothing was delivered');
my ($C1, $C2) = map { uuid($_) } 0xc1, 0xc2;
my $w1 = $node->background_psql('postgres');
$w1->query_safe("BEGIN; INSERT INTO tasks (id, user_id, title) VALUES ('$C1', gen_random_uuid(), 'c1 before the update');");
my $up = $node->background_psql('postgres');
$up->query_until(qr/updating/, "\\echo updating\nALTER EXTENSION taskevents UPDATE;\n");
my $waits = q{SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE };
my $version = q{SELECT extversion FROM pg_extension WHERE extname = 'taskevents'};
wait_until('the update waits or ends', sub {
	$node->safe_psql('postgres', $waits . q{'ALTER EXTENSION%'}) eq '1' || $node->safe_psql('postgres', $version) eq '1.3' });
is($node->safe_psql('postgres', $waits . q{'ALTER EXTENSION%'}), '1', 'the update waits for the writer that is in a transaction');
my $w2 = $node->background_psql('postgres');
$w2->query_until(qr/writing/, "\\echo writing\nINSERT INTO tasks (id, user_id, title) VALUES ('$C2', gen_random_uuid(), 'c2 during the update');\n");
wait_until('the second writer waits or ends', sub {
	$node->safe_psql('postgres', $waits . q{'INSERT INTO tasks%'}) eq '1'
	  || $node->safe_psql('postgres', "SELECT count(*) FROM tasks WHERE id = '$C2'") eq '1' });
is($node->safe_psql('postgres', $waits . q{'INSERT INTO tasks%'}), '1', 'a writer that comes during the update waits for it');
$w1->query_safe('COMMIT');
is($up->query($version), '1.3', 'updated to 1.3, through 1.1 and 1.2');
is($w2->query('SELECT 1'), '1', 'the writer that waited for the update went on');
$_->quit for $w1, $up, $w2;

# What the update left: the same events to send, retry state and dead letters.
wait_until('the worker sees the update', sub { state($node) ne $needs_update });
is(state($node), 'disabled', 'after the update the worker takes the new objects (delivery is off: disabled)');
my $after = queued_events($node, 'postgres');
is_deeply([ @$after[ 0 .. $#$want ] ], $want, 'every queued event kept: same order, same ids, same CloudEvents');
is_deeply([ map { $_->[0] } @$after[ @$want .. $#$after ] ], [ $C1, $C1, $C2, $C2 ],
	'and the two writers\' changes are queued after them');
is($node->safe_psql('postgres',
	'SELECT seq, task_id, done, attempts, next_attempt_at, last_status, last_error FROM taskevents.retry ORDER BY seq'),
	$retry_before, 'retry state kept: done mask, attempts, next attempt, last error');
is($node->safe_psql('postgres', 'SELECT * FROM taskevents.dead_letter ORDER BY event_id'), $dead_before,
	'dead letters kept');
is($node->safe_psql('postgres', 'SELECT count(*) FROM taskevents.queue WHERE task_id IN (' . "'$C2'" . ')'), '1',
	'the writer that waited wrote into the new queue tables');
my ($ret, $out, $err) = $node->psql('postgres', 'SELECT count(*) FROM taskevents.dead_letter',
	extra_params => [ '-U', 'monitor' ]);
like($err, qr/permission denied for table dead_letter/, '1.1: pg_monitor can no longer read the dead letters');
($ret, $out, $err) = $node->psql('postgres', 'SELECT count(*) FROM taskevents.outbox', extra_params => [ '-U', 'monitor' ]);
like($err, qr/permission denied/, 'nor the queue');
is($node->safe_psql('postgres', 'SELECT queue_depth FROM taskevents.status', extra_params => [ '-U', 'monitor' ]), '12',
	'it still reads the status');

# Delivery on: everything but H goes out; H waits for its retry.
$node->safe_psql('postgres', 'ALTER SYSTEM RESET taskevents.enabled; SELECT pg_reload_conf();');
my @not_h = grep { $_->[0] ne $H } @$after;
wait_until('everything but H delivered', sub {
	@{ received($dapr) } >= @not_h && $node->safe_psql('postgres', 'SELECT count(*) FROM taskevents.outbox') eq '3' });
my $got = received($dapr);
is(scalar(grep { $_->[0] eq $H } @$got), 0, 'H\'s events wait for its retry, later changes included');
is(scalar @$got, scalar @not_h, 'every other event sent once');
my ($g, $w) = (per_task($got), per_task(\@not_h));
is_deeply($g->{$_}, $w->{$_}, "task $_: its events in order, with their ids and CloudEvents") for sort keys %$w;
is($node->safe_psql('postgres',
	"SELECT done, attempts, next_attempt_at > now() + interval '50 minutes', last_status FROM taskevents.retry WHERE task_id = '$H' ORDER BY seq"),
	"1|3|t|500\n0|0||0\n0|0||0", 'H: the half-delivered change keeps its state, its later changes wait behind it');

# H's retry comes due.
$node->safe_psql('postgres', "UPDATE taskevents.retry SET next_attempt_at = now() WHERE task_id = '$H' AND done = 1");
wait_drained($node, 'H delivered');
$got = received($dapr);
my @h = grep { $_->[0] eq $H } @$got;
is_deeply(\@h, [ grep { $_->[0] eq $H } @$after ],
	'H: only the remaining events of its first change, then its later changes, in order, ids unchanged');
is(scalar @$got, scalar @$after, 'each event sent once');

# Dead letters kept from 1.0 are sent again on request, as they were stored.
is($node->safe_psql('postgres', 'SELECT taskevents.resend()'), '2', 'resend() re-queues the two dead letters of 1.0');
wait_until('dead letters sent', sub {
	$node->safe_psql('postgres', 'SELECT count(*) FROM taskevents.dead_letter') eq '0' });
my @d = grep { $_->[0] eq $D } @{ received($dapr) };
is_deeply([ sort map { "$_->[1] $_->[2]" } @d ],
	[ sort map { my @f = split /\|/; "$f[0] " . $json->encode(decode_json($f[5])) } split /\n/, $dead_before ],
	'the dead letters went out with their ids and stored CloudEvents');

# New changes are captured into the new queue and delivered.
my $N = uuid(0x99);
$node->safe_psql('postgres', "INSERT INTO tasks (id, user_id, title) VALUES ('$N', gen_random_uuid(), 'new')");
wait_until('a new change delivered', sub { (grep { $_->[0] eq $N } @{ received($dapr) }) == 2 });
is(types_of(received($dapr), $N), 'task.created sync.task', 'a change made after the update is delivered');
$node->stop;

############################################################################
# A populated 1.2 install (delivered history kept for taskevents.retention,
# changes waiting) updated to 1.3: the same events wait and are delivered,
# and the history is replayed with its original ids.
############################################################################
my $dapr12 = start_sidecar();
my $n12 = new_node('upgrade_1_2', port => $dapr12->port, conf => "taskevents.retention = '1h'\n");
$n12->safe_psql('postgres', tasks_ddl() . "CREATE EXTENSION taskevents VERSION '1.2';");
is($n12->safe_psql('postgres', $version), '1.2', 'version 1.2 installed under the 1.3 library');
my @T = map { uuid(0xa00 + $_) } 1 .. 4;
$n12->safe_psql('postgres', "INSERT INTO tasks (id, user_id, title) VALUES ('$_', gen_random_uuid(), 'under 1.2')") for @T[ 0 .. 2 ];
wait_drained($n12, 'delivered under 1.2\'s objects');
my $history = received($dapr12);
is(scalar @$history, 6, 'the 1.3 library delivers 1.2\'s objects');
set_delivery($n12, 'off');
$n12->safe_psql('postgres', qq{UPDATE tasks SET completed = true WHERE id = '$T[0]';
	INSERT INTO tasks (id, user_id, title) VALUES ('$T[3]', gen_random_uuid(), 'waiting');
	DELETE FROM tasks WHERE id = '$T[1]';});
$want = queued_events($n12, 'postgres');
is(scalar @$want, 6, 'three changes wait');
$n12->safe_psql('postgres', 'ALTER EXTENSION taskevents UPDATE');
is($n12->safe_psql('postgres', $version), '1.3', 'updated to 1.3');
is_deeply(queued_events($n12, 'postgres'), $want, 'the same events wait, with the same ids and CloudEvents');
set_delivery($n12, 'on');
wait_drained($n12, 'the waiting changes delivered after the update');
$got = received($dapr12);
is_deeply(per_task([ @$got[ @$history .. $#$got ] ]), per_task($want), 'each sent once, each task\'s in order, as queued');
is($n12->safe_psql('postgres', 'SELECT taskevents.replay(from_seq => 1)'), '6', 'replay queues the six kept changes again');
wait_drained($n12, 'the replay delivered');
$got = received($dapr12);
is_deeply(per_task([ @$got[ @$history + @$want .. $#$got ] ]), per_task([ @$history, @$want ]),
	'the history is published again: the same CloudEvents, ids included, each task\'s in order');
$n12->stop;

############################################################################
# pg_dump / pg_restore of a populated 1.1 database.
############################################################################
my $dapr_src = start_sidecar();
my $src = new_node('dump_source', port => $dapr_src->port, conf => "taskevents.max_attempts = 0\n");
$src->safe_psql('postgres', tasks_ddl() . 'CREATE EXTENSION taskevents;');

# Delivered before the dump: the cursor is past them.
my @S = map { uuid(0x500 + $_) } 1 .. 3;
$src->safe_psql('postgres', "INSERT INTO tasks (id, user_id, title) VALUES ('$_', gen_random_uuid(), 'delivered')") for @S;
wait_drained($src, 'delivered before the dump');
is(scalar @{ delivered_events($dapr_src) }, 6, 'three tasks delivered before the dump');

# Dead letters: the sidecar refuses one task's events for good.
my $DL = uuid(0x600);
$dapr_src->mode(mode => 'fail', status => 403, code => 'ERR_PUBSUB_FORBIDDEN', match => $DL);
$src->safe_psql('postgres', "INSERT INTO tasks (id, user_id, title) VALUES ('$DL', gen_random_uuid(), 'refused')");
wait_until('dead letters', sub { $src->safe_psql('postgres', 'SELECT count(*) FROM taskevents.dead_letter') eq '2' });

# Retry state: R's task.created goes out, its sync.task keeps failing; R's
# later change waits behind it.
my ($R, $RU) = (uuid(0x700), uuid(0x7aa));
(my $match = qq{"$RU","action":"created","timestamp"}) =~ s/([^A-Za-z0-9_.-])/sprintf('%%%02X', ord $1)/ge;
$dapr_src->mode(mode => 'fail', status => 500, code => 'ERR_PUBSUB_PUBLISH_MESSAGE', match => $match);
$src->safe_psql('postgres', "INSERT INTO tasks (id, user_id, title) VALUES ('$R', '$RU', 'r0')");
$src->safe_psql('postgres', "UPDATE tasks SET title = 'r1' WHERE id = '$R'");
wait_until('R half delivered and retried', sub {
	$src->safe_psql('postgres', "SELECT string_agg(concat_ws(',', done, attempts >= 2, next_attempt_at IS NULL), ' ' ORDER BY seq) FROM taskevents.retry WHERE task_id = '$R'")
	  eq '1,t,f 0,f,t' });

# A hole in the cursor: G's change was numbered before S4's but commits
# after it was delivered (and after delivery stopped).
my ($G, $S4) = (uuid(0x650), uuid(0x504));
my $gsession = $src->background_psql('postgres');
$gsession->query_safe("BEGIN; INSERT INTO tasks (id, user_id, title) VALUES ('$G', gen_random_uuid(), 'in a hole');");
$src->safe_psql('postgres', "INSERT INTO tasks (id, user_id, title) VALUES ('$S4', gen_random_uuid(), 'delivered')");
wait_until('S4 delivered', sub { 2 == grep { $_->{event}{subject} eq $S4 } @{ delivered_events($dapr_src) } });

# Then delivery stops, and more changes wait in the queue.
$src->safe_psql('postgres', 'ALTER SYSTEM SET taskevents.enabled = off; SELECT pg_reload_conf();');
$src->poll_query_until('postgres', q{SELECT worker_state = 'disabled' FROM taskevents.status})
  or die 'delivery does not stop';
$gsession->query_safe('COMMIT');
$gsession->quit;
my @W = map { uuid(0x800 + $_) } 1 .. 3;
$src->safe_psql('postgres', "INSERT INTO tasks (id, user_id, title) VALUES ('$_', gen_random_uuid(), 'waiting')") for @W;
$src->safe_psql('postgres', "UPDATE tasks SET title = 'changed after delivery' WHERE id = '$S[0]'");
my $sent_before = received($dapr_src);
my %sent_before = map { $_->[1] => 1 } @$sent_before;
ok(!grep({ $_->[0] eq $R && decode_json($_->[2])->{type} eq 'sync.task' } @$sent_before), 'R\'s first sync.task was never sent');
ok(grep({ $_->[0] eq $R && decode_json($_->[2])->{type} eq 'task.created' } @$sent_before), 'R\'s task.created was');

$want = queued_events($src, 'postgres');
is(scalar @$want, 13, '13 events wait: R\'s sync.task and later change, G\'s change in a hole, three new tasks, one change of a delivered task');
my %snapshot = (
	retry => 'SELECT * FROM taskevents.retry ORDER BY seq',
	dead_letter => 'SELECT * FROM taskevents.dead_letter ORDER BY event_id',
	tick => 'SELECT hi, hole_lo, hole_hi FROM taskevents.tick ORDER BY id DESC LIMIT 1',
	queue => 'SELECT * FROM taskevents.queue ORDER BY seq',
);
my %before = map { $_ => $src->safe_psql('postgres', $snapshot{$_}) } keys %snapshot;
like($before{tick}, qr/^\d+\|\{(\d+)\}\|\{\1\}$/, 'the cursor in taskevents.tick has a hole (G\'s change)');

# Dump, and restore into a new database of another server.
my $bindir = $src->config_data('--bindir');
my $dump = $src->basedir . '/taskevents.dump';
my ($stdout, $stderr);
ok(IPC::Run::run([ "$bindir/pg_dump", '-Fc', '-f', $dump, '-d', $src->connstr('postgres') ], '>', \$stdout, '2>', \$stderr),
	'pg_dump of the populated database');
is($stderr, '', 'pg_dump says nothing');
$src->stop;

my $dapr_dst = start_sidecar();
# Delivery off, as the README says; the worker polls once an hour, so what
# it read of the extension while the restore ran is what it has, unless
# turning delivery on makes it read again.
my $dst = new_node('dump_target', port => $dapr_dst->port,
	conf => "taskevents.enabled = off\ntaskevents.poll_interval = '1h'\n");
$dst->safe_psql('postgres', 'CREATE DATABASE restored');
ok(IPC::Run::run([ "$bindir/pg_restore", '--section=pre-data', '-d', $dst->connstr('restored'), $dump ], '>', \$stdout, '2>', \$stderr),
	'pg_restore of the objects into a new database');
is($stderr, '', 'pg_restore says nothing');
$dst->poll_query_until('restored', q{SELECT worker_state = 'disabled' FROM taskevents.status})
  or die 'no worker in the restored database';
ok(IPC::Run::run([ "$bindir/pg_restore", '--section=data', '--section=post-data', '-d', $dst->connstr('restored'), $dump ],
		'>', \$stdout, '2>', \$stderr),
	'pg_restore of the data, while the worker waits');
is($stderr, '', 'pg_restore says nothing');
is($dst->safe_psql('restored', $snapshot{$_}), $before{$_}, "restored: taskevents.$_ as it was") for sort keys %snapshot;
is_deeply(queued_events($dst, 'restored'), $want, 'restored: the same events wait, with the same ids and CloudEvents');

# Delivery on: the waiting events arrive, the delivered ones are not sent again.
$dst->safe_psql('restored', 'ALTER SYSTEM SET taskevents.enabled = on; SELECT pg_reload_conf();');
wait_until('restored queue delivered', sub {
	$dst->safe_psql('restored', 'SELECT count(*) FROM taskevents.outbox') eq '0' });
$got = received($dapr_dst);
is(scalar(grep { $sent_before{ $_->[1] } } @$got), 0, 'nothing delivered before the dump is sent again');
is(scalar @$got, scalar @$want, 'each waiting event sent once');
($g, $w) = (per_task($got), per_task($want));
is_deeply($g->{$_}, $w->{$_}, "task $_: its waiting events in order, with their ids and CloudEvents") for sort keys %$w;
is($dst->safe_psql('restored', 'SELECT count(*) FROM taskevents.dead_letter'), '2', 'the dead letters stay until re-sent');
is($dst->safe_psql('restored', 'SELECT taskevents.resend()'), '2', 'and resend() re-queues them');
wait_until('restored dead letters sent', sub {
	$dst->safe_psql('restored', 'SELECT count(*) FROM taskevents.dead_letter') eq '0' });
is(join(' ', sort split / /, types_of(received($dapr_dst), $DL)), 'sync.task task.created', 'the restored dead letters are delivered');

# Capture goes on in the restored database (numbers past the cursor).
my $M = uuid(0x900);
$dst->safe_psql('restored', "INSERT INTO tasks (id, user_id, title) VALUES ('$M', gen_random_uuid(), 'after restore')");
wait_until('a change after the restore delivered', sub { grep { $_->[0] eq $M } @{ received($dapr_dst) } });
is(types_of(received($dapr_dst), $M), 'task.created sync.task', 'a change made after the restore is delivered');
$dst->stop;

done_testing();
