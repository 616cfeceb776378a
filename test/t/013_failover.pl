# Failover consistency (SPEC §10): taskevents.standby_slots names physical
# replication slots whose standbys must have flushed a commit before its
# events are published.  Without it an event goes out once its commit is
# flushed locally, so a promoted standby can lack a change whose events
# consumers already saw; with it, never.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use JSON::PP;
use Time::HiRes qw(usleep);
use TaskEventsTest;

my $waiting = 'waiting for taskevents.standby_slots';

# A primary (delivering to the sidecar) and a streaming standby that uses
# the physical slot "<name>_slot".  The standby is built before anything
# below changes the primary's settings, so it starts with the defaults.
sub new_pair
{
	my ($name, $dapr) = @_;
	my $primary = new_node("${name}_primary", port => $dapr->port, init => { allows_streaming => 1 });
	$primary->safe_psql('postgres', tasks_ddl() . 'CREATE EXTENSION taskevents;'
		  . "SELECT pg_create_physical_replication_slot('${name}_slot');");
	$primary->backup("${name}_backup");
	my $standby = PostgreSQL::Test::Cluster->new("${name}_standby");
	$standby->init_from_backup($primary, "${name}_backup", has_streaming => 1);
	$standby->append_conf('postgresql.conf', "primary_slot_name = '${name}_slot'");
	$standby->start;
	$primary->wait_for_catchup($standby);
	return ($primary, $standby);
}

# Change settings on a node and wait until its worker has read them:
# taskevents.enabled goes off with them, and the worker says "disabled".
sub set_and_disable
{
	my ($node, $sql) = @_;
	$node->safe_psql('postgres', "$sql ALTER SYSTEM SET taskevents.enabled = off; SELECT pg_reload_conf();");
	$node->poll_query_until('postgres', q{SELECT worker_state = 'disabled' FROM taskevents.status})
	  or die 'the worker did not read the new settings';
}

sub enable
{
	my ($node) = @_;
	$node->safe_psql('postgres', 'ALTER SYSTEM RESET taskevents.enabled; SELECT pg_reload_conf();');
}

sub state { $_[0]->safe_psql('postgres', 'SELECT worker_state FROM taskevents.status') }

# Wait until the worker says it waits for the standby slots, or (what must
# not happen) the sidecar has more than $published events.
sub wait_held
{
	my ($node, $dapr, $published) = @_;
	wait_until('the worker waits for the standby slots', sub {
		state($node) eq $waiting || @{ delivered_events($dapr) } > $published });
}

# Wait (up to 30 s) for a line of the node's log after $offset.
sub wait_log
{
	my ($node, $re, $offset, $what) = @_;
	my $deadline = time + 30;
	my $found;
	until (($found = slurp_file($node->logfile, $offset) =~ $re) || time > $deadline)
	{
		usleep(100_000);
	}
	ok($found, $what);
}

# Insert $n tasks titled "<prefix> i"; returns their ids.
sub insert_tasks
{
	my ($node, $prefix, $n) = @_;
	return split /\n/, $node->safe_psql('postgres',
		"INSERT INTO tasks (user_id, title) SELECT gen_random_uuid(), '$prefix ' || i FROM generate_series(1, $n) i RETURNING id");
}

sub ids_of
{
	my ($node, $where) = @_;
	return [ sort { $a cmp $b } split /\n/, $node->safe_psql('postgres', "SELECT id FROM tasks WHERE $where") ];
}

# The events the sidecar accepted, first arrival of each id, and whether an
# id that arrived twice came with the same event both times.
sub unique_events
{
	my ($dapr) = @_;
	my (%seen, @unique, $conflicts);
	my $json = JSON::PP->new->canonical;
	for my $r (@{ delivered_events($dapr) })
	{
		my $e = $r->{event};
		my $body = $json->encode($e);
		if (exists $seen{ $e->{id} })
		{
			$conflicts++ if $seen{ $e->{id} } ne $body;
			next;
		}
		$seen{ $e->{id} } = $body;
		push @unique, $e;
	}
	return (\@unique, $conflicts // 0);
}

# Per task, the event types (with the title of task.* events) in arrival order.
sub per_task
{
	my ($events) = @_;
	my %seq;
	for my $e (@$events)
	{
		push @{ $seq{ $e->{subject} } },
		  $e->{type} . ($e->{type} =~ /^task\./ ? ':' . $e->{data}{title} : '');
	}
	return \%seq;
}

sub subjects { my %s = map { $_->{subject} => 1 } @{ $_[0] }; return [ sort keys %s ] }

############################################################################
# A standby that does not flush holds delivery back; its return lets it go.
############################################################################
my $dapr1 = start_sidecar();
my ($p1, $s1) = new_pair('one', $dapr1);

my ($ret, $out, $err) = $p1->psql('postgres', q{ALTER SYSTEM SET taskevents.standby_slots = 'One-Slot'});
isnt($ret, 0, 'standby_slots refuses a value that is not a list of slot names');
like($err, qr/taskevents.standby_slots must be a comma-separated list of replication slot names/,
	'and says what it takes');

$p1->safe_psql('postgres', q{ALTER SYSTEM SET taskevents.standby_slots = 'one_slot'});
$p1->restart;

# The standby streams: delivery goes on as usual.
insert_tasks($p1, 'standby up', 1);
wait_until('delivered with the standby streaming', sub { scalar @{ delivered_events($dapr1) } == 2 });
is(state($p1), 'delivering', 'standby streaming: the worker delivers');

# The standby stops: changes made now wait for it.
$s1->stop;
my $log_offset = -s $p1->logfile;
my @tasks = insert_tasks($p1, 'v0', 4);
my $in = join(',', map { "'$_'" } @tasks);
$p1->safe_psql('postgres', "UPDATE tasks SET title = 'v1' WHERE id IN ($in)");
$p1->safe_psql('postgres', "UPDATE tasks SET completed = true WHERE id IN ($in)");
$p1->safe_psql('postgres', "UPDATE tasks SET title = 'v2' WHERE id IN ($in)");
wait_held($p1, $dapr1, 2);
is(state($p1), $waiting, 'with the standby down, the status says the worker waits for taskevents.standby_slots');
wait_log($p1, qr/taskevents: delivery waits for the standby of replication slot "one_slot": it has flushed WAL up to [0-9A-F]+\/[0-9A-F]+, the events need [0-9A-F]+\/[0-9A-F]+/,
	$log_offset, 'after a while the log says which slot delivery waits for');
is(scalar @{ delivered_events($dapr1) }, 2, 'nothing written while the standby is down reached the sidecar');
is($p1->safe_psql('postgres', 'SELECT queue_depth FROM taskevents.status'), '16', 'the 16 changes wait in the queue');
ok($p1->safe_psql('postgres',
	q{SELECT restart_lsn < pg_current_wal_flush_lsn() FROM pg_replication_slots WHERE slot_name = 'one_slot'}) eq 't',
	'the slot is behind the primary (the standby has not flushed those commits)');

# The standby comes back: everything is delivered, in order, once.
$s1->start;
wait_drained($p1, 'delivered once the standby is back');
wait_log($p1, qr/taskevents: the standbys of taskevents.standby_slots caught up; delivery goes on/, $log_offset,
	'the log says delivery goes on');
is(state($p1), 'delivering', 'the worker delivers again');
my ($events, $conflicts) = unique_events($dapr1);
is(scalar @{ delivered_events($dapr1) }, 2 + 4 * 8, 'each of the 32 waiting events was sent once');
my $seq = per_task($events);
for my $i (0 .. $#tasks)
{
	is(join(' ', @{ $seq->{ $tasks[$i] } // [] }),
		'task.created:v0 ' . ($i + 1) . ' sync.task task.updated:v1 sync.task task.completed:v1 sync.task task.updated:v2 sync.task',
		"task $i: every event, in commit order");
}

# A slot that does not exist holds delivery back too, until it is removed
# from the setting.
set_and_disable($p1, q{ALTER SYSTEM SET taskevents.standby_slots = 'one_slot, no_such_slot';});
$log_offset = -s $p1->logfile;
my @held = insert_tasks($p1, 'held', 3);
enable($p1);
wait_held($p1, $dapr1, 34);
is(state($p1), $waiting, 'a slot that does not exist: the worker waits');
wait_log($p1, qr/taskevents: delivery waits for the standby of replication slot "no_such_slot": it has flushed WAL up to 0\/0/,
	$log_offset, 'the log names the missing slot');
is(scalar @{ delivered_events($dapr1) }, 34, 'nothing reached the sidecar while a named slot does not exist');
$p1->safe_psql('postgres', q{ALTER SYSTEM SET taskevents.standby_slots = 'one_slot'; SELECT pg_reload_conf();});
wait_drained($p1, 'delivered once the missing slot is out of the setting');
wait_log($p1, qr/taskevents: the standbys of taskevents.standby_slots caught up; delivery goes on/, $log_offset,
	'the log says delivery goes on');
($events) = unique_events($dapr1);
is(scalar @{ delivered_events($dapr1) }, 40, 'the 6 held events were sent once');
$seq = per_task($events);
is(join(' ', @{ $seq->{ $held[$_] } // [] }), 'task.created:held ' . ($_ + 1) . ' sync.task', "held task $_ delivered")
  for 0 .. $#held;
$s1->stop;
$p1->stop;

############################################################################
# Promotion.  (a) Without the setting, consumers can see a change the
# promoted standby never got: the weaker default guarantee.
############################################################################
my $dapr2 = start_sidecar();
my ($p2, $s2) = new_pair('two', $dapr2);
insert_tasks($p2, 'before', 3);
wait_drained($p2, 'before the cut');
$p2->wait_for_catchup($s2);
$s2->stop;

my @after = sort { $a cmp $b } insert_tasks($p2, 'after', 3);
wait_until('published while the standby was cut off', sub { scalar @{ delivered_events($dapr2) } == 12 });
$p2->stop('immediate');
$s2->start;
$s2->promote;
$s2->poll_query_until('postgres', 'SELECT NOT pg_is_in_recovery()') or die 'no promotion';
is_deeply(ids_of($s2, q{title LIKE 'after%'}), [], 'the promoted standby lacks the commits made while it was cut off');
($events, $conflicts) = unique_events($dapr2);
my %on_standby = map { $_ => 1 } @{ ids_of($s2, 'true') };
my @lost = grep { !$on_standby{ $_->{subject} } } @$events;
is_deeply(subjects(\@lost), \@after,
	'without standby_slots: the sidecar has events of exactly the commits the promoted standby lacks');
is(scalar @lost, 6, 'all six of their events');
wait_drained($s2, 'the promoted standby delivers what it has');
is($conflicts, 0, 'an event sent again after the failover is the same event');
$s2->stop;

############################################################################
# (b) With the setting, no event of a commit the promoted standby lacks was
# published; the new primary then delivers what it has, with stable ids.
############################################################################
my $dapr3 = start_sidecar();
my ($p3, $s3) = new_pair('three', $dapr3);
$p3->safe_psql('postgres', q{ALTER SYSTEM SET taskevents.standby_slots = 'three_slot'});
$p3->restart;
my @before = sort { $a cmp $b } insert_tasks($p3, 'before', 3);
wait_drained($p3, 'delivered with the standby streaming');
is(scalar @{ delivered_events($dapr3) }, 6, 'with the standby streaming, delivery goes on');

# Changes the standby has but that are not published yet (delivery off),
# then the standby is cut off and more changes are made.
set_and_disable($p3, '');
@held = sort { $a cmp $b } insert_tasks($p3, 'held', 3);
$p3->wait_for_catchup($s3);
$s3->stop;
@after = sort { $a cmp $b } insert_tasks($p3, 'after', 3);
my %pending_ids = map { $_ => 1 } split /\n/,
  $p3->safe_psql('postgres', q{SELECT p.event_id FROM taskevents.pending p JOIN tasks t ON t.id::text = p.task_id WHERE t.title LIKE 'held%'});
is(scalar keys %pending_ids, 6, 'the held tasks have 6 queued events');
enable($p3);
wait_held($p3, $dapr3, 6);
is(state($p3), $waiting, 'with the standby cut off, the worker waits for it');
is(scalar @{ delivered_events($dapr3) }, 6, 'with the standby cut off, nothing more is published');
$p3->stop('immediate');
$s3->start;
$s3->promote;
$s3->poll_query_until('postgres', 'SELECT NOT pg_is_in_recovery()') or die 'no promotion';
is_deeply(ids_of($s3, q{title LIKE 'after%'}), [], 'the promoted standby lacks the commits made while it was cut off');
is_deeply(ids_of($s3, q{title LIKE 'held%'}), \@held, 'it has the held ones');

($events) = unique_events($dapr3);
%on_standby = map { $_ => 1 } @{ ids_of($s3, 'true') };
@lost = grep { !$on_standby{ $_->{subject} } } @$events;
is(scalar @lost, 0, 'with standby_slots: no event of a commit the promoted standby lacks was published');

# The new primary's worker delivers what it has.
wait_drained($s3, 'the new primary delivers its queue');
($events, $conflicts) = unique_events($dapr3);
@lost = grep { !$on_standby{ $_->{subject} } } @$events;
is(scalar @lost, 0, 'still no event of a lost commit');
is($conflicts, 0, 'an event sent again after the failover is the same event, same id');
$seq = per_task($events);
for my $t (@before, @held)
{
	like(join(' ', @{ $seq->{$t} // [] }), qr/^task\.created:\w+ \d sync\.task$/, "task $t: its two events, once each by id");
}
my %held_ids = map { $_->{id} => 1 } grep { my $s = $_->{subject}; grep { $_ eq $s } @held } @$events;
is_deeply([ sort keys %held_ids ], [ sort keys %pending_ids ],
	'the held events went out with the ids they were given on the old primary');

# And it goes on with new changes.
my ($new) = insert_tasks($s3, 'new', 1);
wait_until('a new change delivered by the new primary',
	sub { grep { $_->{event}{subject} eq $new } @{ delivered_events($dapr3) } });
$s3->stop;

done_testing();
