# One fault never stops a whole database's delivery: odd encodings,
# publications, hosts, huge rows and garbage from the sidecar each give
# events or clear dead letters while the rest flows.
use strict;
use warnings;
use utf8;
use FindBin;
use lib $FindBin::RealBin;
use Encode qw(decode);
use IO::Socket::IP;
use PostgreSQL::Test::Utils;
use Test::More;
use TaskEventsTest;

my $dapr = start_sidecar();
my $node = new_node('stalls', port => $dapr->port,
	conf => "taskevents.max_attempts = 3\nshared_buffers = '16MB'\n");

# The types of the events the sidecar received for a task, in order.
sub types_of
{
	my ($task) = @_;
	return [ map { $_->{event}{type} } grep { $_->{event}{data}{task_id} eq $task } @{ delivered_events($dapr) } ];
}

# The title a task's task.created carried.
sub title_of
{
	my ($task) = @_;
	my ($e) = grep { $_->{event}{type} eq 'task.created' && $_->{event}{data}{task_id} eq $task }
	  @{ delivered_events($dapr) };
	return $e ? $e->{event}{data}{title} : undef;
}

# Is every byte of a text column valid UTF-8?  (convert_from checks.)
sub valid_utf8
{
	my ($db, $sql) = @_;
	my ($ret) = $node->psql($db, "SELECT count(convert_from(convert_to(t, 'UTF8'), 'UTF8')) FROM ($sql) s(t)");
	return $ret == 0;
}

# 1. Databases in other encodings.  LATIN1 converts to UTF-8 whole.
$node->safe_psql('postgres', q{
	CREATE DATABASE latin ENCODING 'LATIN1' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0;
	CREATE DATABASE eucjp ENCODING 'EUC_JP' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0;
	CREATE DATABASE ascii ENCODING 'SQL_ASCII' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0;
});
for my $db (qw(latin eucjp ascii))
{
	$node->safe_psql($db, tasks_ddl() . 'CREATE EXTENSION taskevents;');
}
$node->safe_psql('latin', q{
	INSERT INTO tasks (id, user_id, title) VALUES ('00000000-0000-4000-8000-0000000000e1', gen_random_uuid(),
	    convert_from('\x636166e9'::bytea, 'LATIN1'))});
wait_until('the LATIN1 database delivers', sub { @{ types_of('00000000-0000-4000-8000-0000000000e1') } == 2 });
is(title_of('00000000-0000-4000-8000-0000000000e1'), 'café', 'a LATIN1 title arrives as UTF-8');

# EUC_JP: 0xA2AF is a valid EUC_JP character with no UTF-8 equivalent.
# Only the event that holds it is a dead letter; the rest flows.
$node->safe_psql('eucjp', q{
	INSERT INTO tasks (id, user_id, title) VALUES
	    ('00000000-0000-4000-8000-0000000000e2', gen_random_uuid(), convert_from('\x41a2af42'::bytea, 'EUC_JP')),
	    ('00000000-0000-4000-8000-0000000000e3', gen_random_uuid(), convert_from('\xa4a2'::bytea, 'EUC_JP'))});
wait_until('the EUC_JP database delivers the rest', sub { @{ types_of('00000000-0000-4000-8000-0000000000e3') } == 2 });
is(title_of('00000000-0000-4000-8000-0000000000e3'), 'あ', 'an EUC_JP title arrives as UTF-8');
wait_until('the untranslatable change settled',
	sub { $node->safe_psql('eucjp', 'SELECT count(*) FROM taskevents.outbox') eq '0' });
is_deeply(types_of('00000000-0000-4000-8000-0000000000e2'), ['sync.task'],
	'the change with the untranslatable title: its sync.task is delivered');
like($node->safe_psql('eucjp', 'SELECT type || \': \' || last_error FROM taskevents.dead_letters'),
	qr/^task\.created: a character of the event has no equivalent in UTF-8$/,
	'its task.created is a dead letter saying why');

# SQL_ASCII: bytes are not checked on the way in; text that is not UTF-8
# cannot be sent and is a dead letter with the reason.
$node->safe_psql('ascii', q{
	INSERT INTO tasks (id, user_id, title) VALUES
	    ('00000000-0000-4000-8000-0000000000e4', gen_random_uuid(), convert_from('\x41ff42'::bytea, 'SQL_ASCII')),
	    ('00000000-0000-4000-8000-0000000000e5', gen_random_uuid(), 'plain')});
wait_until('the SQL_ASCII database delivers the rest', sub { @{ types_of('00000000-0000-4000-8000-0000000000e5') } == 2 });
wait_until('the change that is not UTF-8 settled',
	sub { $node->safe_psql('ascii', 'SELECT count(*) FROM taskevents.outbox') eq '0' });
is_deeply(types_of('00000000-0000-4000-8000-0000000000e4'), ['sync.task'],
	'the change with bytes that are not UTF-8: its sync.task is delivered');
like($node->safe_psql('ascii', 'SELECT type || \': \' || last_error FROM taskevents.dead_letters'),
	qr/^task\.created: the event is not valid UTF-8/, 'its task.created is a dead letter saying why');

# 2. A publication FOR ALL TABLES: every table delivery updates or deletes
# from needs a replica identity.  Retries, dead letters, a re-send, tick
# pruning and emptied queue tables all run under it.
$node->safe_psql('postgres', tasks_ddl() . q{
	CREATE EXTENSION taskevents;
	CREATE PUBLICATION everything FOR ALL TABLES;
	ALTER SYSTEM SET taskevents.retention = '1s';
	SELECT pg_reload_conf();});
$dapr->mode(mode => 'fail', count => 1, status => 500, code => 'ERR_PUBSUB_PUBLISH_MESSAGE');
$node->safe_psql('postgres', "INSERT INTO tasks (user_id, title) VALUES (gen_random_uuid(), 'published 1')");
wait_drained($node, 'retried under the publication');
$dapr->mode(mode => 'fail', count => 1, status => 403, code => 'ERR_PUBSUB_FORBIDDEN');
$node->safe_psql('postgres', "INSERT INTO tasks (user_id, title) VALUES (gen_random_uuid(), 'published 2')");
wait_until('a dead letter under the publication',
	sub { $node->safe_psql('postgres', 'SELECT count(*) FROM taskevents.dead_letters') eq '1' });
$node->safe_psql('postgres', 'SELECT taskevents.resend()');
wait_until('re-sent under the publication',
	sub { $node->safe_psql('postgres', 'SELECT count(*) FROM taskevents.dead_letters') eq '0' });
# Jump the sequence two runs ahead: the first queue table's run is over.
$node->safe_psql('postgres', "SELECT setval('taskevents.outbox_seq', 2 * 32768)");
sleep 2;    # past the retention
$node->safe_psql('postgres', "INSERT INTO tasks (user_id, title) VALUES (gen_random_uuid(), 'published 3')");
wait_until('the first queue table is emptied under the publication',
	sub { $node->safe_psql('postgres', 'SELECT count(*) FROM taskevents.queue_0') eq '0' });
is_deeply([ sort grep { /^published/ } map { $_->{event}{data}{title} // '' } @{ delivered_events($dapr) } ],
	[ 'published 1', 'published 2', 'published 3' ], 'every change delivered under the publication');
ok(!$node->log_contains(qr/replica identity/), 'no replica identity error');
$node->safe_psql('postgres', q{
	DROP PUBLICATION everything;
	ALTER SYSTEM RESET taskevents.retention;
	SELECT pg_reload_conf();});

# 3. The host must make a URL: a port or a scheme in it is refused at once,
# an IPv6 address works.
for my $bad ('127.0.0.1:3716', 'http://127.0.0.1', 'exa mple', 'a/b', '[::1')
{
	my ($ret, $out, $err) = $node->psql('postgres', "ALTER SYSTEM SET taskevents.host = '$bad'");
	like($err, qr/invalid value for parameter "taskevents.host"/, "host '$bad' is refused");
}
SKIP:
{
	skip 'no IPv6 loopback here', 3 unless IO::Socket::IP->new(LocalHost => '::1', Listen => 1);
	my $v6 = start_sidecar(bind => '::1');
	for my $host ('::1', '[::1]')
	{
		$node->safe_psql('postgres', "ALTER SYSTEM SET taskevents.host = '$host'; "
			  . 'ALTER SYSTEM SET taskevents.port = ' . $v6->port . '; SELECT pg_reload_conf();');
		sleep 1;
		$node->safe_psql('postgres', "INSERT INTO tasks (user_id, title) VALUES (gen_random_uuid(), 'over $host')");
		wait_until("delivered over $host",
			sub { (grep { ($_->{event}{data}{title} // "") eq "over $host" } @{ delivered_events($v6) }) >= 1 }, 10);
	}
	is($node->safe_psql('postgres', 'SELECT sidecar_reachable FROM taskevents.status'), 't',
		'status: reachable over IPv6');
	$node->safe_psql('postgres', 'ALTER SYSTEM RESET taskevents.host; ALTER SYSTEM SET taskevents.port = '
		  . $dapr->port . '; SELECT pg_reload_conf();');
	sleep 1;
}

# 4. Error texts from the sidecar are kept as valid text: a message cut at
# the length limit in the middle of a character, bytes that are not UTF-8.
# No attempt limit meanwhile: the failing event must stay a retry until read.
$node->safe_psql('postgres', 'ALTER SYSTEM SET taskevents.max_attempts = 0; SELECT pg_reload_conf();');
$node->poll_query_until('postgres', "SELECT current_setting('taskevents.max_attempts') = '0'") or die;
$dapr->mode(mode => 'fail', match => 'long%20error', status => 500, code => 'ERR_PUBSUB_PUBLISH_MESSAGE',
	message => '%C3%A9' x 200);
$node->safe_psql('postgres', "INSERT INTO tasks (user_id, title) VALUES (gen_random_uuid(), 'long error')");
wait_until('the retry is recorded',
	sub { $node->safe_psql('postgres', 'SELECT count(*) FROM taskevents.retry') eq '1' });
ok(valid_utf8('postgres', 'SELECT last_error FROM taskevents.retry'), 'a cut error is valid UTF-8 in taskevents.retry');
ok(valid_utf8('postgres', 'SELECT last_error FROM taskevents.status'), '... and in the status view');
$dapr->mode(mode => 'ok');
wait_drained($node, 'delivered after the long error');
$dapr->mode(mode => 'garbage', count => 10, status => 403, message => '%FF%FEnot%20UTF-8%C3');
$node->safe_psql('postgres', "INSERT INTO tasks (user_id, title) VALUES (gen_random_uuid(), 'garbage error')");
wait_until('dead letters with the garbage answer',
	sub { $node->safe_psql('postgres', 'SELECT count(*) FROM taskevents.dead_letters') eq '2' });
ok(valid_utf8('postgres', 'SELECT last_error FROM taskevents.dead_letter'), 'an answer that is not UTF-8 is kept as valid text');
like($node->safe_psql('postgres', 'SELECT min(last_error) FROM taskevents.dead_letter'),
	qr/^HTTP 403: \?\?not UTF-8$/, '... with its bad bytes as ?');
$dapr->mode(mode => 'ok');
$node->safe_psql('postgres', 'SELECT taskevents.drop_dead_letters()');
$node->safe_psql('postgres', 'ALTER SYSTEM RESET taskevents.max_attempts; SELECT pg_reload_conf();');

# 5. Huge rows: a round reads a bounded number of bytes, whatever the rows
# hold (each title here is 3 MB; the worker's private memory stays far below
# what holding every one of them at once would take).
$node->safe_psql('postgres', 'ALTER SYSTEM SET taskevents.enabled = off; SELECT pg_reload_conf();');
sleep 1;
$node->safe_psql('postgres',
	"INSERT INTO tasks (user_id, title) SELECT gen_random_uuid(), repeat(chr(65 + i % 26), 3 * 1024 * 1024) FROM generate_series(1, 40) i");
my $pid = $node->safe_psql('postgres', "SELECT pid FROM pg_stat_activity WHERE backend_type = 'taskevents worker' AND datname = 'postgres'");
my $peak = 0;
$node->safe_psql('postgres', 'ALTER SYSTEM SET taskevents.enabled = on; SELECT pg_reload_conf();');
wait_until('the huge rows are delivered', sub {
	my ($anon) = slurp_file("/proc/$pid/status") =~ /RssAnon:\s+(\d+)/;
	$peak = $anon if $anon > $peak;
	$node->safe_psql('postgres', 'SELECT count(*) FROM taskevents.outbox') eq '0' }, 120);
note "worker RssAnon peak: $peak kB while delivering 40 changes of 3 MB";
cmp_ok($peak, '<', 100 * 1024, 'the worker never held all 120 MB of titles (and their events) at once');
is($node->safe_psql('postgres', 'SELECT count(*) FROM taskevents.dead_letters'), '0', 'every huge event delivered');


# 6. An event that cannot be built: the worker runs out of memory building
# it (its address space capped with prlimit 384 MB above its size; a title
# of 60 MB of control characters escapes to 360 MB of JSON, which the claim
# never holds).  The error becomes the change's dead letters, the next
# change is delivered, and building left nothing behind: the same worker,
# no lock, its private memory back to what it was.
my $status = sub { my %st = slurp_file("/proc/$pid/status") =~ /^(\w+):\s+(\d+)/mg; \%st };
my $before = $status->();
system('prlimit', "--pid=$pid", '--as=' . ($before->{VmSize} + 384 * 1024) * 1024) == 0
  or die 'prlimit failed';
$node->safe_psql('postgres',
	"INSERT INTO tasks (user_id, title) VALUES (gen_random_uuid(), repeat(chr(1), 60 * 1024 * 1024))");
my $published = $node->safe_psql('postgres', 'SELECT published FROM taskevents.status');
$node->safe_psql('postgres', "INSERT INTO tasks (user_id, title) VALUES (gen_random_uuid(), 'after the unbuildable')");
wait_drained($node, 'the unbuildable change settled', 60);
like($node->safe_psql('postgres', 'SELECT string_agg(DISTINCT last_error, \',\') FROM taskevents.dead_letter'),
	qr/^the event could not be built: out of memory$/, 'the unbuildable change is dead-lettered, saying why');
is($node->safe_psql('postgres', 'SELECT count(*) FROM taskevents.dead_letters'), '2', '... both of its events');
is($node->safe_psql('postgres', 'SELECT published FROM taskevents.status') - $published, 2,
	'the next change is delivered');
is($node->safe_psql('postgres', "SELECT pid FROM pg_stat_activity WHERE backend_type = 'taskevents worker' AND datname = 'postgres'"),
	$pid, 'by the same worker');
is($node->safe_psql('postgres', "SELECT count(*) FROM pg_locks WHERE pid = $pid"), '0', 'which holds no lock');
my $after = $status->();
note "worker RssAnon $before->{RssAnon} kB before, $after->{RssAnon} kB after";
cmp_ok($after->{RssAnon}, '<', $before->{RssAnon} + 64 * 1024, 'nor the memory of the failed build');
$node->stop;
done_testing();
