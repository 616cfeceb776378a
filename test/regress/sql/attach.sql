-- Attaching tables of the task shape, with column mapping and clear errors.
SET client_min_messages = notice;
CALL clear_queue();

-- Another naming, integer ids, text user ids, a date due date, no bookkeeping
CREATE TABLE todo (
    todo_no bigint PRIMARY KEY,
    owner text,
    label varchar(200),
    done boolean,
    deadline date,
    touched_at timestamptz,
    note text
);
SELECT taskevents.attach('todo', id => 'todo_no', user_id => 'owner', title => 'label',
                         completed => 'done', due_date => 'deadline', ignore => '{touched_at}');
SELECT * FROM taskevents.attachments ORDER BY 1;
INSERT INTO todo VALUES (7, 'alice', 'mapped', false, '2030-01-02', now(), NULL);
UPDATE todo SET touched_at = now() + interval '1 minute';
UPDATE todo SET note = 'a note', done = true;
DELETE FROM todo;
SELECT p.type, ((p.event::jsonb)->'data') - 'timestamp' AS data, p.event->>'subject' AS subject
  FROM taskevents.outbox o, LATERAL taskevents.preview(o.seq) WITH ORDINALITY p(event_id, type, topic, delivered, event, n)
 ORDER BY o.seq, p.n;
CALL clear_queue();

-- No due date column: no reminders, a NOTICE says so
CREATE TABLE plain (id uuid PRIMARY KEY, user_id uuid, title text, completed boolean);
SELECT taskevents.attach('plain');
INSERT INTO plain VALUES ('00000000-0000-4000-8000-00000000a001', NULL, NULL, NULL);
SELECT p.type, ((p.event::jsonb)->'data') - 'timestamp' AS data
  FROM taskevents.outbox o, LATERAL taskevents.preview(o.seq) p ORDER BY p.type;
CALL clear_queue();

-- Errors name what is wrong, and attach nothing
CREATE TABLE wrong (id uuid PRIMARY KEY, user_id uuid, name text, completed boolean);
SELECT taskevents.attach('wrong');
SELECT taskevents.attach('wrong', title => 'name', user_id => 'owner');
SELECT taskevents.attach('wrong', title => 'name', due_date => 'deadline');
SELECT taskevents.attach('wrong', title => 'name', completed => 'name');
SELECT taskevents.attach('wrong', title => 'name', due_date => 'name');
SELECT taskevents.attach('nonexistent');
SELECT taskevents.attach(NULL);
CREATE VIEW a_view AS SELECT * FROM tasks;
SELECT taskevents.attach('a_view');
SELECT count(*) AS wrong_attached FROM taskevents.attachments WHERE "table" IN ('wrong'::regclass, 'a_view'::regclass);

-- The id must be unique and not null: per-task order follows it
CREATE TABLE loose (id uuid, user_id uuid, title text, completed boolean);
SELECT taskevents.attach('loose');
CREATE UNIQUE INDEX ON loose (id, user_id);
SELECT taskevents.attach('loose');
CREATE UNIQUE INDEX ON loose (id) WHERE completed;
SELECT taskevents.attach('loose');
CREATE UNIQUE INDEX ON loose (id);
SELECT taskevents.attach('loose');
ALTER TABLE loose ALTER COLUMN id SET NOT NULL;
SELECT taskevents.attach('loose');
SELECT "table", id FROM taskevents.attachments WHERE "table" = 'loose'::regclass;

-- Attaching again replaces the mapping; detach stops capture
SELECT taskevents.attach('wrong', title => 'name');
SELECT taskevents.attach('wrong', title => 'name', ignore => '{user_id}');
SELECT "table", title, ignore FROM taskevents.attachments WHERE "table" = 'wrong'::regclass;
SELECT taskevents.detach('wrong');
INSERT INTO wrong VALUES (gen_random_uuid(), NULL, 'not captured', false);
SELECT count(*) AS after_detach FROM taskevents.outbox;

-- A mapped column renamed after attach: the write fails loudly, nothing is lost silently
ALTER TABLE plain RENAME COLUMN title TO heading;
INSERT INTO plain VALUES ('00000000-0000-4000-8000-00000000a002', NULL, 'lost?', false);
SELECT count(*) AS rows_written FROM plain WHERE id = '00000000-0000-4000-8000-00000000a002';
SELECT taskevents.attach('plain', title => 'heading');
INSERT INTO plain VALUES ('00000000-0000-4000-8000-00000000a002', NULL, 'captured', false);
SELECT count(*) AS captured FROM taskevents.outbox;
CALL clear_queue();

-- The capture functions refuse to run as anything but their triggers
CREATE TRIGGER misuse BEFORE INSERT ON wrong FOR EACH ROW EXECUTE FUNCTION taskevents.capture('id', 'user_id', 'name', 'completed', '');
INSERT INTO wrong VALUES (gen_random_uuid(), NULL, 'x', false);
DROP TRIGGER misuse ON wrong;

DROP TABLE todo, plain, wrong, loose;
DROP VIEW a_view;
SELECT count(*) AS attachments FROM taskevents.attachments;
