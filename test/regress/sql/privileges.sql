-- An application role with rights on tasks only: its writes are captured, but
-- it can neither read nor write the outbox, the dead letters or the settings
-- that name the endpoint.
SET client_min_messages = warning;
CALL clear_queue();
CREATE ROLE app_writer LOGIN;
GRANT SELECT, INSERT, UPDATE, DELETE ON tasks TO app_writer;
SET ROLE app_writer;
INSERT INTO tasks (id, user_id, title) VALUES ('00000000-0000-4000-8000-00000000b001', gen_random_uuid(), 'by the app');
UPDATE tasks SET completed = true;
DELETE FROM tasks;
SELECT count(*) FROM taskevents.outbox;
INSERT INTO taskevents.queue_0 (seq, event_id, events, changed_at, task_id, trace_id)
    VALUES (1, gen_random_uuid(), 1, now(), 'x', 'y');
DELETE FROM taskevents.outbox;
SELECT * FROM taskevents.dead_letters;
SELECT * FROM taskevents.status;
SELECT taskevents.resend();
SELECT taskevents.attach('tasks');
SELECT taskevents.preview(1);
SELECT taskevents.backfill();
SELECT taskevents.backfill_cancel();
SELECT count(*) FROM taskevents.backfill_progress;
SELECT taskevents.replay(from_seq => 1);
-- PostgreSQL 16+ words these errors differently, with a DETAIL: test/regress/expected/privileges_1.out
SHOW taskevents.host;
SHOW taskevents.port;
SHOW taskevents.api_token_file;
SELECT count(*) AS visible_endpoint_settings FROM pg_settings
 WHERE name IN ('taskevents.host', 'taskevents.port', 'taskevents.pubsub', 'taskevents.api_token_file');
SET taskevents.host = 'evil.example';
-- the correlation id is the writer's to set
SET taskevents.trace_id = 'from-the-app';
RESET ROLE;
SELECT count(*) AS captured FROM taskevents.outbox;

-- pg_monitor members see the status, not the endpoint, and no event contents
CREATE ROLE monitor LOGIN IN ROLE pg_monitor;
SET ROLE monitor;
SELECT database, queue_depth FROM taskevents.status;
SELECT count(*) FROM taskevents.workers;
SELECT count(*) FROM taskevents.dead_letters;
SELECT count(*) FROM taskevents.dead_letter;
SELECT count(*) FROM taskevents.outbox;
SELECT count(*) FROM taskevents.queue_0;
SELECT count(*) FROM taskevents.retry;
SELECT count(*) FROM taskevents.pending;
SELECT * FROM taskevents.preview(1);
SELECT count(*) FROM taskevents.backfill_progress;
SELECT count(*) FROM taskevents.backfill;
SELECT taskevents.backfill();
SELECT taskevents.replay(from_seq => 1);
SELECT taskevents._requeue(ROW(1, gen_random_uuid(), 1, now(), 'x', NULL, NULL, NULL, NULL, NULL, 'y', NULL)::taskevents.queue);
SELECT taskevents.resend();
SELECT taskevents._wake_at_commit();
RESET ROLE;
CALL clear_queue();
DROP ROLE monitor;
REVOKE ALL ON tasks FROM app_writer;
DROP ROLE app_writer;
