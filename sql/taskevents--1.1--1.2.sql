-- taskevents 1.1 -> 1.2.  A fresh install runs taskevents--1.0.sql and the
-- upgrade scripts after it, so every install goes through this one.
\echo Use "ALTER EXTENSION taskevents UPDATE" to load this file. \quit

-- The 1.2 library must be the one loaded (install it, restart, then update).
DO $$
BEGIN
    IF taskevents._library_version() NOT IN ('1.2', '1.3') THEN
        RAISE EXCEPTION 'taskevents: the loaded library is version %, not 1.2', taskevents._library_version()
            USING HINT = 'Install the 1.2 library and restart the server first.';
    END IF;
END
$$;

-- Backfills (src/backfill.c): the worker queues the current state of every
-- matching task of a table, a chunk at a time, as the role that asked.
CREATE TABLE taskevents.backfill (
    id           bigserial PRIMARY KEY,
    tbl          regclass NOT NULL,
    filter       text,                   -- an SQL condition on the table's rows (t.*), NULL: all
    owner        regrole NOT NULL,       -- the role the chunks run as
    rate         integer NOT NULL DEFAULT 0 CHECK (rate >= 0),   -- rows a second, 0: no limit
    state        text NOT NULL DEFAULT 'running' CHECK (state IN ('running', 'done', 'cancelled', 'failed')),
    last_key     text,                   -- the id of the last row queued, as text
    rows_done    bigint NOT NULL DEFAULT 0,
    rows_total   bigint,                 -- the matching rows when it started
    error        text,
    started_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    finished_at  timestamptz
);
SELECT pg_catalog.pg_extension_config_dump('taskevents.backfill', '');
SELECT pg_catalog.pg_extension_config_dump('taskevents.backfill_id_seq', '');

-- Publish the current state of every task of an attached table (NULL: of
-- every attached table) that matches filter, through the same queue,
-- order and retries as live changes: task.snapshot and sync.task, and
-- reminder.scheduled when it has a due date.  One backfill at a time.
-- filter is evaluated as the caller, with search_path pg_catalog.
CREATE FUNCTION taskevents.backfill(tbl regclass DEFAULT NULL, filter text DEFAULT NULL,
                                    rows_per_second integer DEFAULT 0)
RETURNS SETOF bigint LANGUAGE plpgsql SET search_path = pg_catalog AS $$
DECLARE
    b record;
    t regclass;
    n bigint;
    new_id bigint;
BEGIN
    LOCK TABLE taskevents.backfill IN SHARE ROW EXCLUSIVE MODE;
    SELECT * INTO b FROM taskevents.backfill WHERE state = 'running' ORDER BY id LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'taskevents.backfill: backfill % of % is running (% of % rows)',
            b.id, b.tbl, b.rows_done, coalesce(b.rows_total::text, '?')
            USING ERRCODE = 'object_in_use',
                  HINT = format('Wait for it (SELECT * FROM taskevents.backfill_progress), or cancel it: SELECT taskevents.backfill_cancel(%s);', b.id);
    END IF;
    IF rows_per_second IS NULL OR rows_per_second < 0 THEN
        RAISE EXCEPTION 'taskevents.backfill: rows_per_second must be 0 (no limit) or more'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    FOR t IN SELECT a."table" FROM taskevents.attachments a
              WHERE backfill.tbl IS NULL OR a."table" = backfill.tbl ORDER BY a."table"::oid
    LOOP
        -- counted as the caller, with the filter: a filter that does not work fails here
        EXECUTE format('SELECT count(*) FROM ONLY %s t WHERE (%s)', t, coalesce(filter, 'true')) INTO n;
        INSERT INTO taskevents.backfill (tbl, filter, owner, rate, rows_total)
        VALUES (t, filter, current_user::regrole, rows_per_second, n) RETURNING id INTO new_id;
        RETURN NEXT new_id;
    END LOOP;
    IF new_id IS NULL THEN
        RAISE EXCEPTION 'taskevents.backfill: %', CASE WHEN tbl IS NULL THEN 'no table is attached'
                                                  ELSE format('%s is not attached', tbl) END
            USING ERRCODE = 'undefined_table', HINT = 'Attach it first: SELECT taskevents.attach(''schema.table'');';
    END IF;
    PERFORM taskevents._wake_at_commit();
END
$$;

-- Stop a running backfill (every running one when id is NULL); returns how many.
CREATE FUNCTION taskevents.backfill_cancel(id bigint DEFAULT NULL) RETURNS bigint
LANGUAGE sql SET search_path = pg_catalog AS $$
    WITH c AS (UPDATE taskevents.backfill b SET state = 'cancelled', finished_at = now(), updated_at = now()
                WHERE b.state = 'running' AND (backfill_cancel.id IS NULL OR b.id = backfill_cancel.id)
               RETURNING 1)
    SELECT count(*) FROM c
$$;

-- Backfills: progress, rate and what is left.
CREATE VIEW taskevents.backfill_progress AS
SELECT id, tbl AS "table", state, rows_done, rows_total,
       round(100.0 * rows_done / nullif(rows_total, 0), 1) AS percent,
       round(rows_done / nullif(extract(epoch FROM coalesce(finished_at, now()) - started_at), 0)) AS rows_per_second,
       CASE WHEN state = 'running' AND rows_done > 0 AND rows_total > rows_done
            THEN (now() - started_at) * ((rows_total - rows_done)::float8 / rows_done) END AS eta,
       rate AS rate_limit, filter, owner, error, started_at, finished_at
  FROM taskevents.backfill;

-- The queue is this database's own.  Logical replication that carries the
-- taskevents schema (a publication FOR ALL TABLES) would bring another
-- database's queue, cursor, retry state and dead letters here: they would
-- be delivered twice and collide with this database's numbers.  A trigger
-- fired in replica sessions drops such row changes and refuses a
-- replicated TRUNCATE of a table that holds this database's changes
-- (src/outbox.c); every other session passes through it.
CREATE FUNCTION taskevents._replicated() RETURNS trigger
    AS 'MODULE_PATHNAME', 'taskevents_replicated' LANGUAGE C;
DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['queue_0', 'queue_1', 'queue_2', 'tick', 'retry', 'dead_letter', 'backfill'] LOOP
        EXECUTE format('CREATE TRIGGER taskevents_replicated BEFORE INSERT OR UPDATE OR DELETE ON taskevents.%I'
                       ' FOR EACH ROW EXECUTE FUNCTION taskevents._replicated()', t);
        EXECUTE format('CREATE TRIGGER taskevents_replicated_truncate BEFORE TRUNCATE ON taskevents.%I'
                       ' FOR EACH STATEMENT EXECUTE FUNCTION taskevents._replicated()', t);
        EXECUTE format('ALTER TABLE taskevents.%I ENABLE REPLICA TRIGGER taskevents_replicated', t);
        EXECUTE format('ALTER TABLE taskevents.%I ENABLE REPLICA TRIGGER taskevents_replicated_truncate', t);
    END LOOP;
END
$$;

REVOKE ALL ON FUNCTION taskevents._replicated(), taskevents.backfill(regclass, text, integer),
    taskevents.backfill_cancel(bigint) FROM PUBLIC;
REVOKE ALL ON taskevents.backfill, taskevents.backfill_progress FROM PUBLIC;
REVOKE ALL ON SEQUENCE taskevents.backfill_id_seq FROM PUBLIC;
GRANT SELECT ON taskevents.backfill_progress TO pg_monitor;
