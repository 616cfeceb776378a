-- taskevents 1.1 -> 1.2.  A fresh install runs taskevents--1.0.sql and the
-- upgrade scripts after it, so every install goes through this one.
\echo Use "ALTER EXTENSION taskevents UPDATE" to load this file. \quit

-- The 1.2 library must be the one loaded (install it, restart, then update).
DO $$
BEGIN
    IF taskevents._library_version() <> '1.2' THEN
        RAISE EXCEPTION 'taskevents: the loaded library is version %, not 1.2', taskevents._library_version()
            USING HINT = 'Install the 1.2 library and restart the server first.';
    END IF;
END
$$;

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
    FOREACH t IN ARRAY ARRAY['queue_0', 'queue_1', 'queue_2', 'tick', 'retry', 'dead_letter'] LOOP
        EXECUTE format('CREATE TRIGGER taskevents_replicated BEFORE INSERT OR UPDATE OR DELETE ON taskevents.%I'
                       ' FOR EACH ROW EXECUTE FUNCTION taskevents._replicated()', t);
        EXECUTE format('CREATE TRIGGER taskevents_replicated_truncate BEFORE TRUNCATE ON taskevents.%I'
                       ' FOR EACH STATEMENT EXECUTE FUNCTION taskevents._replicated()', t);
        EXECUTE format('ALTER TABLE taskevents.%I ENABLE REPLICA TRIGGER taskevents_replicated', t);
        EXECUTE format('ALTER TABLE taskevents.%I ENABLE REPLICA TRIGGER taskevents_replicated_truncate', t);
    END LOOP;
END
$$;

REVOKE ALL ON FUNCTION taskevents._replicated() FROM PUBLIC;
