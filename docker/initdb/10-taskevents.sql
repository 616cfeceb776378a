-- 10-taskevents.sql: first-start setup of the task database.
--
-- The official postgres image runs this once, when it creates the data
-- directory, as $POSTGRES_USER in $POSTGRES_DB (docker/compose.yaml and the
-- Kubernetes StatefulSet set POSTGRES_DB=tasks), with ON_ERROR_STOP on.
-- An existing data directory skips it: there, run the CREATE EXTENSION by hand.

-- The task table, as the API (seed) writes it, with the due date that makes
-- reminder events real.
CREATE TABLE IF NOT EXISTS tasks (
    id          uuid PRIMARY KEY,
    user_id     uuid,
    title       text,
    completed   boolean DEFAULT false,
    due_date    timestamptz,
    created_at  timestamptz DEFAULT now(),
    updated_at  timestamptz DEFAULT now()
);

-- Capture attaches to the visible table "tasks" by itself; delivery starts
-- when this commits (the image preloads the library).
CREATE EXTENSION IF NOT EXISTS taskevents;

-- The application's role needs only its rights on the table: the outbox, the
-- dead letters and the endpoint settings stay out of its reach. NOLOGIN here;
-- give it a login (or grant it to the API's login role) in a real deployment.
-- The compose writer uses it through SET ROLE.
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'tasks_app') THEN
        CREATE ROLE tasks_app NOLOGIN;
    END IF;
END
$$;

GRANT SELECT, INSERT, UPDATE, DELETE ON tasks TO tasks_app;
