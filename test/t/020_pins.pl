# The worker runs as a superuser in a database another role owns (SPEC §8):
# a search_path the database owner sets, with its schema first and its own
# operators and functions shadowing pg_catalog's, changes nothing the worker
# runs.  Two layers protect it: the worker pins search_path to pg_catalog,
# pg_temp, and its statements name every operator and function with its
# schema.  The behaviour (no escalation through a delivery, a retry or a
# re-sent dead letter) shows that both hold together; the plans the worker
# runs, logged by auto_explain, show the first alone: printed under the
# worker's own search_path, a name that something of the owner's schema
# shadows would read OPERATOR(pg_catalog.=) or pg_catalog.now().
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Utils;
use Test::More;
use TaskEventsTest;

my $dapr = start_sidecar();
my $node = new_node('pins', port => $dapr->port, conf => q{
shared_preload_libraries = 'taskevents, auto_explain'
auto_explain.log_min_duration = -1
auto_explain.log_verbose = on
auto_explain.log_nested_statements = on
});
$node->safe_psql('postgres', q{
	CREATE ROLE mallory LOGIN;
	CREATE DATABASE appdb OWNER mallory;
});
$node->safe_psql('appdb', tasks_ddl() . 'ALTER TABLE tasks OWNER TO mallory; CREATE EXTENSION taskevents;');

sub worker_pid
{
	return $node->safe_psql('postgres',
		"SELECT pid FROM pg_stat_activity WHERE backend_type = 'taskevents worker' AND datname = 'appdb'");
}

sub superuser { $node->safe_psql('postgres', "SELECT rolsuper FROM pg_roles WHERE rolname = 'mallory'") }

# The test's own superuser sessions keep a safe search_path.
$ENV{PGOPTIONS} = '-c search_path=public';

sub insert
{
	my ($title) = @_;
	return $node->safe_psql('appdb', "INSERT INTO tasks (user_id, title) VALUES (gen_random_uuid(), '$title') RETURNING id");
}

sub delivered
{
	my ($task, $type) = @_;
	return scalar grep { $_->{event}{subject} eq $task && $_->{event}{type} eq $type } @{ delivered_events($dapr) };
}

# The database owner's trap: each operator and function escalates mallory
# when a superuser runs it.
my ($ret, $out, $err) = $node->psql('appdb', q{
	CREATE SCHEMA evil;
	CREATE FUNCTION evil.escalate() RETURNS void LANGUAGE plpgsql AS $$
	BEGIN
		ALTER ROLE mallory SUPERUSER;
	EXCEPTION WHEN insufficient_privilege THEN NULL;
	END $$;
	CREATE FUNCTION evil.eq(text, text) RETURNS boolean LANGUAGE plpgsql AS $$
	BEGIN PERFORM evil.escalate(); RETURN $1 OPERATOR(pg_catalog.=) $2; END $$;
	CREATE OPERATOR evil.= (LEFTARG = text, RIGHTARG = text, FUNCTION = evil.eq);
	CREATE FUNCTION evil.eq8(bigint, bigint) RETURNS boolean LANGUAGE plpgsql AS $$
	BEGIN PERFORM evil.escalate(); RETURN $1 OPERATOR(pg_catalog.=) $2; END $$;
	CREATE OPERATOR evil.= (LEFTARG = bigint, RIGHTARG = bigint, FUNCTION = evil.eq8);
	CREATE FUNCTION evil.gt8(bigint, bigint) RETURNS boolean LANGUAGE plpgsql AS $$
	BEGIN PERFORM evil.escalate(); RETURN $1 OPERATOR(pg_catalog.>) $2; END $$;
	CREATE OPERATOR evil.> (LEFTARG = bigint, RIGHTARG = bigint, FUNCTION = evil.gt8);
	CREATE FUNCTION evil.le8(bigint, bigint) RETURNS boolean LANGUAGE plpgsql AS $$
	BEGIN PERFORM evil.escalate(); RETURN $1 OPERATOR(pg_catalog.<=) $2; END $$;
	CREATE OPERATOR evil.<= (LEFTARG = bigint, RIGHTARG = bigint, FUNCTION = evil.le8);
	CREATE FUNCTION evil.le(timestamptz, timestamptz) RETURNS boolean LANGUAGE plpgsql AS $$
	BEGIN PERFORM evil.escalate(); RETURN $1 OPERATOR(pg_catalog.<=) $2; END $$;
	CREATE OPERATOR evil.<= (LEFTARG = timestamptz, RIGHTARG = timestamptz, FUNCTION = evil.le);
	CREATE FUNCTION evil.now() RETURNS timestamptz LANGUAGE plpgsql AS $$
	BEGIN PERFORM evil.escalate(); RETURN pg_catalog.now(); END $$;
	GRANT USAGE ON SCHEMA evil TO PUBLIC;
	ALTER DATABASE appdb SET search_path = evil, pg_catalog, public;
}, extra_params => [ '-U', 'mallory' ]);
is($ret, 0, 'the database owner sets its trap') or diag $err;

# A fresh worker, so that the database's setting applies to it; its plans logged.
my $old = worker_pid();
$node->safe_psql('postgres', "SELECT pg_terminate_backend($old)");
wait_until('a new worker', sub { my $p = worker_pid(); $p ne '' && $p ne $old });
my $pid = worker_pid();
my $offset = -s $node->logfile;
$node->safe_psql('postgres', 'ALTER SYSTEM SET auto_explain.log_min_duration = 0; SELECT pg_reload_conf();');

# A delivery, a retry, a dead letter and its resend, under the trap.
$dapr->mode(mode => 'fail', status => 500, code => 'ERR_PUBSUB_PUBLISH_MESSAGE', count => 1);
my $task = insert('retried');
wait_until('delivered after a retry', sub { delivered($task, 'sync.task') });
$dapr->mode(mode => 'fail', status => 403, code => 'ERR_PUBSUB_FORBIDDEN', count => 1);
my $dead = insert('dead, then re-sent');
$node->poll_query_until('appdb', "SELECT count(*) = 1 FROM taskevents.dead_letter WHERE task_id = '$dead'")
  or die 'no dead letter';
$node->safe_psql('appdb', 'SELECT taskevents.resend()');
wait_until('the dead letter re-sent', sub { delivered($dead, 'task.created') });
$node->poll_query_until('appdb', 'SELECT count(*) = 0 FROM taskevents.dead_letter') or die 'dead letter stays';
$node->safe_psql('postgres', 'ALTER SYSTEM RESET auto_explain.log_min_duration; SELECT pg_reload_conf();');

is(superuser(), 'f', 'nothing of the owner\'s schema ran as the worker (no escalation)');

# The worker's statements as it planned them.
my @plans;
my $log = slurp_file($node->logfile, $offset);
for my $msg (split /\n(?=\S)/, $log)
{
	next unless $msg =~ /\[\Q$pid\E\]/ && $msg =~ /Query Text:/;
	$msg =~ s/^\s*Query Text:.*$//m;    # as written; the plan is as resolved
	push @plans, $msg;
}
cmp_ok(scalar(grep { /on taskevents\.queue_/ } @plans), '>', 0, 'the worker\'s claims were logged');
cmp_ok(scalar(grep { /on taskevents\.dead_letter/ } @plans), '>', 0, 'its resend claims too');
my @shadowed = grep { /OPERATOR\(pg_catalog\.|pg_catalog\.now\(\)/ } @plans;
is(scalar @shadowed, 0, 'no operator or function the worker runs resolves through the owner\'s schema')
  or diag $shadowed[0];

# The owner's defaults that would stop or steer the worker: read-only
# transactions, another role.  Delivery goes on and is recorded (the
# outbox empties, each event is sent once).
($ret, $out, $err) = $node->psql('appdb', q{
	ALTER DATABASE appdb SET default_transaction_read_only = on;
	ALTER DATABASE appdb SET role = 'mallory';
}, extra_params => [ '-U', 'mallory' ]);
is($ret, 0, 'the database owner sets hostile defaults') or diag $err;
$ENV{PGOPTIONS} .= ' -c default_transaction_read_only=off -c role=none';
$old = worker_pid();
$node->safe_psql('postgres', "SELECT pg_terminate_backend($old)");
wait_until('a new worker', sub { my $p = worker_pid(); $p ne '' && $p ne $old });
$task = insert('under hostile defaults');
wait_until('delivered and recorded under hostile defaults', sub {
	$node->safe_psql('appdb', 'SELECT count(*) FROM taskevents.outbox') eq '0' }, 20);
is(delivered($task, 'task.created') . delivered($task, 'sync.task'), '11', 'each event sent once');

$node->stop;
done_testing();
