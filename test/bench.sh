#!/usr/bin/env bash
# Benchmarks (never timed assertions in tests): prints a table.
#   bash test/bench.sh [capture]
# capture: the writer's cost.  The seed app's task lifecycle (insert, edit
# title, complete, delete as four transactions), pgbench -M prepared with 2
# clients, synchronous_commit = off so CPU shows; TPS of each setup is the
# median of alternating runs in one session, and the ratio is to no trigger.
source "$(dirname "$0")/setup.sh"

ensure_packages
build_and_install
B="$WORK/bench"
SECS=${BENCH_SECONDS:-10}
ROUNDS=${BENCH_ROUNDS:-3}
PGPORT=54330
as_user mkdir -p "$B"

cleanup() {
    as_user pg_ctl -D "$B/data" -m immediate stop >/dev/null 2>&1 || true
    [ -n "${SIDECAR_PID:-}" ] && kill "$SIDECAR_PID" 2>/dev/null || true
}
trap cleanup EXIT

as_user "$WORK/test/sidecar/fakedapr" --port 0 --control-port 0 > "$B/sidecar.out" 2>&1 &
SIDECAR_PID=$!
for _ in $(seq 50); do grep -q '^port=' "$B/sidecar.out" && break; sleep 0.1; done
DAPR_PORT=$(sed -n 's/^port=\([0-9]*\).*/\1/p' "$B/sidecar.out")

as_user initdb -D "$B/data" -A trust >/dev/null
cat >> "$B/data/postgresql.conf" <<CONF
include '$WORK/docker/postgresql.taskevents.conf'
port = $PGPORT
listen_addresses = ''
unix_socket_directories = '$B'
synchronous_commit = off
shared_buffers = '512MB'
max_wal_size = '4GB'
checkpoint_timeout = '30min'
taskevents.port = $DAPR_PORT
CONF
as_user pg_ctl -D "$B/data" -l "$B/postgresql.log" -w start >/dev/null
psql_() { as_user psql -X -q -h "$B" -p "$PGPORT" -v ON_ERROR_STOP=1 "$@"; }

# One database per setup.
psql_ -d postgres -c 'CREATE DATABASE no_trigger' -c 'CREATE DATABASE plpgsql_outbox' \
      -c 'CREATE DATABASE taskevents'
for db in no_trigger plpgsql_outbox taskevents; do psql_ -d $db -f "$WORK/test/bench/tasks.sql"; done
psql_ -d plpgsql_outbox -f "$WORK/test/bench/plpgsql_outbox.sql"
psql_ -d taskevents -c 'CREATE EXTENSION taskevents' 2>/dev/null

tps() {
    as_user pgbench -h "$B" -p "$PGPORT" -n -M prepared -c 2 -j 2 -T "$SECS" \
        -f "$WORK/test/bench/lifecycle.sql" "$1" 2>/dev/null \
      | sed -n 's/^tps = \([0-9.]*\).*/\1/p'
}
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

declare -A runs
for r in $(seq "$ROUNDS"); do
    for db in no_trigger plpgsql_outbox taskevents; do
        runs[$db]+="$(tps $db) "
        psql_ -d $db -c 'VACUUM' >/dev/null
    done
done
delivered=$(psql_ -d taskevents -At -c 'SELECT published FROM taskevents.status')
waiting=$(psql_ -d taskevents -At -c 'SELECT queue_depth FROM taskevents.status')

base=$(echo ${runs[no_trigger]} | tr ' ' '\n' | median)
echo
echo "capture cost: task lifecycle, pgbench -M prepared -c 2 -j 2, ${ROUNDS}x${SECS}s alternating, synchronous_commit=off"
printf '%-44s %10s %8s\n' setup "tps" "ratio"
for db in no_trigger plpgsql_outbox taskevents; do
    t=$(echo ${runs[$db]} | tr ' ' '\n' | median)
    label=$db
    [ $db = no_trigger ] && label="no trigger"
    [ $db = plpgsql_outbox ] && label="PL/pgSQL trigger, 2 jsonb outbox rows"
    [ $db = taskevents ] && label="taskevents (delivering to a local sidecar)"
    printf '%-44s %10.0f %8.2f\n' "$label" "$t" "$(awk -v a="$t" -v b="$base" 'BEGIN {print a / b}')"
done
echo "(taskevents delivered $delivered events during the runs; $waiting changes still queued at the end)"
echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1)"
