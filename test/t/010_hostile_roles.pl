# Roles other than superusers are not trusted (SPEC §8): a database owner, a
# table owner and a role with no rights try to steer or stop the delivery
# worker, which runs as a superuser.  They get nothing, delivery goes on.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Utils;
use Test::More;
use TaskEventsTest;

my $dapr = start_sidecar(token => 'tok3n');
my $node;
{
	local $ENV{DAPR_API_TOKEN} = 'tok3n';
	$node = new_node('hostile', port => $dapr->port);
}
$node->safe_psql('postgres', q{
	CREATE ROLE mallory LOGIN CREATEDB;
	CREATE ROLE eve LOGIN CREATEDB;
	CREATE DATABASE appdb OWNER mallory;
});
$node->safe_psql('appdb', tasks_ddl() . 'ALTER TABLE tasks OWNER TO mallory; CREATE EXTENSION taskevents;');

sub as_role
{
	my ($role, $db, $sql) = @_;
	return $node->psql($db, $sql, extra_params => [ '-U', $role ]);
}

sub worker_pid
{
	return $node->safe_psql('postgres',
		"SELECT pid FROM pg_stat_activity WHERE backend_type = 'taskevents worker' AND datname = 'appdb'");
}

# A fresh worker, so that the database's settings apply to it.
sub restart_worker
{
	my $old = worker_pid();
	$node->safe_psql('postgres', "SELECT pg_terminate_backend($old)");
	wait_until('a new worker', sub { my $p = worker_pid(); $p ne '' && $p ne $old });
}

my $n = 0;

# Write a task as a superuser (whatever the database's settings say) and wait for its events.
sub deliver_one
{
	my ($what) = @_;
	$n++;
	local $ENV{PGOPTIONS} = '-c session_authorization=postgres -c role=none -c search_path=public '
	  . '-c default_transaction_read_only=off -c statement_timeout=0 -c lock_timeout=0 '
	  . '-c idle_in_transaction_session_timeout=0 -c exit_on_error=off';
	my $before = scalar @{ delivered_events($dapr) };
	$node->safe_psql('appdb', "INSERT INTO tasks (user_id, title) VALUES (gen_random_uuid(), '$what')");
	return wait_until("delivered: $what", sub { scalar @{ delivered_events($dapr) } >= $before + 2 }, 20);
}

ok(deliver_one('before'), 'delivery works');

# 1. The database owner shadows the operators and functions a worker
# statement could name, and puts its schema before pg_catalog.  Each runs
# ALTER ROLE ... SUPERUSER: it would succeed only if the worker ran it.
my ($ret, $out, $err) = as_role('mallory', 'appdb', q{
	CREATE SCHEMA evil;
	CREATE FUNCTION evil.escalate() RETURNS void LANGUAGE plpgsql AS $$
	BEGIN
		ALTER ROLE mallory SUPERUSER;
	EXCEPTION WHEN insufficient_privilege THEN NULL;
	END $$;
	CREATE FUNCTION evil.mul(numeric, integer) RETURNS numeric LANGUAGE plpgsql AS $$
	BEGIN PERFORM evil.escalate(); RETURN $1 OPERATOR(pg_catalog.*) $2::numeric; END $$;
	CREATE OPERATOR evil.* (LEFTARG = numeric, RIGHTARG = integer, FUNCTION = evil.mul);
	CREATE FUNCTION evil.gt(bigint, bigint) RETURNS boolean LANGUAGE plpgsql AS $$
	BEGIN PERFORM evil.escalate(); RETURN $1 OPERATOR(pg_catalog.>) $2; END $$;
	CREATE OPERATOR evil.> (LEFTARG = bigint, RIGHTARG = bigint, FUNCTION = evil.gt);
	CREATE FUNCTION evil.eq(text, text) RETURNS boolean LANGUAGE plpgsql AS $$
	BEGIN PERFORM evil.escalate(); RETURN $1 OPERATOR(pg_catalog.=) $2; END $$;
	CREATE OPERATOR evil.= (LEFTARG = text, RIGHTARG = text, FUNCTION = evil.eq);
	CREATE FUNCTION evil.le(timestamptz, timestamptz) RETURNS boolean LANGUAGE plpgsql AS $$
	BEGIN PERFORM evil.escalate(); RETURN $1 OPERATOR(pg_catalog.<=) $2; END $$;
	CREATE OPERATOR evil.<= (LEFTARG = timestamptz, RIGHTARG = timestamptz, FUNCTION = evil.le);
	CREATE FUNCTION evil.now() RETURNS timestamptz LANGUAGE plpgsql AS $$
	BEGIN PERFORM evil.escalate(); RETURN pg_catalog.now(); END $$;
	CREATE FUNCTION evil.octet_length(text) RETURNS integer LANGUAGE plpgsql AS $$
	BEGIN PERFORM evil.escalate(); RETURN pg_catalog.octet_length($1); END $$;
	GRANT USAGE ON SCHEMA evil TO PUBLIC;
	ALTER DATABASE appdb SET search_path = evil, pg_catalog, public;
});
is($ret, 0, 'the database owner sets its trap') or diag $err;
restart_worker();
$dapr->mode(mode => 'fail', count => 2, status => 500, code => 'ERR_PUBSUB_PUBLISH_MESSAGE');
ok(deliver_one('after the trap'), 'delivery goes on, retries included');
is($node->safe_psql('postgres', "SELECT rolsuper FROM pg_roles WHERE rolname = 'mallory'"), 'f',
	'the database owner did not become superuser through the worker');

# 2. The database owner sets what would stop or steer the worker: its
# identity, read-only transactions, tiny timeouts, errors that end the
# session, forced parallel and generic plans.
($ret, $out, $err) = as_role('mallory', 'appdb', q{
	ALTER DATABASE appdb SET default_transaction_read_only = on;
	ALTER DATABASE appdb SET statement_timeout = 1;
	ALTER DATABASE appdb SET lock_timeout = 1;
	ALTER DATABASE appdb SET idle_in_transaction_session_timeout = 1;
	ALTER DATABASE appdb SET default_transaction_isolation = 'serializable';
	ALTER DATABASE appdb SET plan_cache_mode = force_generic_plan;
	ALTER DATABASE appdb SET max_parallel_workers_per_gather = 4;
	ALTER DATABASE appdb SET jit_above_cost = 0;
	ALTER DATABASE appdb SET role = 'mallory';
	ALTER DATABASE appdb SET session_authorization = 'mallory';
	ALTER DATABASE appdb SET exit_on_error = on;
});
is($ret, 0, 'the database owner sets hostile defaults') or diag $err;
restart_worker();
ok(deliver_one('after hostile defaults'),
	'delivery goes on under the owner\'s settings (as mallory, the worker could not read its queue)');
is($node->safe_psql('postgres', "SELECT rolsuper FROM pg_roles WHERE rolname = 'mallory'"), 'f',
	'still no superuser');
$node->safe_psql('postgres', 'ALTER DATABASE appdb RESET ALL');

# 3. Database commands that stop a worker do so only for a role that may
# run them: others get their error and the worker is not disturbed.
my $pid = worker_pid();
my $log_offset = -s $node->logfile;
for my $cmd ('DROP DATABASE appdb', 'ALTER DATABASE appdb RENAME TO stolen',
	'ALTER DATABASE appdb SET TABLESPACE pg_default', 'CREATE DATABASE copied TEMPLATE appdb')
{
	($ret, $out, $err) = as_role('eve', 'postgres', $cmd);
	isnt($ret, 0, "a role without rights: $cmd fails");
	like($err, qr/must be owner|permission denied/, "... with its privilege error");
}
ok(deliver_one('after the failed commands'), 'delivery goes on');
is(worker_pid(), $pid, 'the same worker delivered: none of the commands stopped it');
ok(!$node->log_contains(qr/terminating background worker "taskevents worker"/, $log_offset),
	'no worker was terminated');

# 4. The API token from the server's environment is out of every backend's
# environment, yet the worker still sends it.
is($node->safe_psql('postgres', q{
	CREATE TEMP TABLE env (line text);
	COPY env FROM PROGRAM 'printenv DAPR_API_TOKEN; true';
	SELECT count(*) FROM env}), '0', 'DAPR_API_TOKEN is not in a backend\'s environment');
ok(deliver_one('with the token'), 'the worker still authenticates with it');
is(delivered_events($dapr)->[-1]{token}, 'tok3n', 'the token was sent');

$node->stop;
done_testing();
