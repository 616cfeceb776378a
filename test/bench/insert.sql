-- One change per transaction: a new task (2 events: task.created, sync.task).
INSERT INTO tasks (user_id, title) VALUES (gen_random_uuid(), 'Buy milk');
