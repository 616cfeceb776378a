# Beyond one broker: a 3-node KRaft cluster (topics with replication factor
# 3 and min.insync.replicas 2, the component pointed at all three brokers,
# producerRequiredAcks all).  Writers keep a stream of task lifecycles going
# while the broker leading the busiest partition of task-events is stopped
# (SIGTERM: controlled shutdown; SIGKILL: gone at once), more is written while
# it is away, and it comes back: nothing is lost, each task's events stay in
# commit order, per request and in bulk.  Copies of an id are counted and
# shown (at-least-once).
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin, "$FindBin::RealBin/../../t";
use List::Util qw(max);
use PostgreSQL::Test::Utils;
use Test::More;
use POSIX ();
use Time::HiRes qw(time);
use TaskEventsTest;
use RealPipeline;

my $kafka = start_kafka(brokers => 3, replicas => 3, min_insync => 2);
my $consumer = start_consumer($kafka);
# debug: daprd also logs what its Kafka client (sarama) retries, and why
my $daprd = start_daprd(kafka => $kafka, log_level => 'debug');
like(slurp_file($daprd->component_file), qr/^\s+value: "127\.0\.0\.1:\d+,127\.0\.0\.1:\d+,127\.0\.0\.1:\d+"$/m,
	'the component lists the three brokers');
my $parts = $kafka->partitions('task-events');
is_deeply([ map { scalar @{ $parts->{$_}[1] } } sort keys %$parts ], [ 3, 3, 3 ],
	'task-events: 3 partitions, 3 replicas in sync each');

my $node = real_node('real_cluster', $daprd);
$node->safe_psql('postgres', tasks_ddl() . 'CREATE EXTENSION taskevents;');
$node->safe_psql('postgres', lifecycle_sql('warm', 2));
wait_records($consumer, sent_events($node), 'warm-up: delivered through the cluster');

sub published { $node->safe_psql('postgres', 'SELECT published FROM taskevents.status') }

# The lifecycle's statements with a pause after each: a steady stream.
sub paced { join('', map { "$_\nSELECT pg_sleep(0.02);\n" } split /\n/, $_[0]) }

my $dups = 0;
my %dup_seen;
for my $round ([ 'per request', 'TERM' ], [ 'bulk', 'TERM' ], [ 'per request', 'KILL' ], [ 'bulk', 'KILL' ])
{
	my ($mode, $sig) = @$round;
	my $what = "$mode, leader SIG$sig";
	my $tag = ($mode eq 'bulk' ? 'b' : 'r') . lc(substr($sig, 0, 1));
	$node->safe_psql('postgres', 'ALTER SYSTEM SET taskevents.bulk = ' . ($mode eq 'bulk' ? 'auto' : 'off')
		  . '; SELECT pg_reload_conf();');
	my $from = $daprd->log_lines;
	my $published = published();

	my $w = writer_start($node, paced(lifecycle_sql("${tag}1", 30)));
	wait_until("$what: delivery under way", sub { published() > $published + 30 }, 60);
	my %n;
	$n{ $_->{partition} }++ for grep { $_->{topic} eq 'task-events' } @{ $consumer->records };
	my ($part) = sort { $n{$b} <=> $n{$a} } keys %n;
	my $leader = $kafka->partitions('task-events')->{$part}[0];
	my $broker = $kafka->broker($leader);
	my $t_stop = time;
	if ($sig eq 'TERM') { $broker->stop } else { $broker->kill }
	my $down = time - $t_stop;
	my $took = writer($node, lifecycle_sql("${tag}2", 10));
	pass("$what: 80 changes written with broker $leader away");
	$w->finish("$what: the stream under way when broker $leader (leader of task-events/$part) stopped");
	note sprintf('%s: broker %d (leader of task-events/%d) %s in %.1f s; 80 writes meanwhile took %.2f s',
		$what, $leader, $part, $sig eq 'TERM' ? 'shut down' : 'killed', $down, $took);

	my $t_back = time;
	$w = writer_start($node, paced(lifecycle_sql("${tag}3", 10)));
	$broker->start;
	$kafka->wait_ready;
	note sprintf('%s: broker %d back in sync on every partition %.1f s after its start', $what, $leader,
		time - $t_back);
	$w->finish("$what: the stream while broker $leader came back");
	wait_drained($node, "$what: the outbox drained", 120);
	is($node->safe_psql('postgres', 'SELECT count(*) FROM taskevents.dead_letters'), '0', "$what: no dead letters");
	my $events = sent_events($node);
	wait_records($consumer, $events, "$what: every event read from Kafka", 120);
	my $total = check_records($consumer, $events, "cluster, $what", duplicates_allowed => 1);

	# The figures.  The leader change as daprd's Kafka client (sarama) saw
	# it: from the stop to the moment it sent task-events/$part to another
	# broker; the longest pause of that partition at the consumer; daprd's
	# slowest publish and its 5xx answers (which the worker retries).
	my @lines = (split /\n/, slurp_file($daprd->log))[ $from .. $daprd->log_lines - 1 ];
	my ($moved, $retries) = (undef, 0);
	for (@lines)
	{
		$retries++ if /msg="producer\/leader\/[^ ]+ state change to \[retrying/;
		$moved //= _seconds($1) - ($t_stop - POSIX::floor($t_stop / 86400) * 86400)
		  if /^time="[^T]+T([\d:.]+)Z".*msg="producer\/leader\/task-events\/$part selected broker (\d+)/
		  && $2 != $leader;
	}
	ok(defined $moved, "$what: daprd's Kafka client moved task-events/$part to another broker");
	my @at = sort { $a <=> $b } map { $_->{received_us} / 1e6 }
	  grep { $_->{topic} eq 'task-events' && $_->{partition} == $part } @{ $consumer->records };
	my $gap = 0;
	for my $i (1 .. $#at)
	{
		$gap = max($gap, $at[$i] - $at[ $i - 1 ]) if $at[$i] > $t_stop - 1 && $at[ $i - 1 ] < $t_back;
	}
	my @answers = grep { $_->[2] =~ m{/publish/} } @{ daprd_answers($daprd, $from) };
	my @fail = grep { $_->[0] >= 500 } @answers;
	# Copies of an id first seen in this round, and where they come from:
	# a request in flight when the leadership moved may have been appended
	# and replicated without a good answer (SIGTERM: the old leader answers
	# NOT_LEADER_OR_FOLLOWER to a produce still waiting for acks=all;
	# SIGKILL: the connection dies), and sarama re-sends it to the new
	# leader (Dapr's component has no idempotent producer); or sarama's
	# retries against a dead leader run out first, daprd answers 500 and
	# the worker sends it again.
	my %copies;
	push @{ $copies{ $_->{ce}{id} } }, $_ for grep { $_->{ce} } @{ $consumer->records };
	my @dup = grep { @{ $copies{$_} } > 1 && !$dup_seen{$_}++ } sort keys %copies;
	my %retried = map { $_ => 1 } join("\n", @lines) =~ m{producer/leader/([\w.-]+/\d+) state change to \[retrying}g;
	# and each copy comes before the task's next event on that topic
	my (%next, %lane);
	for my $e (@$events)
	{
		my $k = "$e->{topic} $e->{json}{subject}";
		$next{ $lane{$k} } = $e->{json}{id} if defined $lane{$k};
		$lane{$k} = $e->{json}{id};
	}
	my (@unexplained, @late);
	for my $id (@dup)
	{
		my @c = @{ $copies{$id} };
		my $at = "$c[0]{topic}/$c[0]{partition}";
		push @unexplained, $id unless $retried{$at};
		my $n = $next{$id};
		push @late, $id if $n && $copies{$n} && $copies{$n}[0]{offset} < max(map { $_->{offset} } @c);
		note sprintf('%s: %s %s (task %s) %d times at %s offsets %s, produced %s ms apart', $what,
			$c[0]{ce}{type}, $id, $c[0]{ce}{subject}, scalar @c, $at, join(',', map { $_->{offset} } @c),
			join(',', map { $_->{timestamp} - $c[0]{timestamp} } @c[ 1 .. $#c ]));
	}
	my $new = $total - $dups;
	note sprintf('%s: sarama sent task-events/%d to the new leader %.2f s after the stop; the partition paused'
		  . ' at most %.2f s at the consumer; daprd: %d publish requests, slowest %d ms, %d answered 5xx;'
		  . ' sarama retried a partition %d times; %d duplicates',
		$what, $part, $moved // -1, $gap, scalar @answers, max(0, map { $_->[1] } @answers), scalar @fail,
		$retries, $new);
	is(scalar @unexplained, 0, "$what: $new duplicates, each on a partition sarama re-sent to after a broker"
		  . " error in this round") or diag("unexplained copies: @unexplained");
	is(scalar @late, 0, "$what: no copy comes after the task's next event") or diag("late copies: @late");
	$dups = $total;
}

$node->stop;
done_testing();

# Seconds since midnight (UTC) of an hh:mm:ss.fraction.
sub _seconds
{
	my ($h, $m, $s) = split /:/, $_[0];
	return $h * 3600 + $m * 60 + $s;
}
