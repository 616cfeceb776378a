# A delivery worker that keeps dying young (within 10 s of its start) is
# restarted later each time (2 s, 4 s, ... up to a minute), so a crash loop
# does not spin; it still comes back.  Lower bounds only: a restart can
# come later on a busy machine, never earlier.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Utils;
use Test::More;
use TaskEventsTest;

my $dapr = start_sidecar();
my $node = new_node('restarts', port => $dapr->port);
$node->safe_psql('postgres', tasks_ddl() . 'CREATE EXTENSION taskevents;');

sub worker
{
	return $node->safe_psql('postgres',
		"SELECT pid FROM pg_stat_activity WHERE backend_type = 'taskevents worker' AND datname = 'postgres'");
}

wait_until('a worker', sub { worker() ne '' });
for my $death (1 .. 2)
{
	my $pid = worker();
	my $killed = $node->safe_psql('postgres', "SELECT pg_terminate_backend($pid), extract(epoch FROM clock_timestamp())");
	$killed =~ s/^t\|//;
	wait_until("a worker after death $death", sub { my $p = worker(); $p ne '' && $p ne $pid }, 30);
	my $gap = $node->safe_psql('postgres', qq{
		SELECT extract(epoch FROM backend_start) - $killed FROM pg_stat_activity
		 WHERE backend_type = 'taskevents worker' AND datname = 'postgres'});
	cmp_ok($gap, '>=', 2**$death - 0.5, "after young death $death the worker is restarted no sooner than " . 2**$death . ' s');
}
my $task = $node->safe_psql('postgres', "INSERT INTO tasks (user_id, title) VALUES (gen_random_uuid(), 'after') RETURNING id");
wait_drained($node, 'the restarted worker delivers');

$node->stop;
done_testing();
