-- taskevents 1.0 -> 1.1.  A fresh install runs taskevents--1.0.sql and then
-- this script, so every install goes through it.
--
-- The queue becomes three append-only tables (taskevents.queue_0 .. 2):
-- delivered changes are never deleted one by one, so a long transaction
-- leaves no dead rows for the worker to walk; a table is emptied with
-- TRUNCATE once all its changes are read (src/queue.c).  taskevents.outbox
-- becomes a view of the changes still waiting.  Changes waiting for a retry
-- are kept whole in taskevents.retry.  taskevents.tick holds where the
-- worker has read up to.
\echo Use "ALTER EXTENSION taskevents UPDATE" to load this file. \quit

-- The 1.1 library or a later one must be the one loaded (install it,
-- restart, then update): with 1.0's still loaded this fails, as it cannot
-- find the function.
CREATE FUNCTION taskevents._library_version() RETURNS text
    AS 'MODULE_PATHNAME', 'taskevents_library_version' LANGUAGE C STRICT;
DO $$
BEGIN
    IF taskevents._library_version() NOT IN ('1.1', '1.2', '1.3') THEN
        RAISE EXCEPTION 'taskevents: the loaded library is version %, not 1.1', taskevents._library_version()
            USING HINT = 'Install the 1.1 library and restart the server first.';
    END IF;
END
$$;

-- Writers wait until the update commits, then write into the new tables.
LOCK TABLE taskevents.outbox, taskevents.retry, taskevents.delivered, taskevents.dead_letter
    IN ACCESS EXCLUSIVE MODE;

DROP VIEW taskevents.pending;
DROP VIEW taskevents.status;
DROP VIEW taskevents.dead_letters;
DROP FUNCTION taskevents.preview(bigint);
DROP FUNCTION taskevents._cloudevents(taskevents.outbox, integer);
ALTER TABLE taskevents.outbox RENAME TO outbox_1_0;
ALTER TABLE taskevents.retry RENAME TO retry_1_0;
ALTER INDEX taskevents.retry_pkey RENAME TO retry_1_0_pkey;

-- The queue: sequence number s lives in queue_((s / 32768) % 3) (src/outbox.h).
CREATE TABLE taskevents.queue_0 (
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
);
CREATE TABLE taskevents.queue_1 (LIKE taskevents.queue_0 INCLUDING ALL);
CREATE TABLE taskevents.queue_2 (LIKE taskevents.queue_0 INCLUDING ALL);
CREATE VIEW taskevents.queue AS
    SELECT * FROM taskevents.queue_0
    UNION ALL SELECT * FROM taskevents.queue_1
    UNION ALL SELECT * FROM taskevents.queue_2;

-- Where the worker has read the queue up to: every change numbered up to hi
-- except those in the holes [hole_lo[i], hole_hi[i]].  Insert only; the
-- newest row counts (none yet: nothing read).
CREATE TABLE taskevents.tick (
    id       bigserial PRIMARY KEY,
    hi       bigint NOT NULL,
    hole_lo  bigint[] NOT NULL,
    hole_hi  bigint[] NOT NULL,
    at       timestamptz NOT NULL DEFAULT now()
);

-- Changes waiting for a retry, whole, and the later changes of their tasks
-- waiting behind them (next_attempt_at null).
CREATE TABLE taskevents.retry (
    LIKE taskevents.queue_0,
    done             integer NOT NULL,   -- events already settled (bit per slot)
    attempts         integer NOT NULL,   -- failed attempts of the next event
    next_attempt_at  timestamptz,        -- null: waiting behind an older change of the task
    last_status      integer NOT NULL,   -- HTTP status; 0: no answer
    last_error       text,
    PRIMARY KEY (seq)
);
CREATE INDEX retry_task ON taskevents.retry (task_id, seq);
CREATE INDEX retry_due ON taskevents.retry (next_attempt_at) WHERE next_attempt_at IS NOT NULL;

-- 1.0's queue: changes with a retry state keep it; the others are waiting.
INSERT INTO taskevents.retry
SELECT o.*, r.done, r.attempts, r.next_attempt_at, r.last_status, r.last_error
  FROM taskevents.outbox_1_0 o JOIN taskevents.retry_1_0 r ON r.seq = o.seq;
INSERT INTO taskevents.queue_0 SELECT o.* FROM taskevents.outbox_1_0 o
 WHERE (o.seq / 32768) % 3 = 0 AND NOT EXISTS (SELECT FROM taskevents.retry r WHERE r.seq = o.seq);
INSERT INTO taskevents.queue_1 SELECT o.* FROM taskevents.outbox_1_0 o
 WHERE (o.seq / 32768) % 3 = 1 AND NOT EXISTS (SELECT FROM taskevents.retry r WHERE r.seq = o.seq);
INSERT INTO taskevents.queue_2 SELECT o.* FROM taskevents.outbox_1_0 o
 WHERE (o.seq / 32768) % 3 = 2 AND NOT EXISTS (SELECT FROM taskevents.retry r WHERE r.seq = o.seq);
-- Everything below the oldest waiting change was read (and delivered).
INSERT INTO taskevents.tick (hi, hole_lo, hole_hi)
SELECT hi, '{}', '{}'
  FROM (SELECT coalesce((SELECT min(seq) - 1 FROM taskevents.queue),
                        (SELECT CASE WHEN is_called THEN last_value ELSE last_value - 1 END
                           FROM taskevents.outbox_seq)) AS hi) c
 WHERE hi > 0;

-- 1.0 kept delivered changes (taskevents.retention) in a table of their own;
-- 1.1 keeps them in the queue tables.  Those rows are not carried over.
DROP TABLE taskevents.outbox_1_0, taskevents.retry_1_0, taskevents.delivered;

-- A dead letter keeps no body when none could be built (a change too big);
-- the worker finds the re-queued ones by index, however many are dead.
ALTER TABLE taskevents.dead_letter ALTER COLUMN body DROP NOT NULL;
CREATE INDEX dead_letter_requeued ON taskevents.dead_letter (requeued_at) WHERE requeued_at IS NOT NULL;

SELECT pg_catalog.pg_extension_config_dump('taskevents.queue_0', '');
SELECT pg_catalog.pg_extension_config_dump('taskevents.queue_1', '');
SELECT pg_catalog.pg_extension_config_dump('taskevents.queue_2', '');
SELECT pg_catalog.pg_extension_config_dump('taskevents.tick', '');
SELECT pg_catalog.pg_extension_config_dump('taskevents.tick_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('taskevents.retry', '');

-- The changes still waiting: not read yet (above the cursor or in its
-- holes), or waiting for a retry.
CREATE VIEW taskevents.outbox AS
WITH cursor AS (
    SELECT t.hi, t.hole_lo, t.hole_hi
      FROM (SELECT id, hi, hole_lo, hole_hi FROM taskevents.tick
            UNION ALL SELECT 0, 0, '{}', '{}') t
     ORDER BY t.id DESC LIMIT 1
)
SELECT q.seq, q.event_id, q.events, q.changed_at, q.task_id, q.user_id, q.title,
       q.completed, q.due_date, q.changes, q.trace_id, q.traceparent
  FROM cursor, taskevents.queue q
 WHERE q.seq > cursor.hi
UNION ALL
SELECT q.seq, q.event_id, q.events, q.changed_at, q.task_id, q.user_id, q.title,
       q.completed, q.due_date, q.changes, q.trace_id, q.traceparent
  FROM cursor, unnest(cursor.hole_lo, cursor.hole_hi) AS h(lo, hi)
       JOIN taskevents.queue q ON q.seq BETWEEN h.lo AND h.hi
UNION ALL
SELECT seq, event_id, events, changed_at, task_id, user_id, title,
       completed, due_date, changes, trace_id, traceparent
  FROM taskevents.retry;

-- Changes read and settled (delivered or dead-lettered) that the queue
-- tables still hold: for taskevents.retention.
CREATE VIEW taskevents.delivered AS
SELECT q.* FROM taskevents.queue q
 WHERE NOT EXISTS (SELECT FROM taskevents.outbox o WHERE o.seq = q.seq);

CREATE FUNCTION taskevents._cloudevents(taskevents.outbox, integer,
    OUT event_id uuid, OUT type text, OUT topic text, OUT delivered boolean, OUT event text)
RETURNS SETOF record AS 'MODULE_PATHNAME', 'taskevents_cloudevents' LANGUAGE C STRICT STABLE;

-- The exact CloudEvents the worker sends for a queued change (event is null
-- when the change cannot be sent; its events become dead letters).
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

-- Dead letters, with the event as JSON (null: none could be built).
CREATE VIEW taskevents.dead_letters AS
SELECT event_id, type, topic, task_id, attempts, last_status, last_error,
       created_at, failed_at, requeued_at, body::json AS event
  FROM taskevents.dead_letter;

-- Wake the worker when the calling transaction commits.
CREATE FUNCTION taskevents._wake_at_commit() RETURNS void
    AS 'MODULE_PATHNAME', 'taskevents_wake_at_commit' LANGUAGE C;

-- Send dead letters again (all of them when ids is NULL); returns how many.
-- One without a body cannot be sent again and is left as it is.
CREATE OR REPLACE FUNCTION taskevents.resend(ids uuid[] DEFAULT NULL) RETURNS bigint
LANGUAGE sql SET search_path = pg_catalog AS $$
    SELECT taskevents._wake_at_commit();
    WITH r AS (UPDATE taskevents.dead_letter SET requeued_at = now()
                WHERE (ids IS NULL OR event_id = ANY(ids)) AND body IS NOT NULL RETURNING 1)
    SELECT count(*) FROM r
$$;

-- Attach capture to a table of the task shape (see 1.0) whose id is unique
-- and not null: per-task order follows the id.
CREATE OR REPLACE FUNCTION taskevents.attach(
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
    idnum int2;
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
    SELECT attnum INTO idnum FROM pg_attribute WHERE attrelid = tbl AND attname = attach.id;
    IF NOT EXISTS (SELECT FROM pg_index i
                    WHERE i.indrelid = tbl AND i.indisunique AND i.indnkeyatts = 1
                      AND i.indkey[0] = idnum AND i.indpred IS NULL)
       OR NOT (SELECT attnotnull FROM pg_attribute WHERE attrelid = tbl AND attnum = idnum) THEN
        RAISE EXCEPTION 'taskevents.attach: column "%" of % (the task''s id) must be unique and not null', attach.id, tbl
            USING ERRCODE = 'invalid_table_definition',
                  DETAIL = 'Events of one task are delivered in commit order, keyed by its id: ids that repeat would mix tasks.',
                  HINT = format('Make it the primary key: ALTER TABLE %s ADD PRIMARY KEY (%I);', tbl, attach.id);
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

-- Tables already attached whose id is not unique keep their capture, with a warning.
DO $$
DECLARE
    a record;
BEGIN
    FOR a IN SELECT * FROM taskevents.attachments LOOP
        IF NOT EXISTS (SELECT FROM pg_index i JOIN pg_attribute c
                         ON c.attrelid = i.indrelid AND c.attnum = i.indkey[0]
                        WHERE i.indrelid = a."table" AND i.indisunique AND i.indnkeyatts = 1
                          AND i.indpred IS NULL AND c.attname = a.id AND c.attnotnull) THEN
            RAISE WARNING 'taskevents: column "%" of % (the task''s id) is not unique and not null: events of different tasks with one id share one order', a.id, a."table"
                USING HINT = format('Make it the primary key: ALTER TABLE %s ADD PRIMARY KEY (%I);', a."table", a.id);
        END IF;
    END LOOP;
END
$$;

-- Only superusers may look at event contents; pg_monitor sees the status
-- and workers views (1.0 also let it read the queue and the dead letters).
REVOKE ALL ON ALL TABLES IN SCHEMA taskevents FROM PUBLIC;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA taskevents FROM PUBLIC;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA taskevents FROM PUBLIC;
REVOKE ALL ON taskevents.dead_letter FROM pg_monitor;
GRANT SELECT ON taskevents.status, taskevents.workers TO pg_monitor;
