-- The preview function, the pending view, dead letters and status, without a worker.
SET client_min_messages = warning;
CALL clear_queue();
INSERT INTO tasks (id, user_id, title, due_date) VALUES
    ('00000000-0000-4000-8000-00000000c001', '00000000-0000-4000-8000-0000000000aa', 'preview me', '2030-01-01Z');
SELECT type, topic, delivered, event->'data'->>'action' AS action
  FROM taskevents.preview((SELECT min(seq) FROM taskevents.outbox));
SELECT count(*) AS nothing_for_unknown_seq FROM taskevents.preview(-1);

-- Partly delivered changes show which events remain
INSERT INTO taskevents.retry
SELECT o.*, 1, 2, now() + interval '1 minute', 500, 'HTTP 500 ERR_PUBSUB_PUBLISH_MESSAGE'
  FROM taskevents.outbox o;
TRUNCATE taskevents.queue_0, taskevents.queue_1, taskevents.queue_2;
SELECT type, delivered FROM taskevents.preview((SELECT min(seq) FROM taskevents.outbox));
SELECT type, topic, attempts, last_error FROM taskevents.pending ORDER BY seq, type;

-- Status: the queue and the missing preload
SELECT database, worker_state, queue_depth, oldest_waiting_age IS NOT NULL AS has_age, dead_letters
  FROM taskevents.status;
CALL clear_queue();

-- Dead letters: shown as JSON, re-queued and dropped by id or all at once
INSERT INTO taskevents.dead_letter (event_id, seq, type, topic, task_id, body, attempts, last_status, last_error, created_at)
VALUES ('00000000-0000-4000-8000-0000000d0001', 1, 'task.created', 'task-events', 't1', '{"specversion":"1.0"}', 3, 403, 'HTTP 403 ERR_PUBSUB_FORBIDDEN', now()),
       ('00000000-0000-4000-8000-0000000d0002', 2, 'sync.task', 'task-updates', 't1', '{"specversion":"1.0"}', 1, 400, 'HTTP 400', now());
SELECT event_id, type, last_status, event, requeued_at IS NULL AS waiting FROM taskevents.dead_letters ORDER BY event_id;
SELECT taskevents.resend(ARRAY['00000000-0000-4000-8000-0000000d0001']::uuid[]) AS requeued;
SELECT event_id, requeued_at IS NOT NULL AS requeued FROM taskevents.dead_letters ORDER BY event_id;
SELECT taskevents.resend() AS requeued_all;
SELECT taskevents.drop_dead_letters(ARRAY['00000000-0000-4000-8000-0000000d0002']::uuid[]) AS dropped;
SELECT taskevents.drop_dead_letters() AS dropped_rest;
SELECT count(*) FROM taskevents.dead_letters;
SELECT * FROM taskevents.workers;
