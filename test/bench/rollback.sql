-- A writer whose transaction rolls back (a deadlock, a serialization
-- failure, a timeout): its queue number is never used (pgbench script).
BEGIN;
INSERT INTO tasks (user_id, title) VALUES (gen_random_uuid(), 'rolled back');
ROLLBACK;
