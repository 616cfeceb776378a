-- TRUNCATE is never a silent loss: each removed row becomes task.deleted + sync.task.
SET client_min_messages = warning;
CALL clear_queue();
INSERT INTO tasks (id, user_id, title, completed)
SELECT ('00000000-0000-4000-8000-0000000f000' || i)::uuid, '00000000-0000-4000-8000-0000000000aa', 'row ' || i, i % 2 = 0
  FROM generate_series(1, 4) i;
CALL clear_queue();
TRUNCATE tasks;
SELECT o.task_id, p.type, p.event->'data'->>'title' AS title, p.event->'data'->>'completed' AS completed
  FROM taskevents.outbox o, LATERAL taskevents.preview(o.seq) p
 ORDER BY o.task_id, p.type;
CALL clear_queue();

-- A rolled back TRUNCATE leaves no event
INSERT INTO tasks (id, user_id, title) VALUES ('00000000-0000-4000-8000-0000000f0010', gen_random_uuid(), 'survivor');
CALL clear_queue();
BEGIN;
TRUNCATE tasks;
ROLLBACK;
SELECT count(*) AS events_after_rollback, (SELECT count(*) FROM tasks) AS rows_kept FROM taskevents.outbox;

-- TRUNCATE of an empty table: nothing
DELETE FROM tasks;
CALL clear_queue();
TRUNCATE tasks;
SELECT count(*) AS events FROM taskevents.outbox;
