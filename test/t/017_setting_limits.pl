# Every delivery setting at the ends of its range: events are delivered (or,
# where the setting says so, dead-lettered), the worker neither errors nor
# dies; and a long max_age means long (it overflowed past 24.8 days).
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Utils;
use Test::More;
use TaskEventsTest;

my $dapr = start_sidecar();
my $node = new_node('limits', port => $dapr->port);
$node->safe_psql('postgres', tasks_ddl() . 'CREATE EXTENSION taskevents;');

sub set_reload
{
	my ($name, $value) = @_;
	$node->safe_psql('postgres', "ALTER SYSTEM SET taskevents.$name = '$value'; SELECT pg_reload_conf();");
	sleep 1;    # the worker reloads when the signal wakes it
}

# Titles of 1,500 bytes: over a 1 kB max_body_size, task.created is a dead
# letter (its sync.task carries no title and goes).
my %dead = ('max_body_size=1kB' => 1);
for my $case (
	[ timeout => '10ms' ], [ timeout => '10min' ],
	[ concurrency => 1 ], [ concurrency => 1024 ],
	[ batch_size => 1 ], [ batch_size => 100000 ],
	[ backoff_min => '1ms' ], [ backoff_min => '1h' ],
	[ backoff_max => '1ms' ], [ backoff_max => '1d' ],
	[ max_attempts => 0 ], [ max_attempts => 2147483647 ],
	[ max_age => 0 ], [ max_age => '2147483647s' ],
	[ retention => 0 ], [ retention => '2147483647s' ],
	[ poll_interval => '10ms' ], [ poll_interval => '1h' ],
	[ max_body_size => '1kB' ], [ max_body_size => '1GB' ],
	[ bulk => 'on' ], [ bulk => 'off' ])
{
	my ($name, $value) = @$case;
	my $offset = -s $node->logfile;
	my $before = scalar @{ delivered_events($dapr) };
	set_reload($name, $value);
	$node->safe_psql('postgres',
		"INSERT INTO tasks (user_id, title) VALUES (gen_random_uuid(), '$name=$value ' || repeat('x', 1500))");
	wait_drained($node, "$name = $value: settled");
	my $ndead = $dead{"$name=$value"} // 0;
	is($node->safe_psql('postgres', 'SELECT count(*) FROM taskevents.dead_letters'), $ndead,
		"$name = $value: $ndead dead letters");
	# distinct ids: a request cut off by a tiny timeout may have arrived, and is sent again
	my @got = @{ delivered_events($dapr) };
	my %ids = map { $_->{event}{id} => 1 } @got[ $before .. $#got ];
	is(scalar keys %ids, 2 - $ndead, "$name = $value: the other events delivered");
	my $log = substr(slurp_file($node->logfile), $offset);
	unlike($log, qr/(ERROR|FATAL|PANIC):/, "$name = $value: no error in the log");
	$node->safe_psql('postgres', "SELECT taskevents.drop_dead_letters(); ALTER SYSTEM RESET taskevents.$name; SELECT pg_reload_conf();");
}

# max_age beyond 24.8 days (2^31 ms): a failure is retried, not dead at once.
set_reload('max_age', '30d');
$dapr->mode(mode => 'fail', count => 1, status => 500, code => 'ERR_PUBSUB_PUBLISH_MESSAGE');
$node->safe_psql('postgres', "INSERT INTO tasks (user_id, title) VALUES (gen_random_uuid(), 'a month to live')");
wait_drained($node, 'settled with max_age = 30d');
is($node->safe_psql('postgres', 'SELECT count(*) FROM taskevents.dead_letters'), '0',
	'max_age = 30d: a failed event is retried, not dead at once');
is($node->safe_psql('postgres', 'SELECT retried FROM taskevents.status') > 0, 1, '... it was retried');

$node->stop;
done_testing();
