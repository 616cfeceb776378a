#!/usr/bin/env bash
# The demo: a throw-away PostgreSQL with taskevents preloaded, the bundled
# Dapr-compatible sidecar, and a scripted task lifecycle; prints the
# CloudEvents the sidecar received.  Installs what is missing on Debian 12.
#   bash test/demo.sh           the bundled sidecar (test/sidecar/fakedapr)
#   bash test/demo.sh --kafka   a real daprd and Apache Kafka (test/real/lib.sh:
#                               built or fetched once, cached); prints what a
#                               Kafka consumer receives, and what a consumer's
#                               Dapr app behind its own daprd receives through
#                               the subscriptions of test/real/subscriber/
# shellcheck source=test/setup.sh
source "$(dirname "$0")/setup.sh"

KAFKA=0
case "${1:-}" in
    --kafka) KAFKA=1 ;;
    "") ;;
    *) echo "usage: $0 [--kafka]" >&2; exit 2 ;;
esac
if [ $KAFKA = 1 ]; then
    # shellcheck source=test/real/lib.sh
    source "$(dirname "$0")/real/lib.sh"
    PACKAGES+=(openjdk-17-jdk-headless maven)
fi

ensure_packages
build_and_install
DEMO="$WORK/demo"
PGPORT=54329
as_user mkdir -p "$DEMO"

cleanup() {
    as_user pg_ctl -D "$DEMO/data" -m immediate stop >/dev/null 2>&1 || true
    if [ -n "${SIDECAR_PID:-}" ]; then kill "$SIDECAR_PID" 2>/dev/null || true; fi
    [ $KAFKA = 1 ] && real_stop_all
    return 0
}
trap cleanup EXIT

if [ $KAFKA = 1 ]; then
    real_prepare "$WORK/real"
    echo "== starting Apache Kafka $KAFKA_VERSION (KRaft, one node on loopback; topics with 3 partitions)"
    real_start_kafka "$DEMO/kafka"
    real_start_consumer "$DEMO/consumer"
    echo "== starting daprd $("$REAL_DAPRD" --version) with docker/components/pubsub-kafka.yaml"
    real_start_daprd "$DEMO/daprd"
    DAPR_PORT=$DAPRD_PORT
    echo "== starting a consumer's Dapr app behind its own daprd (test/real/subscriber/: subscriptions routing on the type)"
    real_start_subscriber "$DEMO/subscriber"
else
    echo "== starting the sidecar (test/sidecar/fakedapr, answers as daprd does)"
    start_sidecar "$DEMO" --record "$DEMO/received.jsonl"
fi

echo "== starting PostgreSQL $PG_MAJOR with shared_preload_libraries = 'taskevents'"
start_server "$DEMO" "$PGPORT" <<CONF
taskevents.port = $DAPR_PORT
CONF
PSQL=(psql -X -q -h "$DEMO" -p "$PGPORT" -d postgres -v ON_ERROR_STOP=1)

echo "== the seed application's task table (test/tasks.sql), then a lifecycle in plain SQL"
as_user "${PSQL[@]}" -f "$WORK/test/tasks.sql"
as_user "${PSQL[@]}" -e <<'SQL'
CREATE EXTENSION taskevents;
BEGIN;
SET LOCAL taskevents.trace_id = 'req-7f3a';
INSERT INTO tasks (id, user_id, title, due_date)
VALUES ('0b5c1a52-6a3e-4c1e-9a57-3f1c2d4e5f60', '7d4e2f10-1b2c-4d3e-8f4a-5b6c7d8e9f01',
        'Buy milk "2%"', '2026-12-01 09:00Z');
COMMIT;
UPDATE tasks SET title = 'Buy oat milk' WHERE id = '0b5c1a52-6a3e-4c1e-9a57-3f1c2d4e5f60';
UPDATE tasks SET completed = true WHERE id = '0b5c1a52-6a3e-4c1e-9a57-3f1c2d4e5f60';
DELETE FROM tasks WHERE id = '0b5c1a52-6a3e-4c1e-9a57-3f1c2d4e5f60';
SQL

for _ in $(seq 100); do
    [ "$(as_user "${PSQL[@]}" -At -c 'SELECT count(*) FROM taskevents.outbox')" = 0 ] && break
    sleep 0.1
done

if [ $KAFKA = 1 ]; then
    events=$(as_user "${PSQL[@]}" -At -c 'SELECT published FROM taskevents.status')
    for _ in $(seq 300); do
        [ "$(wc -l < "$DEMO/consumer/records.jsonl")" -ge "$events" ] && break
        sleep 0.1
    done
    echo "== what a Kafka consumer received (test/real/kafka/KafkaTool.java; value as daprd published it)"
    python3 - "$DEMO/consumer/records.jsonl" <<'PY'
import json, sys
rank = {"task-events": 0, "task-updates": 1, "reminders": 2}
records = [json.loads(line) for line in open(sys.argv[1])]
records.sort(key=lambda r: (r["ce"]["time"] if "ce" in r else "", rank[r["topic"]], r["offset"]))
for r in records:
    print(f"topic {r['topic']}  partition {r['partition']}  offset {r['offset']}  key {r['key']}")
    print(json.dumps(json.loads(r["value"]), indent=2, ensure_ascii=False))
PY
    for _ in $(seq 300); do
        [ "$(wc -l < "$DEMO/subscriber/deliveries.jsonl")" -ge "$events" ] && break
        sleep 0.1
    done
    echo "== what the consumer's Dapr app received (route: type id traceid -> its answer)"
    python3 - "$DEMO/subscriber/deliveries.jsonl" <<'PY'
import json, sys
for line in open(sys.argv[1]):
    r = json.loads(line)
    e = json.loads(r["body"])
    print(f"POST {r['route']:<21} {e['type']:<19} {e['id']}  traceid {e.get('traceid')}  -> {r['status']}")
PY
else
    echo "== what the sidecar received"
    python3 - "$DEMO/received.jsonl" <<'PY'
import json, sys
for line in open(sys.argv[1]):
    r = json.loads(line)
    print(f"POST {r['path']}?{r['query']}  ->  {r['status']}")
    print(json.dumps(r["body"], indent=2, ensure_ascii=False))
PY
fi

echo "== SELECT * FROM taskevents.status"
as_user "${PSQL[@]}" -x -c 'SELECT * FROM taskevents.status'
