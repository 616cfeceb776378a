# The real daprd restarted (SIGTERM), killed (SIGKILL) and frozen (SIGSTOP)
# mid-stream.  Restarted or killed: the worker pauses (refused is no event's
# fault), probes readiness and resumes within seconds of daprd's return.
# Frozen: the requests in flight are waited for, not sent again, since a
# thawed daprd publishes what it had accepted.  Writers never wait, every
# event reaches Kafka in per-task order, and only a killed daprd (which may
# have published a request it never answered) can leave copies.
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

sub status { $node->safe_psql('postgres', "SELECT $_[0] FROM taskevents.status") }

my $copies = 0;
for my $fault ('restarted', 'killed', 'frozen')
{
	# A writer in the background; once its events are being published,
	# the fault; then more writes, which must wait in the outbox.
	my $tag = substr($fault, 0, 1);
	my $published = status('published');
	my $w = writer_start($node, lifecycle_sql("${tag}1", 40));
	wait_until("$fault: delivery under way", sub { status('published') > $published + 20 }, 60);
	my $t0 = time;
	if ($fault eq 'restarted') { $daprd->stop }
	elsif ($fault eq 'killed') { $daprd->kill }
	else { $daprd->freeze }
	my $took = writer($node, lifecycle_sql("${tag}2", 20));
	pass("$fault: 160 more changes written while daprd is $fault");
	note sprintf('%s: 160 writes with daprd %s took %.2f s', $fault, $fault, $took);
	$w->finish("$fault: the writer under way when daprd was $fault");
	cmp_ok($node->safe_psql('postgres', 'SELECT count(*) FROM taskevents.outbox'), '>', 0,
		"$fault: changes wait in the outbox");
	if ($fault eq 'frozen')
	{
		wait_until("$fault: the worker says it waits for daprd's answers", sub {
			status('last_error') =~ /has not answered \d+ requests for 10 s; waiting for its answers/ }, 30);
		is(status('worker_state'), 'delivering', "$fault: the worker is not paused: it waits");
	}
	else
	{
		wait_until("$fault: the worker paused", sub { status('worker_state') =~ /^paused/ }, 30);
		note sprintf('%s: paused %.1f s after the fault', $fault, time - $t0);
		is(status('sidecar_reachable'), 'f', "$fault: status says the sidecar is unreachable");
		sleep 3;    # an outage of a few seconds: attempts must not be charged meanwhile
	}

	$t0 = time;
	if ($fault eq 'frozen') { $daprd->thaw } else { $daprd->start }
	wait_until("$fault: delivering again", sub { status('worker_state') eq 'delivering' }, 30);
	note sprintf('%s: delivering %.1f s after daprd was back', $fault, time - $t0);
	wait_drained($node, "$fault: the outbox drained", 60);
	note sprintf('%s: drained %.1f s after daprd was back', $fault, time - $t0);
	is($node->safe_psql('postgres', 'SELECT count(*) FROM taskevents.dead_letters'), '0',
		"$fault: no dead letters");
	my $events = sent_events($node);
	wait_records($consumer, $events, "$fault: every event read from Kafka");
	# copies so far, less those of the faults before
	my $dups = check_records($consumer, $events, "daprd $fault", duplicates_allowed => 1) - $copies;
	$copies += $dups;
	if ($fault eq 'killed') { note "$fault: $dups duplicate records" }
	else { is($dups, 0, "$fault: no event twice in Kafka") }
}
ok($node->log_contains(qr/unreachable .* delivery paused/), 'the pause is logged');
ok($node->log_contains(qr/is back after \d+ s; delivery resumed/), 'the return is logged');
ok($node->log_contains(qr/publishing in bulk: the Dapr sidecar at \S+ has the bulk publish API/),
	'the default publishes in bulk through daprd 1.18, and says so');

$node->stop;
done_testing();
