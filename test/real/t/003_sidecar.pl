# The real daprd killed mid-stream and restarted, then frozen (SIGSTOP) and
# thawed: the worker pauses (refused / timed out is no event's fault),
# probes readiness, resumes within seconds of daprd's return, writers never
# wait, and every event reaches Kafka in per-task order.  A frozen daprd
# publishes what it had accepted once thawed, so copies of some events may
# reach Kafka twice, with the same id.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin, "$FindBin::RealBin/../../t";
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);
use TaskEventsTest;
use RealPipeline;

my $kafka = start_kafka();
my $consumer = start_consumer($kafka);
my $daprd = start_daprd(kafka => $kafka);
my $node = real_node('real_sidecar', $daprd);
$node->safe_psql('postgres', tasks_ddl() . 'CREATE EXTENSION taskevents;');

# Wait until the consumer has read more than $n records.
sub records_over
{
	my ($n, $what) = @_;
	wait_until($what, sub { scalar @{ $consumer->records } > $n }, 60);
}

sub state { $node->safe_psql('postgres', 'SELECT worker_state FROM taskevents.status') }

for my $fault ('killed', 'frozen')
{
	my $before = scalar @{ $consumer->records };
	my $w = writer_start($node, lifecycle_sql($fault, 60));
	records_over($before + 20, "$fault: delivery under way");
	if ($fault eq 'killed') { $daprd->kill } else { $daprd->freeze }
	my $took = $w->finish("$fault: the writer, while daprd is $fault");
	note sprintf('%s: 480 writes took %.2f s', $fault, $took);
	my $t0 = time;
	wait_until("$fault: the worker paused", sub { state() =~ /^paused/ }, 30);
	note sprintf('%s: paused %.1f s after the fault', $fault, time - $t0);
	is($node->safe_psql('postgres', 'SELECT sidecar_reachable FROM taskevents.status'), 'f',
		"$fault: status says the sidecar is unreachable");
	cmp_ok($node->safe_psql('postgres', 'SELECT count(*) FROM taskevents.outbox'), '>', 0,
		"$fault: changes wait in the outbox");
	sleep 3;    # an outage of a few seconds: attempts must not be charged meanwhile

	$t0 = time;
	if ($fault eq 'killed') { $daprd->start } else { $daprd->thaw }
	wait_until("$fault: delivering again", sub { state() eq 'delivering' }, 10);
	note sprintf('%s: delivering %.1f s after daprd was back', $fault, time - $t0);
	wait_drained($node, "$fault: the outbox drained", 60);
	note sprintf('%s: drained %.1f s after daprd was back', $fault, time - $t0);
	is($node->safe_psql('postgres', 'SELECT count(*) FROM taskevents.dead_letters'), '0',
		"$fault: no dead letters");
	my $events = sent_events($node);
	wait_records($consumer, $events, "$fault: every event read from Kafka");
	my $dups = check_records($consumer, $events, "daprd $fault", duplicates_allowed => 1);
	note "$fault: $dups duplicate records";
}
ok($node->log_contains(qr/unreachable .* delivery paused/), 'the pause is logged');
ok($node->log_contains(qr/is back after \d+ s; delivery resumed/), 'the return is logged');

$node->stop;
done_testing();
