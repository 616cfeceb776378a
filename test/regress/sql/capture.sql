-- Which changes become which events (SPEC §2), one outbox row per change.
SET client_min_messages = warning;
CALL clear_queue();
-- take(): the queued events, in publishing order, removed from the queue
CREATE FUNCTION take() RETURNS TABLE (type text, topic text, action text, changes jsonb)
LANGUAGE plpgsql AS $$
BEGIN
    RETURN QUERY
    SELECT e.type, e.topic, (e.event::jsonb)->'data'->>'action', (e.event::jsonb)->'data'->'changes'
      FROM taskevents.outbox o,
           LATERAL taskevents._cloudevents(o, 0) WITH ORDINALITY AS e(event_id, type, topic, delivered, event, n)
     ORDER BY o.seq, e.n;
    CALL clear_queue();
END
$$;

-- INSERT without and with a due date
INSERT INTO tasks (id, user_id, title) VALUES
    ('00000000-0000-4000-8000-000000000001', '00000000-0000-4000-8000-0000000000aa', 'first');
SELECT * FROM take();
INSERT INTO tasks (id, user_id, title, due_date) VALUES
    ('00000000-0000-4000-8000-000000000002', '00000000-0000-4000-8000-0000000000aa', 'second', '2030-01-01 09:00Z');
SELECT * FROM take();

-- UPDATE of a task field
UPDATE tasks SET title = 'first, edited' WHERE id = '00000000-0000-4000-8000-000000000001';
SELECT * FROM take();

-- completed false -> true, then true -> false
UPDATE tasks SET completed = true WHERE id = '00000000-0000-4000-8000-000000000001';
SELECT * FROM take();
UPDATE tasks SET completed = false WHERE id = '00000000-0000-4000-8000-000000000001';
SELECT * FROM take();

-- fields and completion at once: updated, then completed, one sync
UPDATE tasks SET title = 'both', completed = true WHERE id = '00000000-0000-4000-8000-000000000001';
SELECT * FROM take();

-- due date: null -> value, value -> value, value -> null
UPDATE tasks SET due_date = '2030-02-01 10:00Z' WHERE id = '00000000-0000-4000-8000-000000000001';
SELECT * FROM take();
UPDATE tasks SET due_date = '2030-03-01 10:00Z' WHERE id = '00000000-0000-4000-8000-000000000001';
SELECT * FROM take();
UPDATE tasks SET due_date = NULL WHERE id = '00000000-0000-4000-8000-000000000001';
SELECT * FROM take();

-- no event: same values, or only bookkeeping columns
UPDATE tasks SET title = title, completed = completed;
UPDATE tasks SET updated_at = now() + interval '1 hour', created_at = now() - interval '1 day';
SELECT count(*) AS no_events FROM taskevents.outbox;

-- a user_id change is a task field change
UPDATE tasks SET user_id = '00000000-0000-4000-8000-0000000000bb' WHERE id = '00000000-0000-4000-8000-000000000002';
SELECT * FROM take();

-- DELETE
DELETE FROM tasks WHERE id = '00000000-0000-4000-8000-000000000002';
SELECT * FROM take();

-- rolled back: nothing; a rolled back savepoint: only what was kept
BEGIN;
INSERT INTO tasks (id, user_id, title) VALUES ('00000000-0000-4000-8000-000000000003', gen_random_uuid(), 'rolled back');
ROLLBACK;
BEGIN;
INSERT INTO tasks (id, user_id, title) VALUES ('00000000-0000-4000-8000-000000000004', '00000000-0000-4000-8000-0000000000aa', 'kept');
SAVEPOINT s;
UPDATE tasks SET title = 'undone' WHERE id = '00000000-0000-4000-8000-000000000004';
DELETE FROM tasks WHERE id = '00000000-0000-4000-8000-000000000001';
ROLLBACK TO SAVEPOINT s;
COMMIT;
SELECT * FROM take();

-- multi-row statements give every row's events, in order
INSERT INTO tasks (id, user_id, title)
SELECT ('00000000-0000-4000-8000-00000000010' || i)::uuid, '00000000-0000-4000-8000-0000000000aa', 'bulk ' || i
  FROM generate_series(1, 3) i;
UPDATE tasks SET completed = true WHERE title LIKE 'bulk%';
DELETE FROM tasks WHERE title LIKE 'bulk%';
SELECT t.task_id, s.type FROM taskevents.outbox t, LATERAL taskevents.preview(t.seq) WITH ORDINALITY s
 ORDER BY t.seq, s.ordinality;
CALL clear_queue();
