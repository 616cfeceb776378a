-- The baseline: what a team writes without taskevents, a PL/pgSQL trigger
-- that writes two jsonb outbox rows (the event and the sync) per change.
CREATE TABLE outbox (id bigserial PRIMARY KEY, topic text NOT NULL, payload jsonb NOT NULL,
                     created_at timestamptz NOT NULL DEFAULT now());
CREATE FUNCTION tasks_outbox() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    t tasks;
    action text;
BEGIN
    IF TG_OP = 'DELETE' THEN t := OLD; action := 'deleted';
    ELSIF TG_OP = 'INSERT' THEN t := NEW; action := 'created';
    ELSIF OLD.completed IS DISTINCT FROM NEW.completed THEN
        t := NEW; action := CASE WHEN NEW.completed THEN 'completed' ELSE 'uncompleted' END;
    ELSIF OLD.title IS DISTINCT FROM NEW.title OR OLD.due_date IS DISTINCT FROM NEW.due_date THEN
        t := NEW; action := 'updated';
    ELSE
        RETURN NULL;
    END IF;
    INSERT INTO outbox (topic, payload) VALUES
        ('task-events', jsonb_build_object('specversion', '1.0', 'id', gen_random_uuid(),
            'source', 'pakaura/api', 'type', 'task.' || action, 'time', now(),
            'subject', t.id, 'datacontenttype', 'application/json',
            'data', jsonb_build_object('task_id', t.id, 'user_id', t.user_id, 'action', action,
                                       'title', t.title, 'completed', t.completed))),
        ('task-updates', jsonb_build_object('specversion', '1.0', 'id', gen_random_uuid(),
            'source', 'pakaura/api', 'type', 'sync.task', 'time', now(), 'subject', t.id,
            'data', jsonb_build_object('task_id', t.id, 'user_id', t.user_id, 'action', action)));
    RETURN NULL;
END
$$;
CREATE TRIGGER tasks_outbox AFTER INSERT OR UPDATE OR DELETE ON tasks
    FOR EACH ROW EXECUTE FUNCTION tasks_outbox();
