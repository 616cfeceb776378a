-- The seed app's task lifecycle, four transactions: create, edit the title,
-- complete, delete (pgbench script; each statement commits on its own).
INSERT INTO tasks (user_id, title) VALUES (gen_random_uuid(), 'Buy milk') RETURNING id AS task \gset
UPDATE tasks SET title = 'Buy oat milk', updated_at = now() WHERE id = :task;
UPDATE tasks SET completed = true, updated_at = now() WHERE id = :task;
DELETE FROM tasks WHERE id = :task;
