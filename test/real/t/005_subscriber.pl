# The consumer's side through Dapr: a consumer team's app behind a second
# daprd of its own, with declarative subscriptions on the three topics and
# routing rules on the CloudEvent type (test/real/subscriber/), receives
# every event with our attributes intact, per task in commit order, and
# daprd honours the app's answers of Dapr's status contract: RETRY (the
# event comes again, and the task's later events wait behind it), DROP (it
# does not), SUCCESS.  Each delivered event is checked against schema/.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin, "$FindBin::RealBin/../../t";
use PostgreSQL::Test::Utils;
use Test::More;
use TaskEventsTest;
use RealPipeline;

my $kafka = start_kafka();
my $daprd = start_daprd(kafka => $kafka);
my $sub = start_subscriber($kafka);
my $node = real_node('real_subscriber', $daprd);
$node->safe_psql('postgres', tasks_ddl() . 'CREATE EXTENSION taskevents;');

# Five lifecycles, one task whose events the app first refuses (RETRY), one
# whose task.* events it drops (DROP).
$node->safe_psql('postgres', lifecycle_sql('subs', 5) . q{
	INSERT INTO tasks (id, user_id, title) VALUES ('0000aaaa-0000-4000-8000-000000000001', gen_random_uuid(), 'retry me [retry]');
	UPDATE tasks SET completed = true WHERE id = '0000aaaa-0000-4000-8000-000000000001';
	INSERT INTO tasks (id, user_id, title) VALUES ('0000aaaa-0000-4000-8000-000000000002', gen_random_uuid(), 'drop me [drop]');
	DELETE FROM tasks WHERE id = '0000aaaa-0000-4000-8000-000000000002';
});
wait_drained($node, 'the outbox drained');
my $events = sent_events($node);
is(scalar @$events, 5 * RealPipeline::LIFECYCLE_EVENTS + 8, 'every event sent');

my %sent = map { $_->{json}{id} => $_ } @$events;
# Until every event got its final answer (SUCCESS or DROP; a RETRY is
# followed by another delivery).
wait_until('the app answered every event for good', sub {
	my %done = map { ($_->{event} ? $_->{event}{id} : '') => 1 } grep { $_->{status} ne 'RETRY' } @{ $sub->deliveries };
	!grep { !$done{$_} } keys %sent;
}, 90);

my $d = $sub->deliveries;
my (%by_id, @problems);
for my $r (@$d)
{
	my $e = $r->{event};
	my $s = $e && $sent{ $e->{id} };
	if (!$s)
	{
		push @problems, "a delivery to $r->{route} of an event never sent: " . substr($r->{body}, 0, 100);
		next;
	}
	push @{ $by_id{ $e->{id} } }, $r;
	my $j = $s->{json};
	for my $a (qw(specversion id source type time subject datacontenttype traceid))
	{
		push @problems, "$j->{type} $j->{id}: $a " . ($e->{$a} // 'absent') . ", sent $j->{$a}"
		  if ($e->{$a} // '') ne $j->{$a};
	}
	push @problems, "$j->{type} $j->{id}: traceparent " . ($e->{traceparent} // 'absent') . ", sent " . ($j->{traceparent} // 'none')
	  if ($e->{traceparent} // '') ne ($j->{traceparent} // '');
	push @problems, "$j->{type} $j->{id}: data differs" unless RealPipeline::_same($e->{data}, $j->{data});
	push @problems, "$j->{type} $j->{id}: topic attribute " . ($e->{topic} // 'absent') if ($e->{topic} // '') ne $s->{topic};
	my $route = { 'task.completed' => '/tasks/completed', 'task.deleted' => '/tasks/deleted',
		'sync.task' => '/sync', 'reminder.cancelled' => '/reminders/cancelled' }->{ $j->{type} }
	  // ($j->{type} =~ /^task\./ ? '/tasks' : '/reminders');
	push @problems, "$j->{type} $j->{id}: routed to $r->{route}, not $route" if $r->{route} ne $route;
	push @problems, "$j->{type} $j->{id}: content type " . ($r->{content_type} // 'none')
	  unless ($r->{content_type} // '') =~ m{^application/cloudevents\+json};
}
diag(join("\n", grep { defined } @problems[ 0 .. 19 ])) if @problems;
ok(!@problems, 'every event reached the app with our attributes and data, routed on its type');

my @retried = grep { @{ $by_id{$_} } > 1 } keys %by_id;
my @want_retry = map { $_->{json}{id} } grep { ($_->{json}{data}{title} // '') =~ /\[retry\]/ } @$events;
is_deeply([ sort @retried ], [ sort @want_retry ], 'RETRY: those events came again, and no other event twice');
ok(!grep({ $_->{status} ne 'SUCCESS' } map { $by_id{$_}[-1] } @want_retry), 'RETRY: their second delivery succeeded');
my @dropped = grep { $_->{status} eq 'DROP' } @$d;
is(scalar @dropped, 2, 'DROP: the two task.* events of the dropped task were delivered once, and dropped');

# Per task and topic, first deliveries in commit order (the retried event
# holds its task's later events back until it succeeds).
my (%lane, @order);
my %pos;
$pos{ $d->[$_]{event}{id} } //= $_ for grep { $d->[$_]{event} } 0 .. $#$d;
for my $e (@$events)
{
	push @{ $lane{"$e->{topic} $e->{json}{subject}"} }, $e;
}
for my $k (sort keys %lane)
{
	my @l = @{ $lane{$k} };
	for my $i (1 .. $#l)
	{
		push @order, "$k: $l[$i]{type} delivered before $l[$i-1]{type}"
		  if $pos{ $l[$i]{json}{id} } < $pos{ $l[$i - 1]{json}{id} };
	}
}
my %last;
$last{ $d->[$_]{event}{id} } = $_ for grep { $d->[$_]{event} } 0 .. $#$d;
for my $id (@want_retry)
{
	my $e = $sent{$id};
	my @l = @{ $lane{"$e->{topic} $e->{json}{subject}"} };
	shift @l while @l && $l[0] != $e;
	shift @l;
	for my $later (@l)
	{
		push @order, "$e->{type} $id: the task's later $later->{type} arrived before its retry succeeded"
		  if $pos{ $later->{json}{id} } < $last{$id};
	}
}
diag(join("\n", @order)) if @order;
ok(!@order, 'each task\'s events reached the app in commit order, per topic, later ones behind a retry');

$node->stop;
done_testing();
