# Nothing queued is lost when the worker is killed, the server crashes or
# shuts down immediately with requests in flight; an event sent twice keeps
# its id.  SIGTERM ends the worker promptly, and it is started again.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Utils;
use Test::More;
use JSON::PP;
use Time::HiRes qw(time);
use TaskEventsTest;

my $dapr = start_sidecar();
my $node = new_node('crash', port => $dapr->port, conf => "synchronous_commit = off\nrestart_after_crash = on\n");
$node->safe_psql('postgres', tasks_ddl() . 'CREATE EXTENSION taskevents;');

# Every task written here is inserted once: it owes task.created then
# sync.task.  Check that each arrived (first arrivals in that order), and
# that an event received twice is the same event under the same id.
sub check_all_delivered
{
	my ($what) = @_;
	wait_drained($node, "$what: outbox drained", 60);
	my (%body, %types, $conflicts);
	for my $r (@{ delivered_events($dapr) })
	{
		my $e = $r->{event};
		my $json = JSON::PP->new->canonical->encode($e);
		if (exists $body{ $e->{id} })
		{
			$conflicts++ if $body{ $e->{id} } ne $json;
			next;
		}
		$body{ $e->{id} } = $json;
		push @{ $types{ $e->{subject} } }, $e->{type};
	}
	my @tasks = split /\n/, $node->safe_psql('postgres', 'SELECT id FROM tasks');
	my @wrong = grep { join(',', @{ $types{$_} // [] }) ne 'task.created,sync.task' } @tasks;
	is(scalar @wrong, 0, "$what: every task's events arrived, task.created before sync.task")
	  or diag("e.g. $wrong[0]: " . join(',', @{ $types{ $wrong[0] } // [] }));
	is($conflicts // 0, 0, "$what: a duplicate is the same event with the same id");
}

# kill -9 of the worker while requests are in flight: the server restarts
# (crash recovery), the worker comes back and finishes.
$dapr->mode(mode => 'slow', ms => 100);
$node->safe_psql('postgres',
	"INSERT INTO tasks (user_id, title) SELECT gen_random_uuid(), 'k' || i FROM generate_series(1, 300) i");
wait_until('some delivered', sub { scalar @{ delivered_events($dapr) } >= 20 });
my $pid = $node->safe_psql('postgres', 'SELECT pid FROM taskevents.status');
ok(kill('KILL', $pid), 'killed the worker with SIGKILL');
$dapr->mode(mode => 'ok');
$node->poll_query_until('postgres', 'SELECT pid IS NOT NULL AND pid <> ' . $pid . ' FROM taskevents.status')
  or die 'worker did not come back';
check_all_delivered('after kill -9 of the worker');

# Immediate shutdown (a server crash) with requests in flight.
# (The count is taken before the INSERT: taken after it, on a busy machine,
# it could already include nearly all of the 600 events and the wait below
# would never end.)
$dapr->mode(mode => 'slow', ms => 100);
my $before = scalar @{ delivered_events($dapr) };
$node->safe_psql('postgres',
	"INSERT INTO tasks (user_id, title) SELECT gen_random_uuid(), 'i' || i FROM generate_series(1, 300) i");
wait_until('some delivered', sub { scalar @{ delivered_events($dapr) } >= $before + 20 });
$node->stop('immediate');
$dapr->mode(mode => 'ok');
$node->start;
check_all_delivered('after an immediate shutdown');

# SIGTERM with requests hanging: the worker ends within about a second and is restarted.
$dapr->mode(mode => 'hang');
$node->safe_psql('postgres', "ALTER SYSTEM SET taskevents.timeout = '60s'; SELECT pg_reload_conf();");
sleep 1;
$node->safe_psql('postgres',
	"INSERT INTO tasks (user_id, title) SELECT gen_random_uuid(), 't' || i FROM generate_series(1, 50) i");
wait_until('requests hanging', sub { $dapr->stats->{requests} > $before });
$pid = $node->safe_psql('postgres', 'SELECT pid FROM taskevents.status');
my $t0 = time;
$node->safe_psql('postgres', "SELECT pg_terminate_backend($pid)");
wait_until('worker gone', sub {
	$node->safe_psql('postgres', "SELECT count(*) FROM pg_stat_activity WHERE pid = $pid") eq '0' }, 10);
my $took = time - $t0;
note sprintf('worker exited %.2f s after SIGTERM with requests in flight', $took);
cmp_ok($took, '<', 5, 'SIGTERM ends the worker despite hanging requests');
$node->safe_psql('postgres', "ALTER SYSTEM RESET taskevents.timeout; SELECT pg_reload_conf();");
$dapr->mode(mode => 'ok');
$node->poll_query_until('postgres', "SELECT pid IS NOT NULL AND pid <> $pid FROM taskevents.status")
  or die 'worker not restarted';
check_all_delivered('after SIGTERM');

unlike(slurp_file($node->logfile), qr/ERROR:  xlog flush request/,
	'the worker never asks to flush WAL past what was written');
$node->stop;
done_testing();
