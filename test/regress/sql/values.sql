-- Any value PostgreSQL accepts in a task row gives a valid event or a clear
-- dead letter, never a writer error: odd numbers, dates at the ends of their
-- ranges, a null id, changes too big to send, rows moving between partitions.
SET client_min_messages = warning;
CALL clear_queue();
CREATE TEMP VIEW ev AS
SELECT o.seq, o.task_id, p.type, p.event AS e
  FROM taskevents.outbox o, LATERAL taskevents.preview(o.seq) WITH ORDINALITY AS p(event_id, type, topic, delivered, event, n)
 ORDER BY o.seq, p.n;

-- Numeric ids that are not JSON numbers (NaN, Infinity) are strings.
CREATE TABLE numtasks (id numeric PRIMARY KEY, user_id float8, title text, completed boolean, due_date date);
SELECT taskevents.attach('numtasks');
INSERT INTO numtasks VALUES ('NaN', 'Infinity', 'not numbers', false, NULL),
                            (1.5, '-Infinity', 'numbers', false, NULL),
                            (2, 'NaN', 'nan user', false, NULL);
SELECT type, e->'data'->'task_id' AS task_id, e->'data'->'user_id' AS user_id, e->>'subject' AS subject
  FROM ev WHERE type = 'task.created';
CALL clear_queue();

-- Due dates at the ends of their ranges: beyond timestamptz (date allows
-- more), pushed past it by the session's time zone, BC, and past year 9999.
SET timezone = 'Pacific/Kiritimati';
INSERT INTO numtasks VALUES (10, 0, 'far date', false, '5874897-12-31');
INSERT INTO numtasks VALUES (11, 0, 'ancient date', false, '4713-11-24 BC');
DELETE FROM numtasks WHERE id IN (10, 11);
ALTER TABLE numtasks ALTER COLUMN due_date TYPE timestamp;
INSERT INTO numtasks VALUES (12, 0, 'last timestamp', false, '294276-12-31 23:59:59');
INSERT INTO numtasks VALUES (13, 0, 'year 10000', false, '10000-01-01 00:00:00');
INSERT INTO numtasks VALUES (14, 0, 'before Christ', false, '0044-03-15 12:00:00 BC');
RESET timezone;
SELECT task_id, e->'data'->>'due_date' AS due_date FROM ev WHERE type = 'reminder.scheduled' ORDER BY seq;
CALL clear_queue();

-- A null task id (its NOT NULL dropped after attach): the write succeeds,
-- the events cannot be sent (preview shows none; the worker dead-letters
-- them, saying why).
CREATE TABLE looseid (id text NOT NULL, user_id text, title text, completed boolean);
CREATE UNIQUE INDEX ON looseid (id);
SELECT taskevents.attach('looseid');
ALTER TABLE looseid ALTER COLUMN id DROP NOT NULL;
INSERT INTO looseid VALUES (NULL, 'u', 'no id', false);
SELECT task_id, type, e IS NULL AS unsendable FROM ev;
CALL clear_queue();

-- Changes over 64 MB (old and new values together): the write succeeds
-- without building them; that task.updated cannot be sent, the other events
-- can (whether they fit the sidecar's limit is the worker's to judge).
SET taskevents.trace_id = 'big';
INSERT INTO looseid VALUES ('big', 'u', repeat('x', 33 * 1024 * 1024), false);
UPDATE looseid SET user_id = 'v', title = repeat('y', 33 * 1024 * 1024) WHERE id = 'big';
UPDATE looseid SET completed = true WHERE id = 'big';
SELECT seq - min(seq) OVER () AS n, type, e IS NULL AS unsendable, e->'data'->>'user_id' AS user_id FROM ev;
SELECT octet_length(title) AS kept_title, changes IS NULL AS no_changes FROM taskevents.outbox ORDER BY seq;
RESET taskevents.trace_id;
CALL clear_queue();

-- Every event built above is valid JSON (preview's cast to json checks it),
-- and so is every value type in "changes".
ALTER TABLE numtasks ADD COLUMN extra interval, ADD COLUMN price money, ADD COLUMN raw bytea,
    ADD COLUMN doc json, ADD COLUMN r float4, ADD COLUMN big numeric;
UPDATE numtasks SET extra = '-178000000 years', price = '-92233720368547758.08', raw = '\x00ff',
    doc = '{"a": "\u001f \ud83d\ude00", "b": [1e400]}', r = '-0', big = '1e-130'
 WHERE id = 1.5;
SELECT key, value FROM ev, json_each(e->'data'->'changes') WHERE type = 'task.updated' ORDER BY key;
CALL clear_queue();

-- The writer's settings do not change a value: floats exact whatever
-- extra_float_digits, times inside arrays and ranges in ISO and UTC whatever
-- DateStyle and TimeZone, intervals in ISO 8601, bytea in hex.
ALTER TABLE numtasks ADD COLUMN times timestamptz[], ADD COLUMN span tstzrange,
    ADD COLUMN spans interval[], ADD COLUMN floats float8[];
SET extra_float_digits = -15;
SET DateStyle = 'German, DMY';
SET TimeZone = 'Asia/Kolkata';
SET IntervalStyle = 'sql_standard';
SET bytea_output = 'escape';
UPDATE numtasks SET user_id = 0.30000000000000004, r = 0.1, floats = '{0.1, 1e300}',
    times = ARRAY['2026-12-02 10:00:00.5Z'::timestamptz], span = '[2026-12-02Z, 2026-12-03Z)',
    spans = ARRAY['1 day 2 hours'::interval], extra = '-1 mon 3 days', raw = '\x41ff'
 WHERE id = 1.5;
RESET extra_float_digits; RESET DateStyle; RESET TimeZone; RESET IntervalStyle; RESET bytea_output;
SELECT key, value FROM ev, json_each(e->'data'->'changes') WHERE type = 'task.updated' ORDER BY key;
SELECT e->'data'->'user_id' AS user_id FROM ev WHERE type = 'task.updated';
CALL clear_queue();

-- NaNs of other bits read the same: no change.  SQL NULL to a json null is.
UPDATE numtasks SET r = 'NaN' WHERE id = 1.5;
CALL clear_queue();
UPDATE numtasks SET r = 'Infinity'::float4 - 'Infinity'::float4 WHERE id = 1.5;
SELECT count(*) AS nan_to_nan_events FROM ev;
UPDATE numtasks SET doc = NULL WHERE id = 1.5;
CALL clear_queue();
UPDATE numtasks SET doc = 'null' WHERE id = 1.5;
SELECT type, e->'data'->'changes' AS changes FROM ev;
CALL clear_queue();
DROP TABLE numtasks, looseid;

-- A cross-partition UPDATE (the partition key changes) is one UPDATE of the
-- task, not a deletion and a creation; a row moving to a partition that is
-- not attached leaves (task.deleted), and comes back (task.created).
CREATE TABLE ptasks (id uuid NOT NULL, user_id uuid, title text, completed boolean NOT NULL)
    PARTITION BY LIST (completed);
CREATE TABLE ptasks_open PARTITION OF ptasks FOR VALUES IN (false);
CREATE TABLE ptasks_done PARTITION OF ptasks FOR VALUES IN (true);
CREATE UNIQUE INDEX ON ptasks_open (id);
CREATE UNIQUE INDEX ON ptasks_done (id);
SELECT taskevents.attach('ptasks');
SELECT taskevents.attach('ptasks_open');
SELECT taskevents.attach('ptasks_done');
INSERT INTO ptasks VALUES ('00000000-0000-4000-8000-0000000a0001', NULL, 'moves', false),
                          ('00000000-0000-4000-8000-0000000a0002', NULL, 'moves too', false);
UPDATE ptasks SET completed = true, title = title || ' (done)';
UPDATE ptasks SET completed = false WHERE id = '00000000-0000-4000-8000-0000000a0001';
BEGIN;
UPDATE ptasks SET completed = false WHERE id = '00000000-0000-4000-8000-0000000a0002';
SAVEPOINT s;
UPDATE ptasks SET completed = true WHERE id = '00000000-0000-4000-8000-0000000a0002';
ROLLBACK TO SAVEPOINT s;
COMMIT;
SELECT task_id, type, e->'data'->'changes' AS changes FROM ev;
CALL clear_queue();
SELECT taskevents.detach('ptasks_done');
UPDATE ptasks SET completed = true WHERE id = '00000000-0000-4000-8000-0000000a0001';
UPDATE ptasks SET completed = false WHERE id = '00000000-0000-4000-8000-0000000a0001';
SELECT task_id, type FROM ev;
CALL clear_queue();
DROP TABLE ptasks;
