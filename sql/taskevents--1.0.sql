-- taskevents 1.0: capture of task changes into an outbox, and its delivery
-- as CloudEvents through a Dapr sidecar.
\echo Use "CREATE EXTENSION taskevents" to load this file. \quit

-- Everything lives in the schema taskevents, a member of the extension (so
-- DROP EXTENSION removes it).  Application roles get no privilege on it: they
-- write tasks, the capture trigger writes the outbox.
CREATE SCHEMA taskevents;
REVOKE ALL ON SCHEMA taskevents FROM PUBLIC;

-- Orders changes: per task, the order of this sequence is commit order (two
-- changes of one task are serialised by the row lock).  No CACHE: cached
-- values would break that order across sessions.
CREATE SEQUENCE taskevents.outbox_seq;

-- One lean row per change; the worker builds the JSON.  Column order is
-- fixed (src/outbox.h).
CREATE TABLE taskevents.outbox (
    seq          bigint PRIMARY KEY,
    event_id     uuid NOT NULL,          -- base of the change's event ids
    events       integer NOT NULL,       -- which events (src/cloudevent.h)
    changed_at   timestamptz NOT NULL,
    task_id      text NOT NULL,
    user_id      text,
    title        text,
    completed    boolean,
    due_date     timestamptz,
    changes      text,                   -- JSON object, for task.updated
    trace_id     text NOT NULL,
    traceparent  text
) WITH (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 10000);
-- Delivered rows are deleted: vacuum after every 10,000 of them, whatever the
-- table's size, so it stays small under steady load.  (Inserts keep the
-- default thresholds: a growing queue is not vacuumed over and over.)

-- Delivery state of changes that failed or were partly delivered.
CREATE TABLE taskevents.retry (
    seq              bigint PRIMARY KEY,
    task_id          text NOT NULL,
    done             integer NOT NULL,   -- events already settled (bit per slot)
    attempts         integer NOT NULL,   -- failed attempts of the next event
    next_attempt_at  timestamptz NOT NULL,
    last_status      integer NOT NULL,   -- HTTP status; 0: no answer
    last_error       text
);
CREATE INDEX retry_task_id ON taskevents.retry (task_id, seq);

-- Events that could not be delivered, with the exact CloudEvent.
CREATE TABLE taskevents.dead_letter (
    event_id     uuid PRIMARY KEY,
    seq          bigint NOT NULL,
    type         text NOT NULL,
    topic        text NOT NULL,
    task_id      text NOT NULL,
    body         text NOT NULL,
    attempts     integer NOT NULL,
    last_status  integer NOT NULL,
    last_error   text,
    created_at   timestamptz NOT NULL,   -- when the change was made
    failed_at    timestamptz NOT NULL DEFAULT now(),
    requeued_at  timestamptz             -- set by taskevents.resend(): send again
);

-- Delivered changes, kept for taskevents.retention.
CREATE TABLE taskevents.delivered (LIKE taskevents.outbox, delivered_at timestamptz NOT NULL);
CREATE INDEX delivered_at ON taskevents.delivered (delivered_at);

-- pg_dump keeps the queue, the dead letters and the retention.
SELECT pg_catalog.pg_extension_config_dump('taskevents.outbox', '');
SELECT pg_catalog.pg_extension_config_dump('taskevents.outbox_seq', '');
SELECT pg_catalog.pg_extension_config_dump('taskevents.retry', '');
SELECT pg_catalog.pg_extension_config_dump('taskevents.dead_letter', '');
SELECT pg_catalog.pg_extension_config_dump('taskevents.delivered', '');

-- Capture ------------------------------------------------------------------

CREATE FUNCTION taskevents.capture() RETURNS trigger
    AS 'MODULE_PATHNAME', 'taskevents_capture' LANGUAGE C;
CREATE FUNCTION taskevents.capture_truncate() RETURNS trigger
    AS 'MODULE_PATHNAME', 'taskevents_capture_truncate' LANGUAGE C;
CREATE FUNCTION taskevents._own_trigger(regclass, text) RETURNS void
    AS 'MODULE_PATHNAME', 'taskevents_own_trigger' LANGUAGE C STRICT;

-- Attach capture to a table of the task shape.  The arguments name the
-- table's columns for each part of the shape; due_date may be NULL (no
-- reminders); ignore lists bookkeeping columns that never make an event.
CREATE FUNCTION taskevents.attach(
    tbl regclass,
    id text DEFAULT 'id',
    user_id text DEFAULT 'user_id',
    title text DEFAULT 'title',
    completed text DEFAULT 'completed',
    due_date text DEFAULT 'due_date',
    ignore text[] DEFAULT '{created_at,updated_at}')
RETURNS void LANGUAGE plpgsql SET search_path = pg_catalog AS $$
DECLARE
    col record;
    due text := due_date;
    args text;
BEGIN
    IF tbl IS NULL THEN
        RAISE EXCEPTION 'taskevents.attach: the table must not be null';
    END IF;
    IF (SELECT relkind FROM pg_class WHERE oid = tbl) <> 'r' THEN
        RAISE EXCEPTION 'taskevents.attach: % is not a plain table', tbl
            USING HINT = 'Attach a table; for a partitioned table, attach each partition.';
    END IF;
    FOR col IN SELECT * FROM (VALUES ('id', id), ('user_id', user_id), ('title', title),
                                     ('completed', completed)) AS m(role, name)
    LOOP
        IF col.name IS NULL OR NOT EXISTS (SELECT FROM pg_attribute
                 WHERE attrelid = tbl AND attname = col.name AND attnum > 0 AND NOT attisdropped) THEN
            RAISE EXCEPTION 'taskevents.attach: table % has no column "%" (the task''s %)',
                tbl, coalesce(col.name, ''), col.role
                USING ERRCODE = 'undefined_column',
                      HINT = format('Name the column: SELECT taskevents.attach(%L, %s => ''...'');', tbl::text, col.role);
        END IF;
    END LOOP;
    IF (SELECT atttypid FROM pg_attribute WHERE attrelid = tbl AND attname = completed) <> 'boolean'::regtype THEN
        RAISE EXCEPTION 'taskevents.attach: column "%" of % (the task''s completed) must be boolean', completed, tbl
            USING ERRCODE = 'datatype_mismatch';
    END IF;
    IF due IS NOT NULL AND NOT EXISTS (SELECT FROM pg_attribute
            WHERE attrelid = tbl AND attname = due AND attnum > 0 AND NOT attisdropped) THEN
        IF due <> 'due_date' THEN
            RAISE EXCEPTION 'taskevents.attach: table % has no column "%" (the task''s due_date)', tbl, due
                USING ERRCODE = 'undefined_column';
        END IF;
        due := NULL;   -- the default name, absent: no reminder events
    END IF;
    IF due IS NOT NULL AND (SELECT atttypid FROM pg_attribute WHERE attrelid = tbl AND attname = due)
            NOT IN ('timestamptz'::regtype, 'timestamp'::regtype, 'date'::regtype) THEN
        RAISE EXCEPTION 'taskevents.attach: column "%" of % (the task''s due_date) must be timestamptz, timestamp or date', due, tbl
            USING ERRCODE = 'datatype_mismatch';
    END IF;

    args := concat_ws(', ', quote_literal(id), quote_literal(user_id), quote_literal(title),
                      quote_literal(completed), quote_literal(coalesce(due, '')),
                      (SELECT string_agg(quote_literal(i), ', ') FROM unnest(ignore) AS i));
    PERFORM taskevents.detach(tbl);
    EXECUTE format('CREATE TRIGGER taskevents_capture AFTER INSERT OR UPDATE OR DELETE ON %s'
                   ' FOR EACH ROW EXECUTE FUNCTION taskevents.capture(%s)', tbl, args);
    EXECUTE format('CREATE TRIGGER taskevents_capture_truncate BEFORE TRUNCATE ON %s'
                   ' FOR EACH STATEMENT EXECUTE FUNCTION taskevents.capture_truncate(%s)', tbl, args);
    PERFORM taskevents._own_trigger(tbl, 'taskevents_capture');
    PERFORM taskevents._own_trigger(tbl, 'taskevents_capture_truncate');
    IF due IS NULL THEN
        RAISE NOTICE 'taskevents: % has no due date column: no reminder events', tbl;
    END IF;
END
$$;

-- Stop capturing a table's changes (queued events are still delivered).
CREATE FUNCTION taskevents.detach(tbl regclass) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog AS $$
DECLARE
    tg name;
BEGIN
    FOR tg IN SELECT tgname FROM pg_trigger WHERE tgrelid = tbl
                 AND tgname IN ('taskevents_capture', 'taskevents_capture_truncate')
    LOOP
        EXECUTE format('DROP TRIGGER %I ON %s', tg, tbl);
    END LOOP;
END
$$;

-- The attached tables and their column mapping.
CREATE VIEW taskevents.attachments AS
SELECT t.tgrelid::regclass AS "table",
       a[1] AS id, a[2] AS user_id, a[3] AS title, a[4] AS completed,
       nullif(a[5], '') AS due_date, a[6:] AS ignore
  FROM pg_trigger t,
       LATERAL (SELECT string_to_array(rtrim(encode(t.tgargs, 'escape'), E'\\000'), E'\\000')) AS s(a)
 WHERE t.tgname = 'taskevents_capture'
   AND t.tgfoid = 'taskevents.capture()'::regprocedure;

-- Events ---------------------------------------------------------------------

CREATE FUNCTION taskevents._cloudevents(taskevents.outbox, integer,
    OUT event_id uuid, OUT type text, OUT topic text, OUT delivered boolean, OUT event text)
RETURNS SETOF record AS 'MODULE_PATHNAME', 'taskevents_cloudevents' LANGUAGE C STRICT STABLE;

-- The exact CloudEvents the worker sends for a queued change.
CREATE FUNCTION taskevents.preview(seq bigint)
RETURNS TABLE (event_id uuid, type text, topic text, delivered boolean, event json)
LANGUAGE sql STABLE SET search_path = pg_catalog AS $$
    SELECT e.event_id, e.type, e.topic, e.delivered, e.event::json
      FROM taskevents.outbox o
           CROSS JOIN LATERAL taskevents._cloudevents(o,
               coalesce((SELECT r.done FROM taskevents.retry r WHERE r.seq = o.seq), 0)) e
     WHERE o.seq = preview.seq
$$;

-- Every queued event, oldest first.
CREATE VIEW taskevents.pending AS
SELECT o.seq, o.changed_at, o.task_id, e.event_id, e.type, e.topic,
       r.attempts, r.next_attempt_at, r.last_error, e.event::json AS event
  FROM taskevents.outbox o
       LEFT JOIN taskevents.retry r ON r.seq = o.seq
       CROSS JOIN LATERAL taskevents._cloudevents(o, coalesce(r.done, 0)) e
 WHERE NOT e.delivered;

-- Operations -------------------------------------------------------------------

CREATE FUNCTION taskevents._delivery_available() RETURNS boolean
    AS 'MODULE_PATHNAME', 'taskevents_delivery_available' LANGUAGE C;
CREATE FUNCTION taskevents._start_delivery() RETURNS void
    AS 'MODULE_PATHNAME', 'taskevents_start_delivery' LANGUAGE C;
CREATE FUNCTION taskevents._workers(
    OUT database_oid oid, OUT pid integer, OUT state text, OUT sidecar_reachable boolean,
    OUT started_at timestamptz, OUT published bigint, OUT retried bigint, OUT dead bigint,
    OUT last_error text, OUT last_error_at timestamptz)
RETURNS SETOF record AS 'MODULE_PATHNAME', 'taskevents_workers' LANGUAGE C;

-- Delivery workers of every database (counters since each worker started).
CREATE VIEW taskevents.workers AS
SELECT d.datname AS database, w.pid, w.state, w.sidecar_reachable, w.started_at,
       w.published, w.retried, w.dead, w.last_error, w.last_error_at
  FROM taskevents._workers() w
  LEFT JOIN pg_database d ON d.oid = w.database_oid;

-- This database's delivery at a glance.
CREATE VIEW taskevents.status AS
SELECT current_database() AS database,
       CASE WHEN NOT taskevents._delivery_available()
            THEN 'not delivering: taskevents is not in shared_preload_libraries'
            ELSE coalesce(w.state, 'stopped') END AS worker_state,
       w.pid,
       w.sidecar_reachable,
       q.queue_depth,
       q.oldest_waiting_age,
       (SELECT count(*) FROM taskevents.dead_letter) AS dead_letters,
       w.published, w.retried, w.dead, w.last_error, w.last_error_at
  FROM (SELECT count(*) AS queue_depth, now() - min(changed_at) AS oldest_waiting_age
          FROM taskevents.outbox) q
  LEFT JOIN taskevents._workers() w
         ON w.database_oid = (SELECT oid FROM pg_database WHERE datname = current_database());

-- Dead letters, with the event as JSON.
CREATE VIEW taskevents.dead_letters AS
SELECT event_id, type, topic, task_id, attempts, last_status, last_error,
       created_at, failed_at, requeued_at, body::json AS event
  FROM taskevents.dead_letter;

-- Send dead letters again (all of them when ids is NULL); returns how many.
CREATE FUNCTION taskevents.resend(ids uuid[] DEFAULT NULL) RETURNS bigint
LANGUAGE sql SET search_path = pg_catalog AS $$
    WITH r AS (UPDATE taskevents.dead_letter SET requeued_at = now()
                WHERE ids IS NULL OR event_id = ANY(ids) RETURNING 1)
    SELECT count(*) FROM r
$$;

-- Drop dead letters (all of them when ids is NULL); returns how many.
CREATE FUNCTION taskevents.drop_dead_letters(ids uuid[] DEFAULT NULL) RETURNS bigint
LANGUAGE sql SET search_path = pg_catalog AS $$
    WITH d AS (DELETE FROM taskevents.dead_letter
                WHERE ids IS NULL OR event_id = ANY(ids) RETURNING 1)
    SELECT count(*) FROM d
$$;

-- Only superusers (and members of pg_monitor, for the views) may look.
REVOKE ALL ON ALL TABLES IN SCHEMA taskevents FROM PUBLIC;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA taskevents FROM PUBLIC;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA taskevents FROM PUBLIC;
GRANT USAGE ON SCHEMA taskevents TO pg_monitor;
GRANT SELECT ON taskevents.status, taskevents.workers TO pg_monitor;
GRANT EXECUTE ON FUNCTION taskevents._delivery_available(), taskevents._workers() TO pg_monitor;
GRANT SELECT ON taskevents.outbox, taskevents.dead_letter TO pg_monitor;

-- Install: attach to the tasks table, start delivery at commit -----------------

DO $$
DECLARE
    script_path text := current_setting('search_path');
    candidates text;
    found regclass;
BEGIN
    IF NOT taskevents._delivery_available() THEN
        RAISE WARNING 'taskevents: the library is not in shared_preload_libraries: changes are captured but nothing is delivered'
            USING HINT = 'Add taskevents to shared_preload_libraries and restart the server.';
    END IF;
    PERFORM taskevents._start_delivery();

    -- Capture is attached to a table named tasks only when it is the one
    -- such table of the database and an unqualified "tasks" names it in a
    -- new session of this role (CREATE EXTENSION runs the script with a
    -- search path of its own).  Another schema's owner, the database owner
    -- included, can then only keep it from being attached, loudly.
    SELECT string_agg(format('%s (owner %s)', c.oid::regclass, pg_catalog.pg_get_userbyid(c.relowner)), ', '
                      ORDER BY n.nspname)
      INTO candidates
      FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
     WHERE c.relname = 'tasks' AND c.relkind = 'r' AND c.relpersistence <> 't'
       AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'taskevents')
       AND n.nspname NOT LIKE 'pg\_%';
    PERFORM set_config('search_path',
        (SELECT reset_val FROM pg_catalog.pg_settings WHERE name = 'search_path') || ', pg_temp', true);
    found := pg_catalog.to_regclass('tasks');
    PERFORM set_config('search_path', script_path, true);
    IF found IS NOT NULL AND (SELECT relpersistence = 't' FROM pg_catalog.pg_class WHERE oid = found) THEN
        found := NULL;
    END IF;
    IF candidates IS NULL THEN
        RAISE NOTICE 'taskevents: no table "tasks" found; attach yours with SELECT taskevents.attach(''schema.table'');';
    ELSIF found IS NULL OR candidates LIKE '%),%' THEN
        RAISE WARNING 'taskevents: no table attached: tables named "tasks": %', candidates
            USING DETAIL = CASE WHEN found IS NULL THEN 'None of them is on the search path.'
                                ELSE 'There are several.' END,
                  HINT = 'Attach yours: SELECT taskevents.attach(''schema.table'');';
    ELSE
        BEGIN
            PERFORM taskevents.attach(found);
        EXCEPTION WHEN undefined_column OR datatype_mismatch THEN
            RAISE WARNING '%', SQLERRM
                USING HINT = 'Attach it with its column names: SELECT taskevents.attach(''tasks'', title => ''name'', ...);';
        END;
    END IF;
END
$$;
