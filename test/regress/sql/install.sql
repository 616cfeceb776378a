-- Installing without shared_preload_libraries: capture works, a WARNING says
-- nothing is delivered, and without a tasks table a NOTICE says how to attach.
CREATE EXTENSION taskevents;
SELECT worker_state FROM taskevents.status;
DROP EXTENSION taskevents;

-- With a tasks table, CREATE EXTENSION attaches to it.
CREATE TABLE tasks (
    id uuid PRIMARY KEY,
    user_id uuid NOT NULL,
    title text NOT NULL,
    completed boolean NOT NULL DEFAULT false,
    due_date timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE EXTENSION taskevents;
SELECT * FROM taskevents.attachments;
SELECT tgname, tgtype FROM pg_trigger WHERE tgrelid = 'tasks'::regclass ORDER BY tgname;

-- DROP EXTENSION removes the triggers (no CASCADE needed), tables and functions.
DROP EXTENSION taskevents;
SELECT count(*) AS triggers_left FROM pg_trigger WHERE tgrelid = 'tasks'::regclass;
SELECT count(*) AS schema_left FROM pg_namespace WHERE nspname = 'taskevents';
INSERT INTO tasks (id, user_id, title) VALUES (gen_random_uuid(), gen_random_uuid(), 'no capture');
DELETE FROM tasks;

-- A role that owns another schema, the database owner included, cannot
-- plant a tasks table that gets attached, nor keep the application's from
-- being attached silently: with two tables named tasks, none is attached
-- and a WARNING names them and their owners.
CREATE ROLE regress_mallory;
CREATE SCHEMA other AUTHORIZATION regress_mallory;
CREATE TABLE other.tasks (LIKE tasks INCLUDING ALL);
ALTER TABLE other.tasks OWNER TO regress_mallory;
CREATE EXTENSION taskevents;
SELECT count(*) FROM taskevents.attachments;
DROP EXTENSION taskevents;
-- ... also when the planted one comes first on the search path.
ALTER ROLE CURRENT_USER SET search_path = other, public;
\c
CREATE EXTENSION taskevents;
SELECT count(*) FROM taskevents.attachments;
DROP EXTENSION taskevents;
ALTER ROLE CURRENT_USER RESET search_path;
\c
-- With the application's table named otherwise, the planted one, off the
-- search path, is left alone.
ALTER TABLE tasks RENAME TO todo_items;
CREATE EXTENSION taskevents;
SELECT count(*) FROM taskevents.attachments;
DROP EXTENSION taskevents;
-- A temporary table is the session's own, never the application's.
DROP TABLE other.tasks;
CREATE TEMP TABLE tasks (LIKE todo_items INCLUDING ALL);
CREATE EXTENSION taskevents;
SELECT count(*) FROM taskevents.attachments;
DROP EXTENSION taskevents;
DROP TABLE pg_temp.tasks;
ALTER TABLE todo_items RENAME TO tasks;
DROP SCHEMA other CASCADE;
DROP ROLE regress_mallory;

-- A tasks table of another shape: the extension installs, attach is explained.
ALTER TABLE tasks RENAME COLUMN title TO name;
CREATE EXTENSION taskevents;
SELECT count(*) FROM taskevents.attachments;
SELECT taskevents.attach('tasks', title => 'name');
SELECT "table", title FROM taskevents.attachments;
DROP EXTENSION taskevents;
ALTER TABLE tasks RENAME COLUMN name TO title;

-- Left installed for the tests that follow, with a helper that empties the queue.
CREATE EXTENSION taskevents;
CREATE PROCEDURE clear_queue() LANGUAGE sql AS $$
    TRUNCATE taskevents.queue_0, taskevents.queue_1, taskevents.queue_2, taskevents.retry
$$;
