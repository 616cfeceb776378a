-- taskevents 1.2 -> 1.3: replay.  A fresh install runs taskevents--1.0.sql
-- and the upgrade scripts after it, so every install goes through this one.
\echo Use "ALTER EXTENSION taskevents UPDATE" to load this file. \quit

-- The 1.3 library must be the one loaded (install it, restart, then update).
DO $$
BEGIN
    IF taskevents._library_version() <> '1.3' THEN
        RAISE EXCEPTION 'taskevents: the loaded library is version %, not 1.3', taskevents._library_version()
            USING HINT = 'Install the 1.3 library and restart the server first.';
    END IF;
END
$$;

-- Queue a kept change again, under a new number, as it was (its event ids,
-- time, trace and contents), marked as a replayed copy (src/taskevents.c).
CREATE FUNCTION taskevents._requeue(taskevents.queue) RETURNS bigint
    AS 'MODULE_PATHNAME', 'taskevents_requeue' LANGUAGE C STRICT;

-- Publish again the changes the queue keeps (taskevents.retention) made at
-- or after since, or numbered from from_seq on, with their original event
-- ids: each is queued again behind everything committed so far, in number
-- order, and goes out through the same queue, order and retries as live
-- changes.  Writers of attached tables wait for the call (it locks them in
-- SHARE mode), so every change of a task from the first replayed one to
-- its newest is in the replay: a consumer applying each task's events in
-- order ends with its latest state (docs/delivery.md).  Replayed copies are
-- never replayed themselves.  Returns the number of changes queued.
CREATE FUNCTION taskevents.replay(since timestamptz DEFAULT NULL, from_seq bigint DEFAULT NULL)
RETURNS bigint LANGUAGE plpgsql SET search_path = pg_catalog AS $$
DECLARE
    run constant bigint := 32768;          -- numbers per run of a queue table (src/outbox.h)
    replayed constant integer := 65536;    -- TE_F_REPLAYED (src/cloudevent.h): a copy
    retention text := coalesce(current_setting('taskevents.retention', true), '?');
    last bigint;
    r bigint;
    kept_from bigint;
    oldest timestamptz;
    b record;
    t regclass;
    q taskevents.queue;
    n bigint := 0;
BEGIN
    IF (since IS NULL) = (from_seq IS NULL) THEN
        RAISE EXCEPTION 'taskevents.replay: give either since or from_seq'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'SELECT taskevents.replay(since => now() - interval ''1 hour''); or SELECT taskevents.replay(from_seq => 12345);';
    END IF;
    IF current_setting('transaction_isolation') <> 'read committed' THEN
        RAISE EXCEPTION 'taskevents.replay: the transaction must be READ COMMITTED, not %',
            upper(current_setting('transaction_isolation'))
            USING ERRCODE = 'invalid_transaction_state',
                  DETAIL = 'It waits for the writers of the attached tables, then reads what they committed.';
    END IF;

    -- One replay at a time, and none while a backfill runs: a chunk's
    -- snapshots, numbered below the copies, could commit after them.
    LOCK TABLE taskevents.backfill IN SHARE ROW EXCLUSIVE MODE;
    SELECT * INTO b FROM taskevents.backfill WHERE state = 'running' ORDER BY id LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'taskevents.replay: backfill % of % is running', b.id, b.tbl
            USING ERRCODE = 'object_in_use',
                  HINT = format('Wait for it (SELECT * FROM taskevents.backfill_progress), or cancel it: SELECT taskevents.backfill_cancel(%s);', b.id);
    END IF;
    -- Writers in flight end first and later ones wait for this transaction:
    -- every change numbered below the copies is committed (and read below)
    -- or rolled back.  The queue tables are not emptied meanwhile.
    FOR t IN SELECT a."table" FROM taskevents.attachments a ORDER BY a."table"::oid LOOP
        EXECUTE format('LOCK TABLE ONLY %s IN SHARE MODE', t);
    END LOOP;
    LOCK TABLE taskevents.queue_0, taskevents.queue_1, taskevents.queue_2 IN ACCESS SHARE MODE;

    -- What is kept: a queue table is emptied only whole, once its run of
    -- numbers is over and read, so a run with a row left is kept whole.
    -- The run being written is kept; so is every run below it down to the
    -- first one with no row left.
    SELECT CASE WHEN is_called THEN last_value ELSE last_value - 1 END INTO last FROM taskevents.outbox_seq;
    r := (last + 1) / run;
    WHILE r > 0 AND EXISTS (SELECT FROM taskevents.queue c WHERE c.seq >= (r - 1) * run AND c.seq < r * run) LOOP
        r := r - 1;
    END LOOP;
    kept_from := greatest(r * run, 1);
    IF from_seq < kept_from THEN
        RAISE EXCEPTION 'taskevents.replay: changes numbered below % are no longer kept', kept_from
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  DETAIL = format('Delivered changes are kept for taskevents.retention (%s), then their queue table is emptied.', retention),
                  HINT = format('Replay from %s on, and raise taskevents.retention to keep more history.', kept_from);
    END IF;
    IF since IS NOT NULL AND kept_from > 1 THEN
        -- the changes emptied away were made before the oldest one kept
        SELECT c.changed_at INTO oldest FROM taskevents.queue c
         WHERE c.seq >= kept_from AND c.events & replayed = 0 ORDER BY c.seq LIMIT 1;
        IF since < coalesce(oldest, now()) THEN
            RAISE EXCEPTION 'taskevents.replay: changes made before % are no longer kept', coalesce(oldest, now())
                USING ERRCODE = 'object_not_in_prerequisite_state',
                      DETAIL = format('Delivered changes are kept for taskevents.retention (%s), then their queue table is emptied.', retention),
                      HINT = 'Replay from a later time, and raise taskevents.retention to keep more history.';
        END IF;
    END IF;

    FOR q IN SELECT * FROM taskevents.queue c
              WHERE c.seq >= coalesce(from_seq, kept_from) AND c.events & replayed = 0
                AND (since IS NULL OR c.changed_at >= since)
              ORDER BY c.seq
    LOOP
        PERFORM taskevents._requeue(q);
        n := n + 1;
    END LOOP;
    PERFORM taskevents._wake_at_commit();
    RETURN n;
END
$$;

REVOKE ALL ON FUNCTION taskevents._requeue(taskevents.queue),
    taskevents.replay(timestamptz, bigint) FROM PUBLIC;

-- detach() (and attach(), which calls it first) locks the table before it
-- looks at its triggers: a call waits for another one in flight and then
-- sees what it committed, instead of failing on a trigger that appeared
-- or vanished meanwhile.  The lock is the one CREATE TRIGGER takes; it
-- also waits for the table's writers in flight.
CREATE OR REPLACE FUNCTION taskevents.detach(tbl regclass) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog AS $$
DECLARE
    tg name;
BEGIN
    IF tbl IS NULL THEN
        RETURN;
    END IF;
    EXECUTE format('LOCK TABLE ONLY %s IN SHARE ROW EXCLUSIVE MODE', tbl);
    FOR tg IN SELECT tgname FROM pg_trigger WHERE tgrelid = tbl
                 AND tgname IN ('taskevents_capture', 'taskevents_capture_truncate')
    LOOP
        EXECUTE format('DROP TRIGGER %I ON %s', tg, tbl);
    END LOOP;
END
$$;
