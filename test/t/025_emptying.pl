# The queue's invariants under concurrent writers, in deterministic
# interleavings (sessions held open at chosen points): a change is never
# lost while its transaction is open or after it commits, however the
# cursor moves and whenever the worker empties a queue table.
#  1. A transaction that writes several changes and stays open: none of
#     them is skipped, though later changes are delivered meanwhile.
#  2. A queue table is emptied only once every change in it was read: the
#     worker reading it in small batches while the sequence has moved two
#     runs on.
#  3. A change that commits while the worker sends the round after its
#     table's run ended is read before the table is emptied.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Utils;
use Test::More;
use TaskEventsTest;

my $dapr = start_sidecar();
my $node = new_node('emptying', port => $dapr->port, conf => "taskevents.timeout = '10s'\n");
$node->safe_psql('postgres', tasks_ddl() . 'CREATE EXTENSION taskevents;');

# How many times each task.created title reached the sidecar.
sub created
{
	my %n;
	$n{ $_->{event}{data}{title} }++ for grep { $_->{event}{type} eq 'task.created' } @{ delivered_events($dapr) };
	return \%n;
}

sub insert
{
	my ($title) = @_;
	$node->safe_psql('postgres', "INSERT INTO tasks (user_id, title) VALUES (gen_random_uuid(), '$title')");
}

sub reload
{
	my ($sql) = @_;
	$node->safe_psql('postgres', "$sql SELECT pg_reload_conf();");
}

# 1. Two changes of one open transaction, a change of another open one
# numbered between them, a committed change after them.
my $open = session($node);
my $between = session($node);
$open->query("BEGIN; INSERT INTO tasks (user_id, title) VALUES (gen_random_uuid(), 'open 1');");
$between->query("BEGIN; INSERT INTO tasks (user_id, title) VALUES (gen_random_uuid(), 'between');");
$open->query("INSERT INTO tasks (user_id, title) VALUES (gen_random_uuid(), 'open 2');");
insert('after the open ones');
wait_until('the later change is delivered', sub { created()->{'after the open ones'} });
$between->query('COMMIT;');
wait_until('the change between is delivered', sub { created()->{'between'} });
$open->query('COMMIT;');
wait_drained($node, 'the open transaction delivered');
is(created()->{'open 1'}, 1, 'the first change of a transaction that stayed open is delivered once');
is(created()->{'open 2'}, 1, 'its second change too');
is(created()->{'between'}, 1, 'the change numbered between them once');
$between->close;

# 2. 150 changes in the first table, read ten at a time through a slow
# sidecar, while the sequence moves to the third table's run.
reload("ALTER SYSTEM SET taskevents.batch_size = 10;");
$dapr->mode(mode => 'slow', ms => 30);
$node->safe_psql('postgres',
	"INSERT INTO tasks (user_id, title) SELECT gen_random_uuid(), 'batch ' || i FROM generate_series(1, 150) i");
$node->safe_psql('postgres', "SELECT setval('taskevents.outbox_seq', 2 * 32768)");
insert('in the third run');
wait_drained($node, 'the batches delivered', 120);
is(scalar(grep { /^batch / } keys %{ created() }), 150,
	'every change of a table is delivered before the table is emptied');
$dapr->mode(mode => 'ok');
reload("ALTER SYSTEM RESET taskevents.batch_size;");
wait_until('the first table emptied', sub {
	$node->safe_psql('postgres', 'SELECT count(*) FROM taskevents.queue_0') eq '0' });

# 3. A change of the first table's next run (3 * 32768 on) stays open while
# the run ends and later changes are delivered; it commits while the worker
# is sending a round, whose record then finds the table's run over.
$node->safe_psql('postgres', "SELECT setval('taskevents.outbox_seq', 3 * 32768)");
my $held = session($node);
$held->query("BEGIN; INSERT INTO tasks (user_id, title) VALUES (gen_random_uuid(), 'held');");
$node->safe_psql('postgres', "SELECT setval('taskevents.outbox_seq', 5 * 32768)");
insert('two runs on');
wait_until('two runs on delivered', sub { created()->{'two runs on'} });
$dapr->mode(mode => 'slow', ms => 3000);
my $requests = $dapr->stats->{requests};
insert('sent slowly');
wait_until('the slow round is sending', sub { $dapr->stats->{requests} > $requests });
$held->query('COMMIT;');
$dapr->mode(mode => 'ok');
wait_until('sent slowly delivered', sub { created()->{'sent slowly'} });
wait_drained($node, 'the held change delivered');
is(created()->{'held'}, 1, 'a change that commits during a round is delivered, not emptied away');

$open->close;
$held->close;
$node->stop;
done_testing();
