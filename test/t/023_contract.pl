# The consumer's contract (schema/): events of every type, with the odd
# values the README's Events section and docs/events.md promise (numeric, NaN and text ids,
# null fields, due dates beyond RFC 3339's years, every kind of value in
# changes), delivered through the sidecar.  Each is checked against schema/
# when the test is done (TaskEventsTest); here, that every type schema/data/
# describes was delivered, so the check covers them all.
use strict;
use warnings;
use utf8;
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Utils;
use Test::More;
use TaskEventsTest;

my $dapr = start_sidecar();
my $node = new_node('contract', port => $dapr->port);
$node->safe_psql('postgres', tasks_ddl() . q{
	CREATE EXTENSION taskevents;
	CREATE TABLE numtasks (id numeric PRIMARY KEY, user_id float8, title text, completed boolean,
	                       due_date timestamp, extra interval, price money, raw bytea, doc json,
	                       r float4, times timestamptz[]);
	SELECT taskevents.attach('numtasks');
	CREATE TABLE todo (todo_no bigint PRIMARY KEY, owner text, label text, done boolean, deadline date);
	SELECT taskevents.attach('todo', id => 'todo_no', user_id => 'owner', title => 'label',
	                         completed => 'done', due_date => 'deadline');
});

my $t = '0c0a7ac7-0000-4000-8000-000000000001';
$node->safe_psql('postgres', qq{
	BEGIN;
	SET LOCAL taskevents.trace_id = 'contract "1" \\\\ é';
	SET LOCAL taskevents.traceparent = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01';
	INSERT INTO tasks (id, user_id, title, due_date)
	  VALUES ('$t', gen_random_uuid(), E'"quoted" \\\\ \\n \\x01 🥛', '2030-01-01 09:00Z');
	COMMIT;
	UPDATE tasks SET title = 'renamed', due_date = '2030-01-02 09:00Z' WHERE id = '$t';
	UPDATE tasks SET completed = true WHERE id = '$t';
	UPDATE tasks SET completed = false, due_date = NULL WHERE id = '$t';
	DELETE FROM tasks WHERE id = '$t';

	INSERT INTO numtasks (id, user_id, title, completed, due_date) VALUES
	    ('NaN', 'Infinity', NULL, NULL, '294276-12-31 23:59:59'),
	    (1.5, '-Infinity', 'numbers', false, '10000-01-01 00:00:00'),
	    (2, NULL, 'bc', true, '0044-03-15 12:00:00 BC'),
	    (3, 'NaN', 'year zero', false, '0001-06-01 00:00:00 BC');
	UPDATE numtasks SET extra = '-178000000 years', price = '-92233720368547758.08', raw = '\\x00ff',
	    doc = '{"a": "\\u001f \\ud83d\\ude00", "b": [1e400, null, true]}', r = '-0',
	    times = ARRAY['2026-12-02 10:00:00.5Z'::timestamptz], user_id = 0.30000000000000004
	 WHERE id = 1.5;
	UPDATE numtasks SET r = 'NaN', completed = NULL, doc = 'null' WHERE id = 2;
	UPDATE numtasks SET id = 4 WHERE id = 3;
	DELETE FROM numtasks WHERE id = 'NaN';

	INSERT INTO todo VALUES (9007199254740993, 'owner-1', 'far', NULL, '5874897-12-31'),
	                        (-1, NULL, 'julian', true, '4713-11-24 BC');
	UPDATE todo SET done = true, deadline = '2026-12-24' WHERE todo_no = 9007199254740993;
	UPDATE todo SET done = NULL WHERE todo_no = -1;
	TRUNCATE todo;
});
wait_drained($node, 'every event delivered');
# A backfill of the odd rows left: task.snapshot and its companions.
$node->safe_psql('postgres', q{SELECT taskevents.backfill('numtasks')});
$node->poll_query_until('postgres', q{SELECT state = 'done' FROM taskevents.backfill_progress})
  or fail('the backfill ends');
wait_drained($node, 'the backfill delivered');
is($node->safe_psql('postgres', 'SELECT count(*) FROM taskevents.dead_letters'), '0', 'no dead letters');

my %delivered = map { ($_->{event}{type} // '?') => 1 } @{ delivered_events($dapr) };
opendir(my $dh, "$TaskEventsTest::TOP/schema/data") or die "schema/data: $!";
my @types = sort map { /^(.+)\.json$/ ? $1 : () } readdir($dh);
closedir($dh);
ok(scalar @types >= 9, 'schema/data/ describes ' . scalar(@types) . ' types');
is_deeply([ sort keys %delivered ], \@types, 'every type schema/data/ describes was delivered, and no other');

done_testing();
