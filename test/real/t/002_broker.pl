# Kafka stopped (controlled shutdown) or killed (SIGKILL) while events stream
# through a real daprd, per request and in bulk (the default with daprd
# 1.18): daprd answers 500 or holds a request while its producer retries;
# the worker waits for each answer (a request given up could still reach
# Kafka, and its retry would be a copy), retries daprd's failures with
# backoff, writers never wait, and once the broker is back every event
# reaches Kafka in per-task order, once after a controlled stop (a killed
# broker may keep records it never acknowledged, which are then sent again:
# counted, not failed).
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
# No attempt limit: the broker is away for longer than 20 short backoffs.
my $node = real_node('real_broker', $daprd, conf => "taskevents.max_attempts = 0\n");
$node->safe_psql('postgres', tasks_ddl() . 'CREATE EXTENSION taskevents;');
sub status { $node->safe_psql('postgres', "SELECT $_[0] FROM taskevents.status") }

$node->safe_psql('postgres', lifecycle_sql('warm', 2));
wait_records($consumer, sent_events($node), 'before the outage: delivered');

my ($n, $copies) = (0, 0);
for my $mode ('per request', 'bulk')
{
	$node->safe_psql('postgres', 'ALTER SYSTEM SET taskevents.bulk = ' . ($mode eq 'bulk' ? 'auto' : 'off')
		  . '; SELECT pg_reload_conf();');
	for my $fault ('stopped', 'killed')
	{
		my $what = "$mode, Kafka $fault";
		my $tag = 'k' . $n++;
		my ($published, $retried) = (status('published'), status('retried'));
		my $from = $daprd->log_lines;
		my $w = writer_start($node, lifecycle_sql("${tag}a", 60));
		wait_until("$what: delivery under way", sub { status('published') > $published + 40 }, 60);
		if ($fault eq 'stopped') { $kafka->stop } else { $kafka->kill }
		my $took = writer($node, lifecycle_sql("${tag}b", 10));
		$w->finish("$what: the writer under way");
		note sprintf('%s: 80 writes with Kafka down took %.2f s', $what, $took);
		wait_until("$what: daprd fails publishes", sub {
			grep { $_->[0] == 500 } @{ daprd_answers($daprd, $from) } }, 60);
		is(status('worker_state'), 'delivering', "$what: the worker keeps delivering (daprd is up)");
		is(status('sidecar_reachable'), 't', "$what: the sidecar counts as reachable");

		my $t0 = time;
		$kafka->start;
		$kafka->wait_ready;
		note sprintf('%s: the broker took %.1f s to take requests again', $what, time - $t0);
		wait_drained($node, "$what: the outbox drained after Kafka came back", 180);
		note sprintf('%s: drained %.1f s after the broker was restarted', $what, time - $t0);
		my @ms = sort { $a <=> $b } map { $_->[1] } grep { $_->[2] =~ m{/publish/} } @{ daprd_answers($daprd, $from) };
		note sprintf('%s: daprd answered %d publish requests in %d..%d ms; the worker retried %d times; last error: %s',
			$what, scalar @ms, $ms[0], $ms[-1], status('retried') - $retried, status('last_error'));
		is($node->safe_psql('postgres', 'SELECT count(*) FROM taskevents.dead_letters'), '0', "$what: no dead letters");
		my $events = sent_events($node);
		wait_records($consumer, $events, "$what: every event read from Kafka");
		# copies so far, less those of the faults before
		my $dups = check_records($consumer, $events, $what, duplicates_allowed => 1) - $copies;
		$copies += $dups;
		# A broker killed may keep records it never acknowledged: daprd's
		# producer sends them again, or daprd answers 500 and the worker does.
		if ($fault eq 'stopped') { is($dups, 0, "$what: no event twice in Kafka") }
		else { note "$what: $dups records twice in Kafka (written by the broker, never acknowledged)" }
	}
}

$node->stop;
done_testing();
