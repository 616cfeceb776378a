# Kafka stopped for a while, behind a real daprd: daprd keeps answering, 500
# ERR_PUBSUB_PUBLISH_MESSAGE after about a second per request; the worker
# retries with backoff (not a sidecar outage: daprd is up), writers never
# wait, and once the broker is back every event reaches Kafka in per-task
# order, per request and in bulk.
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
# A 5 s request timeout: daprd's answers take up to 2.5 s while the broker is
# down, and a round whose every request times out is a pause, not a retry.
my $node = real_node('real_broker', $daprd,
	conf => "taskevents.max_attempts = 0\ntaskevents.timeout = '5s'\n");
$node->safe_psql('postgres', tasks_ddl() . 'CREATE EXTENSION taskevents;');

$node->safe_psql('postgres', lifecycle_sql('warm', 2));
wait_records($consumer, sent_events($node), 'before the outage: delivered');

for my $mode ('per request', 'bulk')
{
	my $tag = $mode eq 'bulk' ? 'bulkdown' : 'down';
	if ($mode eq 'bulk')
	{
		$node->safe_psql('postgres', 'ALTER SYSTEM SET taskevents.bulk = on; SELECT pg_reload_conf();');
	}
	my $retried = $node->safe_psql('postgres', 'SELECT retried FROM taskevents.status');
	my $from = $daprd->log_lines;
	$kafka->stop;

	my $took = writer($node, lifecycle_sql($tag, 10));
	pass("$mode: the writer committed 80 changes with Kafka down");
	note sprintf('%s: 80 writes with Kafka down took %.2f s', $mode, $took);

	wait_until("$mode: the worker retries daprd's answers", sub {
		$node->safe_psql('postgres', 'SELECT retried FROM taskevents.status') > $retried + 20 });
	my ($state, $reachable, $error) = split /\|/, $node->safe_psql('postgres',
		'SELECT worker_state, sidecar_reachable, last_error FROM taskevents.status');
	is($state, 'delivering', "$mode: the worker keeps delivering (daprd is up)");
	is($reachable, 't', "$mode: the sidecar counts as reachable");
	like($error, qr/^HTTP 500 (ERR_PUBSUB_PUBLISH_MESSAGE|bulk entry failed): .*(run out of available brokers|connection refused|circuit breaker is open)/,
		"$mode: last error is daprd's publish error (broker unreachable, or sarama's circuit breaker open)");
	note "$mode: last error: $error";
	my @answers = grep { $_->[2] =~ m{/publish/} } @{ daprd_answers($daprd, $from) };
	my @fail = grep { $_->[0] == 500 } @answers;
	cmp_ok(scalar @fail, '>', 0, "$mode: daprd answered 500 while Kafka was down");
	my @ms = sort { $a <=> $b } map { $_->[1] } @fail;
	note sprintf('%s: daprd answered %d publish requests with 500 in %d..%d ms (median %d ms)',
		$mode, scalar @ms, $ms[0], $ms[-1], $ms[ $#ms / 2 ]) if @ms;
	is($node->safe_psql('postgres', 'SELECT count(*) FROM taskevents.dead_letters'), '0',
		"$mode: no dead letters");

	my $t0 = time;
	$kafka->start;
	$kafka->wait_ready;
	note sprintf('%s: the broker took %.1f s to take requests again', $mode, time - $t0);
	wait_drained($node, "$mode: the outbox drained after Kafka came back", 120);
	note sprintf('%s: drained %.1f s after the broker was restarted', $mode, time - $t0);
	my $events = sent_events($node);
	wait_records($consumer, $events, "$mode: every event read from Kafka");
	my $dups = check_records($consumer, $events, "$mode, Kafka stopped and restarted", duplicates_allowed => 1);
	note "$mode: $dups duplicate records (re-sent after a request timed out)";
}

$node->stop;
done_testing();
