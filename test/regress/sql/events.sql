-- The CloudEvent envelope and its data (SPEC §2), values and escaping.
SET client_min_messages = warning;
CALL clear_queue();
CREATE TEMP VIEW ce AS
SELECT o.seq, p.n, p.event_id, p.type, p.topic, p.event::jsonb AS e, p.event::text AS raw
  FROM taskevents.outbox o,
       LATERAL taskevents.preview(o.seq) WITH ORDINALITY AS p(event_id, type, topic, delivered, event, n);

-- One change, all envelope attributes
BEGIN;
SET LOCAL taskevents.trace_id = 'req-42';
SET LOCAL taskevents.traceparent = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01';
INSERT INTO tasks (id, user_id, title, due_date) VALUES
    ('00000000-0000-4000-8000-00000000e001', '00000000-0000-4000-8000-0000000000aa', 'envelope', '2030-01-01 09:00:00.5Z');
COMMIT;
SELECT type, e - 'id' - 'time' - 'data' AS attributes, (e->'data') - 'timestamp' AS data FROM ce ORDER BY seq, n;
-- ids: UUIDs, distinct per event, the same every time the event is built
SELECT count(DISTINCT e->>'id') AS distinct_ids,
       bool_and(e->>'id' ~ '^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$') AS uuid_v4,
       bool_and((e->>'id')::uuid = event_id) AS id_column_matches
  FROM ce;
SELECT (SELECT array_agg(event_id ORDER BY n) FROM ce) = (SELECT array_agg(event_id ORDER BY n) FROM ce) AS ids_stable;
-- time: RFC 3339 UTC with microseconds, the same as data.timestamp
SELECT bool_and(e->>'time' ~ '^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$') AS rfc3339,
       bool_and(e->>'time' = e->'data'->>'timestamp') AS time_is_timestamp,
       bool_and(abs(extract(epoch FROM (e->>'time')::timestamptz - now())) < 3600) AS recent
  FROM ce;
-- the body is compact JSON exactly as sent (no spaces added)
SELECT raw LIKE '{"specversion":"1.0","id":"%' AS compact FROM ce ORDER BY n LIMIT 1;
CALL clear_queue();

-- Without taskevents.trace_id: one fresh id per transaction, shared by its events
BEGIN;
INSERT INTO tasks (id, user_id, title) VALUES ('00000000-0000-4000-8000-00000000e002', gen_random_uuid(), 'a');
UPDATE tasks SET title = 'b' WHERE id = '00000000-0000-4000-8000-00000000e002';
COMMIT;
INSERT INTO tasks (id, user_id, title) VALUES ('00000000-0000-4000-8000-00000000e003', gen_random_uuid(), 'c');
SELECT count(DISTINCT e->>'traceid') AS trace_ids, count(*) AS events,
       bool_and(e->>'traceid' ~ '^[0-9a-f-]{36}$') AS uuids,
       bool_and(NOT e ? 'traceparent') AS no_traceparent
  FROM ce;
SELECT count(DISTINCT e->>'traceid') AS per_transaction FROM ce WHERE e->>'subject' = '00000000-0000-4000-8000-00000000e002';
CALL clear_queue();
DELETE FROM tasks;

-- A traceparent that is not W3C trace context is refused
SET taskevents.traceparent = 'not-a-trace';
SET taskevents.traceparent = '00-00000000000000000000000000000000-b7ad6b7169203331-01';
SET taskevents.traceparent = '00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01';
SET taskevents.traceparent = '';

-- Strings: quotes, backslashes, control characters, emoji, non-ASCII
INSERT INTO tasks (id, user_id, title) VALUES
    ('00000000-0000-4000-8000-00000000e004', gen_random_uuid(),
     E'say "hi" \\ back\\slash\nnew line\ttab \x01\x1f bell\x07 é 😀 </script>');
SELECT e->'data'->>'title' = (SELECT title FROM tasks) AS title_round_trips,
       position(E'\n' IN raw) = 0 AS no_raw_newline,
       raw LIKE '%\\u0001\\u001f%' AS control_escaped
  FROM ce WHERE type = 'task.created';
-- a change of such a title: old and new, both exact
UPDATE tasks SET title = E'line1\nline2 "q"' ;
SELECT e->'data'->'changes'->'title'->>'old' = E'say "hi" \\ back\\slash\nnew line\ttab \x01\x1f bell\x07 é 😀 </script>' AS old_exact,
       e->'data'->'changes'->'title'->>'new' = E'line1\nline2 "q"' AS new_exact
  FROM ce WHERE type = 'task.updated';
CALL clear_queue();

-- A megabyte of title
UPDATE tasks SET title = repeat('é"\', 350000);
SELECT length(e->'data'->>'title') AS title_chars,
       e->'data'->>'title' = (SELECT title FROM tasks) AS exact,
       octet_length(raw) > 2000000 AS big_body
  FROM ce WHERE type = 'task.updated';
CALL clear_queue();
DELETE FROM tasks;

-- Values keep their JSON types in "changes": other columns count as task fields
ALTER TABLE tasks ADD COLUMN priority integer, ADD COLUMN estimate numeric,
    ADD COLUMN tags text[], ADD COLUMN meta jsonb, ADD COLUMN ratio float8, ADD COLUMN day date,
    ADD COLUMN at timestamp;
INSERT INTO tasks (id, user_id, title) VALUES ('00000000-0000-4000-8000-00000000e005', gen_random_uuid(), 'typed');
CALL clear_queue();
UPDATE tasks SET priority = 3, estimate = 1.50, tags = '{a,"b c"}', meta = '{"k": [1, true, null]}',
    ratio = 'NaN', day = '2030-05-06', at = '2030-05-06 07:08:09.123';
SELECT jsonb_pretty(e->'data'->'changes') FROM ce WHERE type = 'task.updated';
SELECT raw LIKE '%"priority":{"old":null,"new":3}%' AS bare_number,
       raw LIKE '%"estimate":{"old":null,"new":1.50}%' AS numeric_as_written
  FROM ce WHERE type = 'task.updated';
CALL clear_queue();
DELETE FROM tasks;
ALTER TABLE tasks DROP COLUMN priority, DROP COLUMN estimate, DROP COLUMN tags, DROP COLUMN meta,
    DROP COLUMN ratio, DROP COLUMN day, DROP COLUMN at;
-- dropped columns are ignored
INSERT INTO tasks (id, user_id, title) VALUES ('00000000-0000-4000-8000-00000000e006', gen_random_uuid(), 'after drop');
UPDATE tasks SET title = 'after drop 2';
SELECT type, e->'data'->'changes' AS changes FROM ce ORDER BY seq, n;
CALL clear_queue();
DELETE FROM tasks;
