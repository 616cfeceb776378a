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

sub published { $node->safe_psql('postgres', 'SELECT published FROM taskevents.status') }
sub state { $node->safe_psql('postgres', 'SELECT worker_state FROM taskevents.status') }

for my $fault ('killed', 'frozen')
{
	# A writer in the background; once its events are being published,
	# the fault; then more writes, which must wait in the outbox.
	my $tag = substr($fault, 0, 1);
	my $published = published();
	my $w = writer_start($node, lifecycle_sql("${tag}1", 40));
	wait_until("$fault: delivery under way", sub { published() > $published + 20 }, 60);
	if ($fault eq 'killed') { $daprd->kill } else { $daprd->freeze }
	my $took = writer($node, lifecycle_sql("${tag}2", 20));
	pass("$fault: 160 more changes written while daprd is $fault");
	note sprintf('%s: 160 writes with daprd %s took %.2f s', $fault, $fault, $took);
	$w->finish("$fault: the writer under way when daprd was $fault");
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
