#!/usr/bin/env bash
# lifecycle.sh: the compose "writer". One task's life in plain SQL, written
# as the application role (tasks_app, rights on the tasks table only), then a
# wait until the database has delivered every event to the sidecar.
#
# Connection from the environment: PGHOST, PGDATABASE, PGUSER, PGPASSWORD.
# Exits non-zero if events are still queued after WAIT_SECONDS (default 90)
# or if any event went to the dead letters, so
#   docker compose -f docker/compose.yaml up --build --exit-code-from writer
# works as a smoke test.
set -euo pipefail

wait_seconds=${WAIT_SECONDS:-90}

psql -X -q -v ON_ERROR_STOP=1 <<'SQL'
SELECT gen_random_uuid() AS task_id, gen_random_uuid() AS user_id,
       gen_random_uuid() AS trace_id \gset
\echo task :task_id (user :user_id)
SET ROLE tasks_app;

\echo '1. insert, with a correlation id for the request  -> task.created, sync.task'
BEGIN;
SET LOCAL taskevents.trace_id = :'trace_id';
INSERT INTO tasks (id, user_id, title)
VALUES (:'task_id', :'user_id', 'Write the quarterly report');
COMMIT;

\echo '2. edit the title                                 -> task.updated (changes.title), sync.task'
UPDATE tasks SET title = 'Write the Q3 report', updated_at = now()
WHERE id = :'task_id';

\echo '3. set a due date                                 -> task.updated, sync.task, reminder.scheduled'
UPDATE tasks SET due_date = date_trunc('hour', now()) + interval '2 days', updated_at = now()
WHERE id = :'task_id';

\echo '4. complete                                       -> task.completed, sync.task'
UPDATE tasks SET completed = true, updated_at = now()
WHERE id = :'task_id';

\echo '5. a rolled-back change                           -> nothing'
BEGIN;
UPDATE tasks SET title = 'never published' WHERE id = :'task_id';
ROLLBACK;

\echo '6. delete                                         -> task.deleted, sync.task'
DELETE FROM tasks WHERE id = :'task_id';
SQL

echo "waiting up to ${wait_seconds}s for the outbox to drain..."
deadline=$((SECONDS + wait_seconds))
while :; do
	depth=$(psql -X -Atq -v ON_ERROR_STOP=1 \
		-c "SELECT coalesce(sum(queue_depth), 0) FROM taskevents.status")
	[ "$depth" = 0 ] && break
	if ((SECONDS >= deadline)); then
		echo "writer: ${depth} event(s) still queued after ${wait_seconds}s" >&2
		psql -X -x -c "SELECT * FROM taskevents.status"
		exit 1
	fi
	sleep 1
done

psql -X -x -c "SELECT * FROM taskevents.status"

dead=$(psql -X -Atq -v ON_ERROR_STOP=1 -c "SELECT count(*) FROM taskevents.dead_letters")
if [ "$dead" != 0 ]; then
	echo "writer: ${dead} event(s) in taskevents.dead_letters" >&2
	psql -X -x -c "SELECT * FROM taskevents.dead_letters"
	exit 1
fi
echo "writer: every event delivered; the consumer shows them"
