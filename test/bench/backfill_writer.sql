-- A writer of the same tasks a backfill reads (pgbench script; tasks are
-- numbered 1..:tasks through te_id()): edit, complete or reopen, delete,
-- or bring back, each its own transaction.
\set i random(1, :tasks)
\set op random(1, 4)
\if :op = 1
UPDATE tasks SET title = 'edited ' || random() WHERE id = te_id(:i);
\elif :op = 2
UPDATE tasks SET completed = NOT completed WHERE id = te_id(:i);
\elif :op = 3
DELETE FROM tasks WHERE id = te_id(:i);
\else
INSERT INTO tasks (id, user_id, title) VALUES (te_id(:i), gen_random_uuid(), 'back again') ON CONFLICT (id) DO NOTHING;
\endif
