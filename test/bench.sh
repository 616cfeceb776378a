#!/usr/bin/env bash
# Benchmarks (never timed assertions in tests): one throw-away server, one
# Markdown table out, with the machine it ran on.
#   bash test/bench.sh [capture] [keepup] [drain] [latency] [soak] [pinned] [holes] [idle] [backfill]
#                      [real] [peer]          (none: all but real and peer; backfill
#                                             needs the real pipeline's daprd and Kafka too)
#
# capture  the writer's cost: the seed app's task lifecycle (insert, edit title,
#          complete, delete as four transactions), pgbench -M prepared -c 2,
#          synchronous_commit = off so CPU shows; BENCH_ROUNDS (9) rounds of
#          alternating BENCH_SECONDS (5 s) runs, each setup's ratio the median
#          over rounds of its run against the round's no-trigger run; with no
#          trigger, a PL/pgSQL outbox trigger (the baseline), and taskevents
#          with delivery off and delivering to the sidecar.
# drain    20,000 INSERTs (40,000 events) queued with delivery off, then timed
#          until the outbox is empty (median of BENCH_ROUNDS): default
#          taskevents.concurrency, 64, and taskevents.bulk = on when the
#          extension has that setting.
# latency  1,000 one-INSERT transactions/s for 20 s (pgbench -R); the sidecar
#          records when it receives each event, minus the event's "time".
# keepup   per-request delivery at rising lifecycle rates (pgbench -R), 10 s
#          each: the highest rate at which the queue stays flat.
# soak     BENCH_SOAK_SECONDS (600) of 500 lifecycles/s, sampled every 10 s;
#          then the worker's peak RSS while it drains 1,000,000 events.
# pinned   BENCH_PINNED_SECONDS (600) of 500 lifecycles/s while a REPEATABLE
#          READ transaction holds the xmin horizon: worker CPU, queue size,
#          commit->sidecar p99 and writer latency, first and last minute;
#          then how long the backlog takes once the transaction ends.
# holes    BENCH_HOLES_SECONDS (120) of 500 lifecycles/s and 500 rolled-back
#          INSERTs/s while one session holds a written task open (its xid and
#          a queue number) the whole time: changes waiting, the cursor's holes
#          and the size of its row, every 10 s; then the backlog once it commits.
# idle     BENCH_IDLE_SECONDS (600) with nothing to deliver: the worker's
#          memory, CPU and wake-ups.
# backfill BENCH_BACKFILL_ROWS (100,000) tasks published by
#          taskevents.backfill() through the fake sidecar, then through the
#          real daprd and Kafka of real (below): rows/s; and the writers'
#          latency p99 (pgbench -R 200 of the lifecycle) during the backfill
#          against without.  BENCH_BACKFILL_REAL=0: the fake sidecar only.
# real     (only when named) the real pipeline of test/real/lib.sh: a real
#          daprd and Apache Kafka (built or fetched once, cached), a Kafka
#          consumer reading every record; drain of 40,000 events per request
#          and in bulk (the default with daprd 1.18), each round followed by
#          the ceiling: test/bench/daprload sending the same 40,000 events
#          straight to daprd with as many requests in flight; the median of
#          BENCH_REAL_ROUNDS (3) ratios; and commit -> consumer latency at
#          1,000 changes/s for 20 s, per request, in bulk, and in bulk with
#          a busy loop taking one core, split at the Kafka record's time.
# peer     (only when named) taskevents (default settings, through the real
#          daprd as in real) and Debezium's embedded engine with its
#          PostgreSQL connector (test/bench/peer/PeerDriver.java, on a server
#          of its own with wal_level = logical) into the same Kafka, in
#          alternating rounds (BENCH_PEER_ROUNDS, 3; median): a drain of
#          BENCH_PEER_CHANGES (20,000) changes written while delivery was
#          paused, with each pipeline's CPU and peak RSS; commit -> consumer
#          latency at 1,000 changes/s for BENCH_PEER_LATENCY_SECONDS (20);
#          and the writer's lifecycles/s with each pipeline against none
#          (BENCH_SECONDS each).
# shellcheck source=test/setup.sh
source "$(dirname "$0")/setup.sh"
# shellcheck source=test/real/lib.sh
source "$(dirname "$0")/real/lib.sh"

ALL=(capture keepup drain latency soak pinned holes idle backfill real peer)
BENCHES=("$@")
[ $# -gt 0 ] || BENCHES=(capture keepup drain latency soak pinned holes idle backfill)
for b in "${BENCHES[@]}"; do
    [[ " ${ALL[*]} " == *" $b "* ]] || { echo "usage: $0 [${ALL[*]}]" >&2; exit 2; }
done
SECS=${BENCH_SECONDS:-5}
ROUNDS=${BENCH_ROUNDS:-9}
SOAK=${BENCH_SOAK_SECONDS:-600}
PINNED=${BENCH_PINNED_SECONDS:-600}
IDLE=${BENCH_IDLE_SECONDS:-600}
HOLES=${BENCH_HOLES_SECONDS:-120}
PGPORT=54330

[[ " ${BENCHES[*]} " == *" real "* || " ${BENCHES[*]} " == *" peer "* || " ${BENCHES[*]} " == *" backfill "* ]] &&
    PACKAGES+=(openjdk-17-jdk-headless maven)
ensure_packages
build_and_install
B="$WORK/bench"
as_user mkdir -p "$B"
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)

# --- the throw-away server and the fake sidecar -----------------------------

# The fake sidecar's benchmarks measure one event per request unless they
# say bulk (their figures since 1.0); real, peer and backfill use auto.
BENCH_CONF="taskevents.bulk = off
synchronous_commit = off
shared_buffers = '512MB'
max_wal_size = '4GB'
checkpoint_timeout = '30min'"
bench_server() { start_server "$B" "$PGPORT" <<< "$BENCH_CONF"; }
restart_server() { as_user pg_ctl -D "$B/data" -l "$B/postgresql.log" -m fast -w restart >/dev/null; }

# Leaves only the logs and samples, in $B.
cleanup() {
    as_user pg_ctl -D "$B/data" -m immediate stop >/dev/null 2>&1 || true
    as_user pg_ctl -D "$B/peer/data" -m immediate stop >/dev/null 2>&1 || true
    [ -n "${SIDECAR_PID:-}" ] && kill "$SIDECAR_PID" 2>/dev/null
    [ -n "${PEER_PID:-}" ] && kill "$PEER_PID" 2>/dev/null
    real_stop_all
    rm -rf "$B/data" "$B/latency.times" "$B/pinned.times" "$B/kafka/data" "$B/peer/data"
    find "$WORK" -mindepth 1 -maxdepth 1 ! -name bench -exec rm -rf {} +
}
trap cleanup EXIT

say() { echo "== $*" >&2; }
psql_() { as_user psql -X -q -h "$B" -p "$PGPORT" -v ON_ERROR_STOP=1 "$@"; }
q() { psql_ -d "$1" -At -c "$2"; }
pgbench_() { as_user pgbench -h "$B" -p "$PGPORT" -n -M prepared -c 2 -j 2 "$@"; }
tps_of() { sed -n 's/^tps = \([0-9.]*\).*/\1/p' "$1"; }
median() { tr ' ' '\n' | grep . | sort -n | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}'; }

# setting NAME VALUE: ALTER SYSTEM SET taskevents.NAME = VALUE, and reload.
setting() {
    psql_ -d postgres -c "ALTER SYSTEM SET taskevents.$1 = $2" -c 'SELECT pg_reload_conf()' >/dev/null
}

# wait_for DB SQL VALUE: until the query answers VALUE (at most 5 minutes).
wait_for() {
    local end=$((SECONDS + 300))
    until [ "$(q "$1" "$2")" = "$3" ]; do
        [ $SECONDS -lt $end ] || { echo "timed out waiting for $2 = $3 in $1" >&2; exit 1; }
        sleep 0.05
    done
}

# new_db NAME [taskevents]: a database with the tasks table (and the extension).
new_db() {
    psql_ -d postgres -c "CREATE DATABASE $1"
    psql_ -d "$1" -f "$WORK/test/tasks.sql"
    if [ "${2:-}" = taskevents ]; then
        psql_ -d "$1" -c 'CREATE EXTENSION taskevents' 2>/dev/null
        wait_for "$1" 'SELECT worker_state FROM taskevents.status' delivering
    fi
}

# sidecar [fakedapr options]: a fresh fake sidecar, where taskevents publishes.
stop_sidecar() {
    if [ -n "${SIDECAR_PID:-}" ]; then kill "$SIDECAR_PID" || true; wait "$SIDECAR_PID" 2>/dev/null || true; fi
    SIDECAR_PID=
}
sidecar() {
    stop_sidecar
    start_sidecar "$B" "$@"
    setting port "$DAPR_PORT"
}
sidecar_events() { curl -s "http://127.0.0.1:$CTL_PORT/stats" | sed -n 's/.*"events":\([0-9]*\).*/\1/p'; }
sidecar_reset() { curl -s -X POST "http://127.0.0.1:$CTL_PORT/reset-stats" >/dev/null; }
# What drain() uses to count the events that arrived: the fake sidecar's
# counters, or (bench_real) the Kafka consumer's records.
EVENTS_RESET=sidecar_reset
EVENTS_COUNT=sidecar_events

# The queue of a database: every table of the taskevents schema, in bytes
# (1.0: the outbox; 1.1: the queue tables, retry, tick, dead letters).
QUEUE_BYTES="SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c
              JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = 'taskevents' AND c.relkind = 'r'"
# Forget a database's queue (rows captured with delivery off): empty its tables.
DISCARD_QUEUE="DO \$\$ DECLARE t regclass; BEGIN
                 FOR t IN SELECT c.oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                           WHERE n.nspname = 'taskevents' AND c.relkind = 'r'
                             AND c.relname IN ('outbox', 'queue_0', 'queue_1', 'queue_2', 'retry')
                 LOOP EXECUTE 'TRUNCATE ' || t; END LOOP; END \$\$"

# cpu PID: the CPU time a process has used, in clock ticks (user + system).
cpu() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
TICKS=$(getconf CLK_TCK)
# cpu_trees: the machine's busy and idle ticks and those of the process trees
# whose roots are $CPU_TREES (test/bench/cpu.py; with --add, its sums).
# shellcheck disable=SC2086 # CPU_TREES: a list of pids
cpu_trees() { if [ $# -gt 0 ]; then python3 "$WORK/test/bench/cpu.py" "$@"; else python3 "$WORK/test/bench/cpu.py" $CPU_TREES; fi; }

# mem PID: "VmRSS RssAnon" of a process, in kB (0 0 when it is gone).
# shellcheck disable=SC2002 # cat: a process gone gives awk no input, so zeros
mem() { cat "/proc/$1/status" 2>/dev/null | awk '/^VmRSS/ {r = $2} /^RssAnon/ {a = $2} END {print r + 0, a + 0}'; }
mb() { awk -v k="$1" 'BEGIN {printf "%.1f", k / 1024}'; }

# new_tasks DB N: N new tasks in one statement (2 events each), after a VACUUM.
new_tasks() {
    psql_ -d "$1" -c 'VACUUM ANALYZE'
    psql_ -d "$1" -c "INSERT INTO tasks (user_id, title)
                      SELECT gen_random_uuid(), 'Buy milk ' || i FROM generate_series(1, $2) i"
}

# drain DB CHANGES POLL: queue CHANGES inserts (2 events each) with delivery
# off, turn delivery on and time until the worker has settled (published or
# dead-lettered) every event and the outbox is empty.  The end is seen from
# inside the server, by one session that reads the worker's counters in
# shared memory every 10 ms (a client started per look, or a read of the
# queue per look, would take CPU the measured pipeline needs); the worker's
# memory is sampled every POLL seconds meanwhile.  Sets D_SECS
# (empty if it took over 2 min + 1 s per 500 changes), D_EVENTS (what the
# sidecar received), D_RSS/D_ANON (worker's peak, kB).
drain() {
    local db=$1 n=$2 t0 pid rss anon out waiter settled
    out=$(mktemp "$B/drain.XXXXXX")
    setting enabled off
    wait_for "$db" 'SELECT worker_state FROM taskevents.status' disabled
    new_tasks "$db" "$n"
    # what the inserts left to do (dirty pages, the tables' vacuum) done now, not during the drain
    psql_ -d "$db" -c 'VACUUM ANALYZE' -c 'CHECKPOINT'
    pid=$(q "$db" 'SELECT pid FROM taskevents.status')
    settled=$(q "$db" "SELECT published + dead FROM taskevents._workers() WHERE pid = $pid")
    $EVENTS_RESET
    read -r D_RSS D_ANON < <(mem "$pid")
    D_CPU=$(cpu "$pid")
    [ -z "${CPU_TREES:-}" ] || D_TREES=$(cpu_trees)
    psql_ -d postgres -c 'ALTER SYSTEM SET taskevents.enabled = on'
    t0=$(q "$db" 'SELECT extract(epoch FROM clock_timestamp()) FROM pg_reload_conf()')
    psql_ -d "$db" -At -c "DO \$\$ DECLARE give_up timestamptz := clock_timestamp() + interval '$((120 + n / 500)) s';
             BEGIN   -- the worker's counters, in shared memory: no table read while it works; COMMIT: no snapshot held
               WHILE (SELECT published + dead FROM taskevents._workers() WHERE pid = $pid) < $((settled + 2 * n))
                     AND clock_timestamp() < give_up LOOP
                 COMMIT; PERFORM pg_sleep(0.01);
               END LOOP;
             END \$\$" \
        -c "SELECT extract(epoch FROM clock_timestamp()) WHERE (SELECT min(seq) FROM taskevents.outbox) IS NULL" > "$out" &
    waiter=$!
    while kill -0 "$waiter" 2>/dev/null; do
        read -r rss anon < <(mem "$pid")
        [ "$rss" -gt "$D_RSS" ] && D_RSS=$rss
        [ "$anon" -gt "$D_ANON" ] && D_ANON=$anon
        sleep "$3"
    done
    [ -z "${CPU_TREES:-}" ] || D_TREES=$(cpu_trees --add "" "$D_TREES" "$(cpu_trees)")
    D_SECS=$([ ! -s "$out" ] || awk -v a="$t0" -v b="$(cat "$out")" 'BEGIN {printf "%.2f", b - a}')
    rm -f "$out"
    D_EVENTS=$($EVENTS_COUNT)
    D_CPU=$(( $(cpu "$pid") - D_CPU ))
    [ "$(q "$db" 'SELECT pid FROM taskevents.status')" = "$pid" ] || note "the worker restarted during a drain of $db"
}
rate() { if [ -z "$D_SECS" ]; then echo 0; else awk -v n="$1" -v s="$D_SECS" 'BEGIN {printf "%.0f", n / s}'; fi; }
# CPU milliseconds the worker spent per 1,000 events of the last drain of N events.
cpu_per_1000() { awk -v c="$D_CPU" -v t="$TICKS" -v n="$1" 'BEGIN {printf "%.1f", c * 1000 / t / n * 1000}'; }

# --- the table --------------------------------------------------------------

# row BENCHMARK MEASURED TARGET NAME: a row, with the command that reproduces it.
row() {
    local env=""
    [ "$4" = capture ] && [ -n "${BENCH_SECONDS:-}${BENCH_ROUNDS:-}" ] && env="BENCH_SECONDS=$SECS BENCH_ROUNDS=$ROUNDS "
    [ "$4" = soak ] && [ "$SOAK" != 600 ] && env="BENCH_SOAK_SECONDS=$SOAK "
    [ "$4" = peer ] && env=$(env | grep -E '^BENCH_(PEER_[A-Z_]*|SECONDS)=' | sort | tr '\n' ' ' || true)
    printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "\`${env}bash test/bench.sh $4\`" >> "$B/rows"
}
note() { echo "- $*" >> "$B/notes"; }

print_table() {
    echo
    echo "taskevents benchmarks, $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "machine: $(nproc) cores ($(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1))," \
         "$(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo) RAM, Linux $(uname -r)," \
         "$(postgres --version | sed 's/.*) //;s/^/PostgreSQL /'), load average before the run $LOAD_BEFORE"
    echo
    awk -F'\t' '
        { for (i = 1; i <= 4; i++) { c[NR, i] = $i; if (length($i) > w[i]) w[i] = length($i) } }
        END {
            split("benchmark|measured|target|command", h, "|")
            for (i = 1; i <= 4; i++) if (length(h[i]) > w[i]) w[i] = length(h[i])
            line(h); for (i = 1; i <= 4; i++) printf "|%s", dash(w[i] + 2); print "|"
            for (r = 1; r <= NR; r++) { for (i = 1; i <= 4; i++) x[i] = c[r, i]; line(x) }
        }
        function line(a,  i) { for (i = 1; i <= 4; i++) printf("| %-" w[i] "s ", a[i]); print "|" }
        function dash(n,  s) { s = ""; while (n-- > 0) s = s "-"; return s }
    ' "$B/rows"
    echo
    cat "$B/notes"
    echo "- server log: $(grep -c ' ERROR: ' "$B/postgresql.log") ERROR lines$(grep ' ERROR: ' "$B/postgresql.log" |
          sed 's/.* ERROR: *//; s/[0-9A-F]\+\/[0-9A-F]\+/X\/X/g' | sort | uniq -c | sort -rn | head -3 |
          awk '{n = $1; $1 = ""; printf "%s %dx \"%s\"", NR == 1 ? ":" : ",", n, substr($0, 2)}'); kept with the samples in $B"
}

# --- the benchmarks ---------------------------------------------------------

bench_capture() {
    local db t base plpgsql
    local dbs=(no_trigger plpgsql_outbox capture_only taskevents taskevents_bulk)
    declare -A queued=() ratios=()
    declare -A runs=()
    declare -A label=([no_trigger]="capture: no trigger"
                      [plpgsql_outbox]="capture: PL/pgSQL outbox trigger (baseline)"
                      [capture_only]="capture: taskevents, delivery off"
                      [taskevents]="capture: taskevents, delivering"
                      [taskevents_bulk]="capture: taskevents, delivering with bulk = on")
    say "capture: ${ROUNDS} x ${SECS} s each of no trigger, PL/pgSQL trigger, taskevents without and with delivery"
    sidecar
    new_db no_trigger
    new_db plpgsql_outbox
    psql_ -d plpgsql_outbox -f "$WORK/test/bench/plpgsql_outbox.sql"
    new_db capture_only taskevents
    new_db taskevents taskevents
    new_db taskevents_bulk taskevents
    for _ in $(seq "$ROUNDS"); do
        for db in "${dbs[@]}"; do
            [ "$db" = capture_only ] && setting enabled off
            [ "$db" = taskevents_bulk ] && setting bulk on
            pgbench_ -T "$SECS" -f "$WORK/test/bench/lifecycle.sql" "$db" > "$B/capture.out" 2>&1
            t=$(printf '%.0f' "$(tps_of "$B/capture.out")")
            runs[$db]+="$t "
            [ "$db" = no_trigger ] && base=$t
            # this round's ratio to the no-trigger run just before: the machine's
            # speed drifts between rounds, so ratios of neighbours are steadier
            ratios[$db]+="$(awk -v a="$t" -v b="$base" 'BEGIN {printf "%.3f", a / b}') "
            if [ "$db" = capture_only ]; then
                psql_ -d "$db" -c "$DISCARD_QUEUE"
                setting enabled on
            elif [[ $db = taskevents* ]]; then     # its backlog is not left to slow the next run
                queued[$db]+="$(q "$db" 'SELECT count(*) FROM taskevents.outbox') "
                wait_for "$db" 'SELECT count(*) FROM taskevents.outbox' 0
                [ "$db" = taskevents_bulk ] && setting bulk off
            fi
            psql_ -d "$db" -c 'VACUUM'
        done
    done
    plpgsql=$(echo "${ratios[plpgsql_outbox]}" | median)
    for db in "${dbs[@]}"; do
        t=$(echo "${runs[$db]}" | median)
        r=$(echo "${ratios[$db]}" | median)
        case $db in
            no_trigger) row "${label[$db]}" "$t lifecycles/s" "" capture ;;
            plpgsql_outbox) row "${label[$db]}" "$t lifecycles/s; $(printf '%.2f' "$r") x no trigger" "" capture ;;
            *) row "${label[$db]}" "$t lifecycles/s; $(awk -v r="$r" -v p="$plpgsql" \
                   'BEGIN {printf "%.2f x no trigger, %.2f x PL/pgSQL", r, r / p}')" ">= 0.85 x no trigger" capture ;;
        esac
    done
    note "capture: the task lifecycle (insert, edit title, complete, delete: 4 transactions, 8 events), pgbench -M prepared -c 2 -j 2, $ROUNDS rounds of alternating ${SECS} s runs, one per setup; a ratio is the median over rounds of each run's lifecycles/s over the no-trigger run of its round, synchronous_commit = off; all runs (lifecycles/s): no trigger ${runs[no_trigger]% }, PL/pgSQL ${runs[plpgsql_outbox]% }, delivery off ${runs[capture_only]% }, delivering ${runs[taskevents]% }, delivering with bulk ${runs[taskevents_bulk]% }. The PL/pgSQL trigger writes two jsonb rows per change (test/bench/plpgsql_outbox.sql) that nothing delivers; \"delivery off\" is taskevents.enabled = off (capture only). While delivering, the worker published to the fake sidecar; changes still queued at the end of each of its runs: ${queued[taskevents]% }, with bulk ${queued[taskevents_bulk]% } (delivered before the next run starts)."
}

# drain_row LABEL TARGET: BENCH_ROUNDS drains of 20,000 changes, the median
# rate and the median worker CPU per 1,000 events.
drain_row() {
    local rates="" got="" cpus=""
    for _ in $(seq "$ROUNDS"); do
        drain drain 20000 0.1
        rates+="$(rate 40000) "
        got+="$D_EVENTS "
        cpus+="$(cpu_per_1000 40000) "
    done
    row "$1" "$(echo "$rates" | median) events/s (runs: ${rates% }); worker CPU $(echo "$cpus" | median) ms per 1,000 events; sidecar got ${got% }" "$2" drain
}

bench_drain() {
    local conc
    say "drain: ${ROUNDS} x 40,000 events at the default concurrency, at 64, and with bulk publish if there is such a setting"
    sidecar
    new_db drain taskevents
    conc=$(q drain 'SHOW taskevents.concurrency')
    drain_row "drain 40,000 events, concurrency $conc (default)" ">= 30000 events/s"
    setting concurrency 64
    drain_row "drain 40,000 events, concurrency 64" ">= 30000 events/s"
    setting concurrency DEFAULT
    if grep -q '"taskevents.bulk"' "$WORK/src/settings.c"; then
        setting bulk on
        drain_row "drain 40,000 events, bulk = on, concurrency $conc" ">= 150000 events/s (bulk)"
        setting bulk DEFAULT
    else
        note "drain: no bulk row, this build of taskevents has no taskevents.bulk setting."
    fi
    note "drain: 20,000 INSERTs (one INSERT ... SELECT generate_series, 2 events each) queued with taskevents.enabled = off; the time runs from the reload that turns delivery on until taskevents.outbox is empty (polled about every 30 ms); median of $ROUNDS runs per row. \"sidecar got\" is the fake sidecar's own count of the events it received, per run (of 40000). The sidecar is test/sidecar/fakedapr (C, single-threaded epoll), answering 204 at once."
}

bench_latency() {
    local n p50 p99 max
    say "latency: 1,000 changes/s for 20 s"
    sidecar --times "$B/latency.times"
    new_db latency taskevents
    pgbench_ -R 1000 -T 20 -f "$WORK/test/bench/insert.sql" latency > "$B/latency.out" 2>&1
    wait_for latency 'SELECT count(*) FROM taskevents.outbox' 0
    stop_sidecar    # it writes the times out as it exits
    read -r n p50 p99 max < <(python3 "$WORK/test/bench/latency.py" "$B/latency.times")
    row "latency p50, 1,000 changes/s" "$p50 ms" "<= 5 ms" latency
    row "latency p99, 1,000 changes/s" "$p99 ms" "<= 25 ms" latency
    row "latency max, 1,000 changes/s" "$max ms" "" latency
    note "latency: pgbench -R 1000 -c 2 -j 2 for 20 s of one-INSERT transactions ($(printf '%.0f' "$(tps_of "$B/latency.out")") changes/s achieved); over all $n events, the fake sidecar's receive time (its --times file) minus the CloudEvent's \"time\", which is the capture time inside the transaction, microseconds before the commit of a one-statement transaction. synchronous_commit = off; the worker flushes WAL itself before it sends."
}

bench_soak() {
    local pid rows size rss anon vacs pb hwm
    say "soak: $SOAK s of 500 lifecycles/s, then a drain of 1,000,000 events"
    sidecar
    new_db soak taskevents
    : > "$B/soak.samples"
    sample() {   # waiting changes, queue bytes, worker VmRSS and RssAnon (kB), autovacuums of the queue
        read -r rows size pid vacs < <(q soak "SELECT count(*), ($QUEUE_BYTES),
                                               (SELECT pid FROM taskevents.status),
                                               (SELECT coalesce(sum(autovacuum_count), 0) FROM pg_stat_user_tables
                                                 WHERE schemaname = 'taskevents')
                                          FROM taskevents.outbox" | tr '|' ' ')
        read -r rss anon < <(mem "$pid")
        echo "$rows $size $rss $anon $vacs" >> "$B/soak.samples"
    }
    pgbench_ -R 500 -T "$SOAK" -f "$WORK/test/bench/lifecycle.sql" soak > "$B/soak.out" 2>&1 &
    pb=$!
    for ((i = 10; i <= SOAK; i += 10)); do sleep 10; sample; done
    wait $pb
    [ -s "$B/soak.samples" ] || sample
    stats() { awk -v c="$1" -v d="$2" -v f="$3" '
        NR == 1 || $c < lo { lo = $c } NR == 1 || $c > hi { hi = $c } { last = $c }
        END { printf "min " f " / max " f " / last " f, lo / d, hi / d, last / d }' "$B/soak.samples"; }
    row "soak ${SOAK} s, 500 lifecycles/s: changes waiting" "$(stats 1 1 %d)" "flat" soak
    row "soak: queue size (its tables, pg_total_relation_size)" "$(stats 2 1048576 %.2f) MB" "flat" soak
    row "soak: worker RSS (VmRSS)" "$(stats 3 1024 %.1f) MB" "< 64 MB" soak
    row "soak: worker private memory (RssAnon)" "$(stats 4 1024 %.1f) MB" "< 64 MB" soak
    note "soak: pgbench -R 500 -c 2 -j 2 of the capture lifecycle for $SOAK s ($(printf '%.0f' "$(tps_of "$B/soak.out")") lifecycles/s achieved, 8 events each), $(wc -l < "$B/soak.samples") samples, one every 10 s: count(*) of taskevents.outbox (the changes waiting), the total size of the taskevents schema's tables, VmRSS and RssAnon of the worker from /proc/<pid>/status (pid from taskevents.status); autovacuum ran $(tail -1 "$B/soak.samples" | cut -d' ' -f5) times on those tables (autovacuum_naptime 1 min); samples in $B/soak.samples."

    drain soak 500000 0.2
    # shellcheck disable=SC2002 # cat: a process gone gives awk no input
    hwm=$(cat "/proc/$pid/status" 2>/dev/null | awk '/^VmHWM/ {print $2}')
    row "soak: worker peak RSS draining 1,000,000 events" "$(mb "$D_RSS") MB (RssAnon $(mb "$D_ANON") MB)" "< 64 MB" soak
    row "soak: drain of 1,000,000 events" "$(rate 1000000) events/s ($D_SECS s); sidecar got $D_EVENTS" "" soak
    note "soak drain: 500,000 INSERTs queued with delivery off, then delivered; worker memory sampled every 0.2 s. VmRSS counts the shared buffers the worker touched (RssShmem); RssAnon is its private memory. The kernel's VmHWM (peak VmRSS over the worker's life) was $(mb "${hwm:-0}") MB."
}

# keepup: the highest lifecycle rate per-request delivery keeps up with.
# shellcheck disable=SC2178,SC2179 # runs: a local string, not bench_peer's array
bench_keepup() {
    local r t left best=0 runs=""
    say "keepup: per-request delivery at rising rates, 10 s each"
    sidecar
    new_db keepup taskevents
    for r in 250 500 750 1000 1250 1500 2000 2500; do
        pgbench_ -R "$r" -T 10 -f "$WORK/test/bench/lifecycle.sql" keepup > "$B/keepup.out" 2>&1
        t=$(printf '%.0f' "$(tps_of "$B/keepup.out")")
        left=$(q keepup 'SELECT count(*) FROM taskevents.outbox')
        runs+="$r: $t lifecycles/s, $left left; "
        wait_for keepup 'SELECT count(*) FROM taskevents.outbox' 0
        # kept up: the writers reached the rate and at most a tenth of a second's changes wait
        [ "$t" -ge $((r * 95 / 100)) ] && [ "$left" -le $((r * 4 / 10)) ] && best=$r
    done
    row "capture while delivering per request: highest rate kept up with" "$best lifecycles/s ($((best * 8)) events/s)" "reported" keepup
    note "keepup: pgbench -R RATE -T 10 of the capture lifecycle, per-request delivery to the fake sidecar; kept up when pgbench reached 95% of the rate and at most a tenth of a second's changes were waiting as it ended. Runs: ${runs% ; }."
}

# pinned: 10 minutes of writes while a REPEATABLE READ transaction holds the horizon.
bench_pinned() {
    local pid pb c0 i first last wl wf
    say "pinned: $PINNED s of 500 lifecycles/s while a REPEATABLE READ transaction holds the xmin horizon"
    sidecar --times "$B/pinned.times"
    new_db pinned taskevents
    pid=$(q pinned 'SELECT pid FROM taskevents.status')
    # the transaction a report, pg_dump or a forgotten BEGIN leaves open: its snapshot, then nothing
    psql_ -d pinned -c "BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT count(*) FROM tasks; SELECT pg_sleep($PINNED + 60); COMMIT;" \
        >/dev/null 2>&1 &
    : > "$B/pinned.samples"
    pgbench_ -R 500 -T "$PINNED" -P 60 -f "$WORK/test/bench/lifecycle.sql" pinned > "$B/pinned.out" 2>&1 &
    pb=$!
    for ((i = 60; i <= PINNED; i += 60)); do   # minute, worker CPU %, queue MB, waiting, dead rows
        c0=$(cpu "$pid")
        sleep 60
        echo "$i $(awk -v c="$(( $(cpu "$pid") - c0 ))" -v t="$TICKS" 'BEGIN {printf "%.0f", c / t / 60 * 100}') $(mb $(( $(q pinned "$QUEUE_BYTES") / 1024 ))) $(q pinned 'SELECT count(*) FROM taskevents.outbox') $(q pinned "SELECT coalesce(sum(n_dead_tup), 0) FROM pg_stat_user_tables WHERE schemaname = 'taskevents'")" >> "$B/pinned.samples"
    done
    wait $pb
    i=$SECONDS
    psql_ -d postgres -c "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query LIKE '%pg_sleep%' AND pid <> pg_backend_pid()" >/dev/null
    wait_for pinned 'SELECT count(*) FROM taskevents.outbox' 0
    stop_sidecar
    first=$(head -1 "$B/pinned.samples"); last=$(tail -1 "$B/pinned.samples")
    wf=$(grep -m1 '^progress' "$B/pinned.out" | sed 's/.* lat \([0-9.]*\) ms.*/\1/')
    wl=$(grep '^progress' "$B/pinned.out" | tail -1 | sed 's/.* lat \([0-9.]*\) ms.*/\1/')
    python3 "$WORK/test/bench/latency.py" "$B/pinned.times" --minutes > "$B/pinned.latency"
    lat() { awk -v m="$1" '$1 == m {print $4}' "$B/pinned.latency"; }
    row "pinned horizon $PINNED s, 500 lifecycles/s: worker CPU, first / last minute" "$(echo "$first" | cut -d' ' -f2)% / $(echo "$last" | cut -d' ' -f2)% of a core" "flat" pinned
    row "pinned: queue size, first / last minute" "$(echo "$first" | cut -d' ' -f3) / $(echo "$last" | cut -d' ' -f3) MB" "flat" pinned
    row "pinned: changes waiting, first / last minute" "$(echo "$first" | cut -d' ' -f4) / $(echo "$last" | cut -d' ' -f4)" "flat" pinned
    row "pinned: commit->sidecar p99, first / last minute" "$(lat 1) / $(lat $((PINNED / 60))) ms" "flat" pinned
    row "pinned: writer latency (pgbench), first / last minute" "$wf / $wl ms" "flat" pinned
    row "pinned: backlog after the transaction ends" "empty in $((SECONDS - i)) s" "drains" pinned
    note "pinned: pgbench -R 500 -P 60 for $PINNED s of the capture lifecycle while another session holds a REPEATABLE READ transaction open (one SELECT, then idle); per minute (minute, worker CPU %, queue MB, waiting, dead rows in the taskevents tables): $(tr '\n' ';' < "$B/pinned.samples" | sed 's/;$//'); commit->sidecar latency per minute (minute, events, p50, p99, max ms): $(tr '\n' ';' < "$B/pinned.latency" | sed 's/;$//')."
}

# holes: rollbacks around a transaction held open: holes cost what is in flight.
bench_holes() {
    local pid pl pr c0 i first last
    say "holes: $HOLES s of 500 lifecycles/s and 500 rollbacks/s around a transaction held open"
    sidecar
    new_db holes taskevents
    pid=$(q holes 'SELECT pid FROM taskevents.status')
    psql_ -d holes -c "BEGIN; INSERT INTO tasks (user_id, title) VALUES (gen_random_uuid(), 'held open'); SELECT pg_sleep($HOLES + 60); COMMIT;" \
        >/dev/null 2>&1 &
    : > "$B/holes.samples"
    pgbench_ -R 500 -T "$HOLES" -f "$WORK/test/bench/lifecycle.sql" holes > "$B/holes.out" 2>&1 &
    pl=$!
    pgbench_ -R 500 -T "$HOLES" -f "$WORK/test/bench/rollback.sql" holes > "$B/holes_rollback.out" 2>&1 &
    pr=$!
    for ((i = 10; i <= HOLES; i += 10)); do   # second, worker CPU %, waiting, holes, cursor row bytes
        c0=$(cpu "$pid")
        sleep 10
        echo "$i $(awk -v c="$(( $(cpu "$pid") - c0 ))" -v t="$TICKS" 'BEGIN {printf "%.0f", c / t / 10 * 100}') $(q holes 'SELECT count(*) FROM taskevents.outbox') $(q holes 'SELECT coalesce(cardinality(hole_lo), 0) || '"' '"' || pg_column_size(t) FROM taskevents.tick t ORDER BY id DESC LIMIT 1')" >> "$B/holes.samples"
    done
    wait $pl $pr
    i=$SECONDS
    psql_ -d postgres -c "SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE query LIKE '%pg_sleep%' AND pid <> pg_backend_pid()" >/dev/null
    wait_for holes 'SELECT count(*) FROM taskevents.outbox' 0
    stop_sidecar
    first=$(head -1 "$B/holes.samples"); last=$(tail -1 "$B/holes.samples")
    row "holes $HOLES s, 500 lifecycles/s + 500 rollbacks/s around a transaction held open: changes waiting, first / last 10 s" "$(echo "$first" | cut -d' ' -f3) / $(echo "$last" | cut -d' ' -f3)" "flat" holes
    row "holes: the cursor's holes (its row's bytes), first / last 10 s" "$(echo "$first" | cut -d' ' -f4) ($(echo "$first" | cut -d' ' -f5) B) / $(echo "$last" | cut -d' ' -f4) ($(echo "$last" | cut -d' ' -f5) B)" "what is in flight" holes
    row "holes: worker CPU, first / last 10 s" "$(echo "$first" | cut -d' ' -f2)% / $(echo "$last" | cut -d' ' -f2)% of a core" "flat" holes
    row "holes: backlog once the held transaction ends" "empty in $((SECONDS - i)) s" "drains" holes
    note "holes: pgbench -R 500 of the capture lifecycle and pgbench -R 500 of test/bench/rollback.sql for $HOLES s while another session holds BEGIN; INSERT INTO tasks … open; every 10 s (second, worker CPU %, changes waiting, holes in the cursor, bytes of its row): $(tr '\n' ';' < "$B/holes.samples" | sed 's/;$//')."
}

# backfill: a table's current state published again, and what writers feel,
# through the fake sidecar, then through the real daprd and Kafka.
bench_backfill() {
    local rows=${BENCH_BACKFILL_ROWS:-100000}
    say "backfill: $rows tasks published by taskevents.backfill(); writers' latency with and without"
    sidecar
    backfill_run "the fake sidecar" backfill "$rows"
    stop_sidecar
    psql_ -d postgres -c 'DROP DATABASE backfill WITH (FORCE)'
    if [ "${BENCH_BACKFILL_REAL:-1}" = 1 ]; then   # 0: the fake sidecar only (10 million rows, say)
        real_pipeline
        backfill_run "real daprd + Kafka" backfill_real "$rows"
        real_stop_all
        EVENTS_RESET=sidecar_reset EVENTS_COUNT=sidecar_events
    fi
    note "backfill: $rows tasks inserted and delivered first; then pgbench -R 200 of the lifecycle for 20 s (-l: every transaction's latency) alone, then again while taskevents.backfill() of the whole table runs (chunks of 1,000 rows, no rate limit), timed from the call until its state is done and nothing is queued (the writers' changes come and go); the writers' latency over the 20 s, part of which may follow the backfill when it is quicker. Bulk publish (taskevents.bulk = auto, which both sidecars have). Real: daprd $("$REAL_DAPRD" --version) and Kafka $KAFKA_VERSION as in bench real (a fresh broker, 3 partitions per topic, producerRequiredAcks all); delivered means daprd answered, after Kafka's acknowledgement; a consumer reads every record meanwhile on the same cores."
}

# backfill_run WHAT DB ROWS: the backfill of ROWS tasks through WHAT (the
# sidecar of the moment), in a new database DB; two rows of the table.
backfill_run() {
    local what=$1 db=$2 rows=$3 t0 secs without with bf
    new_db "$db" taskevents
    setting bulk auto                  # the product's default, which both sidecars have
    new_tasks "$db" "$rows"
    wait_for "$db" 'SELECT count(*) FROM taskevents.outbox' 0
    pgbench_ -R 200 -T 20 -l --log-prefix="$B/${db}_without" -f "$WORK/test/bench/lifecycle.sql" "$db" > /dev/null 2>&1
    without=$(p99_of "$B/${db}_without")
    wait_for "$db" 'SELECT count(*) FROM taskevents.outbox' 0
    t0=$(date +%s.%N)
    bf=$(q "$db" 'SELECT taskevents.backfill()')
    pgbench_ -R 200 -T 20 -l --log-prefix="$B/${db}_with" -f "$WORK/test/bench/lifecycle.sql" "$db" > /dev/null 2>&1 &
    wait_for "$db" "SELECT state FROM taskevents.backfill_progress WHERE id = $bf" 'done'
    wait_for "$db" 'SELECT count(*) FROM taskevents.outbox' 0   # the writers' changes come and go
    secs=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN {printf "%.1f", b - a}')
    wait $!
    with=$(p99_of "$B/${db}_with")
    setting bulk DEFAULT
    row "backfill: $rows tasks through $what (bulk)" \
        "$(awk -v n="$rows" -v s="$secs" 'BEGIN {printf "%.0f", n / s}') rows/s ($secs s, writers running)" "measured" backfill
    row "backfill through $what: writers' latency p99, 200 lifecycles/s, without / during a backfill" "$without / $with ms" "close" backfill
}

# p99_of PREFIX: the p99 of the transactions of a pgbench -l run, in ms.
p99_of() { cat "$1".* | awk '{print $3 / 1000}' | sort -n | awk '{a[NR] = $1} END {printf "%.2f", a[int(NR * 0.99)]}'; }

# idle: nothing to deliver for a while: what the worker costs.
bench_idle() {
    local pid c0 m0 m1 w0 w1
    say "idle: $IDLE s with nothing to deliver"
    sidecar
    new_db idle taskevents
    sleep 5
    pid=$(q idle 'SELECT pid FROM taskevents.status')
    c0=$(cpu "$pid"); read -r _ m0 < <(mem "$pid")
    w0=$(awk '/^voluntary_ctxt_switches/ {print $2}' "/proc/$pid/status")
    sleep "$IDLE"
    read -r _ m1 < <(mem "$pid")
    w1=$(awk '/^voluntary_ctxt_switches/ {print $2}' "/proc/$pid/status")
    row "idle $IDLE s: worker private memory (RssAnon), start / end" "$(mb "$m0") / $(mb "$m1") MB" "no growth" idle
    row "idle: worker CPU" "$(awk -v c="$(( $(cpu "$pid") - c0 ))" -v t="$TICKS" -v s="$IDLE" 'BEGIN {printf "%.2f s (%.3f%% of a core)", c / t, c / t / s * 100}')" "the poll only" idle
    row "idle: worker wake-ups" "$((w1 - w0)) in $IDLE s ($(awk -v w="$((w1 - w0))" -v s="$IDLE" 'BEGIN {printf "%.1f", w / s}')/s; taskevents.poll_interval $(q idle 'SHOW taskevents.poll_interval'))" "the poll only" idle
    note "idle: a database with the extension and nothing to deliver; the worker's RssAnon and CPU time from /proc/<pid>, wake-ups are its voluntary context switches."
}

# The consumer's records so far; consumer_events: those since consumer_mark,
# once all $EXPECT_EVENTS are in (or after a minute).
consumer_records() { wc -l < "$B/consumer/records.jsonl"; }
consumer_mark() { MARK=$(consumer_records); }
consumer_events() {
    local end=$((SECONDS + 60))
    while [ $(($(consumer_records) - MARK)) -lt "$EXPECT_EVENTS" ] && [ $SECONDS -lt $end ]; do sleep 0.1; done
    echo $(($(consumer_records) - MARK))
}

# real_pipeline: test/real/lib.sh's Kafka (with REAL_TOPICS), the consumer
# reading them and daprd, where taskevents publishes; drain() counts the
# consumer's records.
real_pipeline() {
    real_prepare "$WORK/real"
    real_stop_all
    rm -rf "$B/kafka/data"             # a fresh broker for each benchmark
    real_start_kafka "$B/kafka"
    real_start_consumer "$B/consumer"
    real_start_daprd "$B/daprd"
    setting port "$DAPRD_PORT"
    EVENTS_RESET=consumer_mark EVENTS_COUNT=consumer_events
}

bench_real() {
    local rounds=${BENCH_REAL_ROUNDS:-3} rates got n p50 p99 max k50 k99 c50 c99 mode
    say "real: a real daprd and Apache Kafka; drain per request and in bulk ($rounds x 40,000 events), latency at 1,000 changes/s"
    real_pipeline
    EXPECT_EVENTS=40000
    new_db real taskevents
    # the ceiling: test/bench/daprload, straight at daprd, with copies of one
    # CloudEvent as the worker renders it, as many in flight as the worker
    (cd "$WORK/test/bench/daprload" && GOCACHE="$REAL_CACHE/go-build" GOFLAGS=-mod=mod GOTOOLCHAIN=local \
        go build -o "$B/daprload" .)
    q real "INSERT INTO tasks (user_id, title) VALUES (gen_random_uuid(), 'Buy milk 1');
            SELECT event FROM taskevents.pending LIMIT 1" > "$B/event.json"
    local c alone ours ratios log_at totals s cpu_ours cpu_alone
    c=$(q real 'SHOW taskevents.concurrency')
    # the worker's rounds log their stages at DEBUG1 (test/bench/rounds.py)
    psql_ -d postgres -c 'ALTER SYSTEM SET log_min_messages = debug1' -c 'SELECT pg_reload_conf()' > /dev/null
    # where the CPU goes, ours and daprd alone: PostgreSQL (the worker
    # included), daprd, Kafka, the consumer, the rest (daprload)
    CPU_TREES="$(head -n 1 "$B/data/postmaster.pid") $DAPRD_PID $KAFKA_PID $CONSUMER_PID"
    # the ceiling's run of 40,000 events in this mode: "<events> <seconds> <events/s>"
    # shellcheck disable=SC2046 # -bulk 500: two words, or none
    ceiling() { "$B/daprload" -url "http://127.0.0.1:$DAPRD_PORT" -event "$B/event.json" -n 40000 -c "$c" \
        $([ "$mode" = bulk ] && echo -bulk 500); }
    for mode in "per request" bulk; do
        # per request: bulk = off; bulk: the default, auto, which daprd 1.18 gets
        setting bulk "$([ "$mode" = bulk ] && echo auto || echo off)"
        # both measured against a pipeline warm in this mode: a first drain
        # and a first load, not counted, warm the broker's JIT and daprd's
        # connections and code paths
        drain real 20000 1
        ceiling > /dev/null
        ours="" alone="" got="" ratios="" cpu_ours="" cpu_alone=""
        log_at=$(stat -c %s "$B/postgresql.log")
        for _ in $(seq "$rounds"); do
            drain real 20000 1
            ours+="$(rate 40000) "
            got+="$D_EVENTS "
            cpu_ours=$(cpu_trees --add "$cpu_ours" "" "$D_TREES")
            s=$(cpu_trees)
            a=$(ceiling | cut -d' ' -f3)
            cpu_alone=$(cpu_trees --add "$cpu_alone" "$s" "$(cpu_trees)")
            alone+="$a "
            ratios+="$(awk -v o="$(rate 40000)" -v a="$a" 'BEGIN {printf "%.2f", o / a}') "
        done
        read -r -a totals < <(tail -c +"$((log_at + 1))" "$B/postgresql.log" | python3 "$WORK/test/bench/rounds.py" --totals)
        row "real daprd + Kafka: drain 40,000 events, $mode, against daprd alone" \
            "$(echo "$ratios" | median) × ($(echo "$ours" | median) against $(echo "$alone" | median) events/s; runs: ours ${ours% }, daprd alone ${alone% }; consumer got ${got% }); our ${totals[0]} rounds (${totals[7]} claims) spent claim ${totals[1]} s, build ${totals[2]} s, durable ${totals[3]} s, send ${totals[4]} s (${totals[6]} requests in flight on average; ${totals[8]} s of it claiming and building more), record ${totals[5]} s; CPU ours: $(cpu_trees --per $((40000 * rounds)) "$cpu_ours" PostgreSQL daprd Kafka consumer); daprd alone: $(cpu_trees --per $((40000 * rounds)) "$cpu_alone" PostgreSQL daprd Kafka consumer)" "≥ 0.95" real
    done
    CPU_TREES=""
    local achieved="" hog log_at stages
    for mode in "per request" bulk "bulk, a CPU hog on one core"; do
        setting bulk "$([ "$mode" = "per request" ] && echo off || echo auto)"
        consumer_mark
        hog=""
        log_at=$(stat -c %s "$B/postgresql.log")
        [[ $mode == *hog* ]] && { sh -c 'while :; do :; done' & hog=$!; }
        pgbench_ -R 1000 -T 20 -f "$WORK/test/bench/insert.sql" real > "$B/real_latency.out" 2>&1
        [ -n "$hog" ] && kill "$hog"
        wait_for real 'SELECT count(*) FROM taskevents.outbox' 0
        read -r -a stages < <(tail -c +"$((log_at + 1))" "$B/postgresql.log" | python3 "$WORK/test/bench/rounds.py")
        EXPECT_EVENTS=$(( 2 * $(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' "$B/real_latency.out") ))
        consumer_events > /dev/null
        read -r n p50 p99 max k50 k99 c50 c99 < <(python3 "$WORK/test/bench/kafka_latency.py" "$B/consumer/records.jsonl" "$MARK")
        row "real daprd + Kafka: latency commit -> consumer, 1,000 changes/s, $mode: p50 / p99 / max" \
            "$p50 / $p99 / $max ms ($n events); stages p50 / p99: capture -> Kafka record $k50 / $k99, record -> consumer $c50 / $c99; the worker's ${stages[0]} rounds p50 / p99: claim ${stages[1]} / ${stages[2]}, build ${stages[3]} / ${stages[4]}, durable ${stages[5]} / ${stages[6]}, send (daprd's answers) ${stages[7]} / ${stages[8]}, record ${stages[9]} / ${stages[10]}" \
            "p99 ≤ 100, max ≤ 250" real
        achieved+="$mode $(printf '%.0f' "$(tps_of "$B/real_latency.out")"), "
    done
    psql_ -d postgres -c 'ALTER SYSTEM RESET log_min_messages' -c 'SELECT pg_reload_conf()' > /dev/null
    setting bulk DEFAULT
    note "real: daprd $("$REAL_DAPRD" --version) (test/real/lib.sh, stablecomponents) with docker/components/pubsub-kafka.yaml (producerRequiredAcks all) and Apache Kafka $KAFKA_VERSION, one KRaft node on loopback, 3 partitions per topic, on the same $(nproc) cores as PostgreSQL; drains as above, counted by a Kafka consumer (test/real/kafka/KafkaTool.java, which also parses every record with the CloudEvents SDK) instead of the fake sidecar; median of $rounds runs. Latency: pgbench -R 1000 -c 2 -j 2 for 20 s of one-INSERT transactions (changes/s achieved: ${achieved%, }), over every event: the consumer's receive time minus the CloudEvent's \"time\" (capture time, inside the transaction); where delivery falls behind the rate, latency is the backlog's age."
    real_stop_all
}

# --- peer: taskevents and Debezium side by side, into one Kafka --------------

DEBEZIUM_VERSION=$(sed -n 's:.*<debezium.version>\(.*\)</debezium.version>.*:\1:p' "$TOP/test/bench/peer/pom.xml")
PEER_TOPIC=peer.public.tasks    # Debezium's: topic.prefix, schema, table

# peer_ CMD...: a helper of this script (q, psql_, pgbench_, new_tasks, new_db)
# run against Debezium's server instead.
peer_() { B="$B/peer" PGPORT=$PEER_PORT "$@"; }

# peer_engine start|stop|wait [nowait]: tell the driver (wait: nothing), and
# wait until it last said "running" and the slot is in use, or "stopped" and
# the slot is free.
# shellcheck disable=SC2178,SC2128 # want: a local string, not another function's array
peer_engine() {
    local want=running active=1 end=$((SECONDS + 120))
    [ "$1" = stop ] && want=stopped active=0
    [ "$1" = wait ] || echo "$1" >&"$PEER_CTL"
    [ "${2:-}" = nowait ] && return 0
    until [ "$(grep -E '^(running|stopped)$' "$B/peer/driver.log" | tail -n 1)" = $want ] &&
          [ "$(peer_ q peer "SELECT count(*) FROM pg_replication_slots WHERE active")" = $active ]; do
        # shellcheck disable=SC2015 # the exit is for either test failing
        [ $SECONDS -lt $end ] && ! grep -q '^engine failed' "$B/peer/driver.log" ||
            { tail -n 20 "$B/peer/driver.log" >&2; exit 1; }
        sleep 0.05
    done
}

# Debezium's side: its jars (cached as test/real/lib.sh caches Kafka's), its
# own server (wal_level = logical, reached over TCP), and the driver reading
# commands from a FIFO; its first start creates the slot and publication.
peer_start() {
    JARS_HOME="$REAL_CACHE/peer/$DEBEZIUM_VERSION"
    real_locked real_jars "$WORK/test/bench/peer" PeerDriver.java "Debezium $DEBEZIUM_VERSION" || exit 1
    real_jars "$WORK/test/bench/peer" PeerDriver.java "Debezium $DEBEZIUM_VERSION"
    PEER_PORT=$(real_free_port)
    as_user mkdir -p "$B/peer"
    printf '%s\n' "$BENCH_CONF" "shared_preload_libraries = ''" "wal_level = logical" \
        "track_commit_timestamp = on" "listen_addresses = '127.0.0.1'" | start_server "$B/peer" "$PEER_PORT"
    peer_ new_db peer
    rm -f "$B/peer/ctl" "$B/peer/offsets.dat"
    mkfifo "$B/peer/ctl"
    java -cp "$JARS_HOME/lib/*:$JARS_CLASSES" PeerDriver "$KAFKA_BOOTSTRAP" 127.0.0.1 "$PEER_PORT" peer \
        "$B/peer/offsets.dat" < "$B/peer/ctl" > "$B/peer/driver.log" 2>&1 &
    PEER_PID=$!
    exec {PEER_CTL}> "$B/peer/ctl"
    peer_engine start
}

# peer_pause SIDE, peer_resume SIDE (prints when, in epoch seconds), without
# waiting; peer_ready SIDE: until it delivers.  SIDE te is taskevents in
# database te (taskevents.enabled), dbz the Debezium engine.
peer_pause() {
    if [ "$1" = te ]; then
        setting enabled off
        wait_for te 'SELECT worker_state FROM taskevents.status' disabled
    else
        peer_engine stop
    fi
}
peer_resume() {
    if [ "$1" = te ]; then
        psql_ -d postgres -c 'ALTER SYSTEM SET taskevents.enabled = on' >/dev/null
        q te 'SELECT extract(epoch FROM clock_timestamp()) FROM pg_reload_conf()'
    else
        date +%s.%N
        peer_engine start nowait
    fi
}
peer_ready() {
    if [ "$1" = te ]; then wait_for te 'SELECT worker_state FROM taskevents.status' delivering; else peer_engine wait; fi
}

# consumer_wait SIDE N [PID...]: until the consumer has N records since MARK
# (or none came for 30 s: a note says so for SIDE), sampling the PIDs' summed VmRSS every 0.1 s (peak in
# W_RSS, kB); W_LAST is when the Nth arrived (epoch µs, empty if not).
consumer_wait() {
    local side=$1 n=$2 p rss got last=-1 end
    shift 2
    W_RSS=0
    while got=$(($(consumer_records) - MARK)); [ $got -lt "$n" ]; do
        [ $got = $last ] || { last=$got; end=$((SECONDS + 30)); }
        [ $SECONDS -lt $end ] || { note "peer ($side): the consumer got $got of $n records, then nothing for 30 s"; break; }
        rss=0
        for p in "$@"; do rss=$((rss + $(mem "$p" | cut -d' ' -f1))); done
        [ "$rss" -gt "$W_RSS" ] && W_RSS=$rss
        sleep 0.1
    done
    W_LAST=$(sed -n "$((MARK + n))p" "$B/consumer/records.jsonl" | sed -n 's/.*"received_us":\([0-9]*\).*/\1/p')
}
# records_of TOPIC...: of the consumer's records on those topics, "N, B bytes,
# R rejected (the first reason)": the count, the mean size of a value, and
# how many the CloudEvents SDK could not read.
records_of() {
    python3 - "$B/consumer/records.jsonl" "$@" <<'PY'
import json, sys
n = size = bad = 0
why = ""
for line in open(sys.argv[1]):
    r = json.loads(line)
    if r["topic"] in sys.argv[2:]:
        n += 1
        size += len((r["value"] or "").encode())
        if "ce_error" in r:
            bad += 1
            why = why or r["ce_error"].split("Exception: ")[-1].split("\n")[0]
print(f"{n}, {round(size / max(n, 1))} bytes, {bad} rejected" + (f" ({why})" if why else ""))
PY
}
commas() { echo "$1" | sed ':a; s/\B[0-9]\{3\}\>/,&/; ta'; }
cpu_of() { local p c=0; for p; do c=$((c + $(cpu "$p"))); done; echo $c; }

bench_peer() {
    local rounds=${BENCH_PEER_ROUNDS:-3} n=${BENCH_PEER_CHANGES:-20000} secs=${BENCH_PEER_LATENCY_SECONDS:-20}
    local -a REAL_TOPICS=("${REAL_TOPICS[@]}" "$PEER_TOPIC")
    local s t t0 c0 base walsender a b c
    declare -A run=([te]="" [dbz]=peer_) db=([plain]=plain [te]=te [dbz]=peer) per=([te]=2 [dbz]=1) pids=()
    declare -A drains=() cpus=() rss=() wal=() p50=() p99=() max=() runs=() ratios=() tps=()
    say "peer: taskevents and Debezium $DEBEZIUM_VERSION into one Kafka, $rounds alternating rounds of: a drain of $n changes, latency at 1,000 changes/s for $secs s, the writer for $SECS s"
    psql_ -d postgres -c 'ALTER SYSTEM SET track_commit_timestamp = on'
    restart_server
    real_pipeline
    peer_start
    new_db plain
    new_db te taskevents
    setting bulk auto                  # the product's default (BENCH_CONF's is off)
    pids=([te]="$(q te 'SELECT pid FROM taskevents.status') $DAPRD_PID" [dbz]=$PEER_PID)
    # shellcheck disable=SC2086 # ${pids[$s]}: several pids, one word each
    for _ in $(seq "$rounds"); do      # 1. the drain of what was written while paused
        for s in te dbz; do
            peer_pause $s
            ${run[$s]} new_tasks "${db[$s]}" "$n" >/dev/null
            consumer_mark
            c0=$(cpu_of ${pids[$s]})
            t0=$(peer_resume $s)
            consumer_wait $s $((per[$s] * n)) ${pids[$s]}
            drains[$s]+="$(awk -v n="$n" -v a="$t0" -v b="${W_LAST:-0}" 'BEGIN {printf "%.0f", (b > 0) ? n / (b / 1e6 - a) : 0}') "
            cpus[$s]+="$(awk -v c="$(($(cpu_of ${pids[$s]}) - c0))" -v t="$TICKS" -v n="$n" 'BEGIN {printf "%.1f", c * 1000 / t / n * 1000}') "
            rss[$s]+="$(mb "$W_RSS") "
            if [ $s = dbz ]; then   # the walsender decoding for Debezium, started with the engine
                walsender=$(peer_ q peer 'SELECT pid FROM pg_stat_replication')
                wal[$s]+="$(awk -v c="$(cpu_of "$walsender")" -v t="$TICKS" -v n="$n" 'BEGIN {printf "%.1f", c * 1000 / t / n * 1000}') "
            fi
            peer_ready $s
        done
    done
    for s in te dbz; do ${run[$s]} psql_ -d postgres -c "ALTER DATABASE ${db[$s]} SET synchronous_commit = on"; done
    for _ in $(seq "$rounds"); do      # 2. latency, commit -> consumer
        for s in te dbz; do
            consumer_mark
            ${run[$s]} pgbench_ -R 1000 -T "$secs" -f "$WORK/test/bench/insert.sql" "${db[$s]}" > "$B/peer_latency.out" 2>&1
            tps[$s]+="$(printf '%.0f' "$(tps_of "$B/peer_latency.out")") "
            consumer_wait $s $((per[$s] * $(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' "$B/peer_latency.out")))
            ${run[$s]} q "${db[$s]}" "COPY (SELECT id, (extract(epoch FROM pg_xact_commit_timestamp(xmin)) * 1e6)::bigint
                                          FROM tasks WHERE title = 'Buy milk') TO STDOUT" > "$B/peer_commits"
            read -r _ a b c _ < <(python3 "$WORK/test/bench/kafka_latency.py" "$B/consumer/records.jsonl" "$MARK" "$B/peer_commits")
            p50[$s]+="$a " p99[$s]+="$b " max[$s]+="$c "
        done
    done
    for s in te dbz; do ${run[$s]} psql_ -d postgres -c "ALTER DATABASE ${db[$s]} RESET synchronous_commit"; done
    for _ in $(seq "$rounds"); do      # 3. the writer flat out, with no pipeline and with each
        for s in plain te dbz; do
            ${run[$s]:-} pgbench_ -T "$SECS" -f "$WORK/test/bench/lifecycle.sql" "${db[$s]}" > "$B/peer_writer.out" 2>&1
            t=$(printf '%.0f' "$(tps_of "$B/peer_writer.out")")
            runs[$s]+="$t "
            [ $s = plain ] && base=$t
            ratios[$s]+="$(awk -v a="$t" -v b="$base" 'BEGIN {printf "%.3f", a / b}') "
            if [ $s = te ]; then         # the backlog is dropped, not left to slow the next runs
                peer_pause te
                psql_ -d te -c "$DISCARD_QUEUE"
            elif [ $s = dbz ]; then
                peer_pause dbz
                peer_ q peer "SELECT pg_replication_slot_advance('peer', pg_current_wal_lsn())" >/dev/null
                rm "$B/peer/offsets.dat"   # else it refuses to start behind the slot
            fi
            [ $s = plain ] || { peer_resume $s >/dev/null; peer_ready $s; }
            ${run[$s]:-} psql_ -d "${db[$s]}" -c 'VACUUM'
        done
    done
    declare -A label=([te]="taskevents $(q te "SELECT extversion FROM pg_extension WHERE extname = 'taskevents'") (defaults: bulk, real daprd)"
                      [dbz]="Debezium $DEBEZIUM_VERSION embedded")
    for s in te dbz; do
        row "peer drain of $(commas "$n") changes written while paused: ${label[$s]}" \
            "$(echo "${drains[$s]}" | median) changes/s ($(commas $((per[$s] * n))) records; runs: ${drains[$s]% })" "" peer
    done
    for s in te dbz; do
        row "peer latency commit -> consumer, 1,000 changes/s, p50 / p99 / max: ${label[$s]}" \
            "$(echo "${p50[$s]}" | median) / $(echo "${p99[$s]}" | median) / $(echo "${max[$s]}" | median) ms (p99 runs: ${p99[$s]% })" "" peer
    done
    row "peer writer: the task lifecycle, no pipeline (wal_level = replica)" "$(echo "${runs[plain]}" | median) lifecycles/s" "" peer
    row "peer writer: with ${label[te]}, wal_level = replica" "$(echo "${ratios[te]}" | median) x no pipeline" "" peer
    row "peer writer: with ${label[dbz]}, wal_level = logical" "$(echo "${ratios[dbz]}" | median) x no pipeline" "" peer
    row "peer drain: pipeline CPU per 1,000 changes, peak RSS: taskevents worker + daprd" \
        "$(echo "${cpus[te]}" | median) ms; $(echo "${rss[te]}" | median) MB" "" peer
    row "peer drain: pipeline CPU per 1,000 changes, peak RSS: Debezium's JVM (+ its walsender's CPU)" \
        "$(echo "${cpus[dbz]}" | median) ms (+ $(echo "${wal[dbz]}" | median) ms); $(echo "${rss[dbz]}" | median) MB" "" peer
    note "peer: one Kafka $KAFKA_VERSION node (3 partitions per topic) and one consumer (test/real/kafka/KafkaTool.java) reading taskevents' three topics and Debezium's $PEER_TOPIC, all on these $(nproc) cores with both servers; each figure is the median of $rounds rounds that alternate taskevents and Debezium. taskevents: default settings (bulk publish, which taskevents.bulk = auto finds in daprd 1.18) through daprd $("$REAL_DAPRD" --version) as in bench real, wal_level = replica. Debezium $DEBEZIUM_VERSION: its embedded engine and PostgreSQL connector (pgoutput, slot and filtered publication on tasks, snapshot.mode = no_data, offsets in a file flushed at every batch, otherwise its defaults: max.batch.size 2048, poll.interval.ms 500) in test/bench/peer/PeerDriver.java on $(java -version 2>&1 | head -n 1 | sed 's/.*\"\(.*\)\".*/Java \1/') with the JVM's default heap (at most a quarter of the RAM; the JVM is not restarted between rounds), records converted to CloudEvents JSON (its CloudEventsConverter, key as JSON) and produced as Debezium Server's Kafka sink does (acks=all, key = the row's key, every send awaited per batch before its offsets are committed); its own PostgreSQL server with wal_level = logical and the same settings (both with track_commit_timestamp = on)."
    note "peer drain: $(commas "$n") INSERTs in one statement while delivery is paused (taskevents.enabled = off; the engine stopped), then timed from the reload that turns delivery on (from the driver's \"start\": a new engine in the running JVM, which connects and opens the slot) until the consumer received the last record, by the consumer's clock; changes/s = $(commas "$n") over that. CPU: utime + stime from /proc over the drain of the worker and daprd (taskevents) or the JVM (Debezium), per 1,000 changes; the walsender that decodes for Debezium is shown apart (taskevents' reads of its queue are in the worker's figure). Peak RSS: VmRSS summed over those processes, sampled every 0.1 s; the worker's counts shared buffers it touched. Runs: CPU ms te ${cpus[te]% }, dbz ${cpus[dbz]% }; MB te ${rss[te]% }, dbz ${rss[dbz]% }."
    note "peer latency: pgbench -R 1000 -c 2 -j 2 for $secs s of one-INSERT transactions into each side in turn (achieved changes/s: taskevents ${tps[te]% }, Debezium ${tps[dbz]% }); for every record of those rows, the consumer's receive time minus pg_xact_commit_timestamp(xmin) of its row (track_commit_timestamp), both from this machine's clock; synchronous_commit = on (PostgreSQL's default) for these writers: with off, the walsender would see a commit only once the WAL writer flushed it, up to wal_writer_delay (200 ms) later, while taskevents' worker flushes WAL itself; per round p50, p99, max, then the median of each over rounds (p50 runs te ${p50[te]% }, dbz ${p50[dbz]% }). Where a pipeline falls behind the rate, latency is the backlog's age."
    note "peer writer: pgbench -M prepared -c 2 -j 2 -T $SECS of the task lifecycle (4 transactions: insert, edit title, complete, delete), alternating no pipeline (a database without the extension, wal_level = replica), taskevents delivering, Debezium streaming; a ratio is the median over rounds of the run over the no-pipeline run of its round; runs (lifecycles/s): none ${runs[plain]% }, taskevents ${runs[te]% }, Debezium ${runs[dbz]% }. After each run its backlog is dropped (taskevents: queue emptied with delivery off; Debezium: engine stopped, the slot advanced and the offsets forgotten) rather than waited for."
    local te_stats dbz_stats
    te_stats=$(records_of "${REAL_TOPICS[@]:0:3}")
    dbz_stats=$(records_of "$PEER_TOPIC")
    note "peer, not symmetric: taskevents writes 2 CloudEvents per new task (task.created on task-events, sync.task on task-updates; 8 per lifecycle, over three topics, reminders too) and builds them in the database, under the writer's transaction; Debezium writes 1 record per row change (its change envelope as CloudEvents data, with before/after and source metadata) to one topic, built from the WAL by the walsender and the JVM after commit. taskevents' cost to writers is its trigger and queue (wal_level stays replica); Debezium's is wal_level = logical and the walsender. Debezium gathers each batch until it has max.batch.size records or poll.interval.ms has passed, so at 1,000 changes/s a change waits up to 500 ms before it is sent; per request, taskevents sends each event alone. Debezium's side is one JVM with the engine embedded, not Debezium Server itself; no tombstones (tombstones.on.delete = false). Records (count, mean bytes of the value, rejected by the consumer's CloudEvents SDK, cloudevents-json-jackson 4.0.1, and why): taskevents $te_stats; Debezium $dbz_stats."
    psql_ -d postgres -c 'ALTER SYSTEM RESET track_commit_timestamp'
    exec {PEER_CTL}>&-
    wait "$PEER_PID" 2>/dev/null || true
    PEER_PID=
    as_user pg_ctl -D "$B/peer/data" -m fast stop >/dev/null
    real_stop_all
    restart_server
}

# Each benchmark starts without the databases of the ones before: every
# database with the extension keeps a worker, and worker slots are few.
drop_databases() {
    local d
    for d in $(q postgres "SELECT datname FROM pg_database WHERE datname NOT IN ('postgres', 'template0', 'template1')"); do
        psql_ -d postgres -c "DROP DATABASE $d WITH (FORCE)"
    done
}

bench_server
for b in "${BENCHES[@]}"; do drop_databases; "bench_$b"; done
print_table
