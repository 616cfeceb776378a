#!/usr/bin/env bash
# Fuzz the CloudEvent builder and the value renderers (test/fuzz/fuzz.c):
# libFuzzer in a throw-away PostgreSQL backend (postgres --single, run by an
# unprivileged user) with LeakSanitizer preloaded.  The corpus grows in a
# cache between runs.  Ends with one line: inputs, rate, corpus, memory.
#
#   bash test/fuzz/run.sh [SECONDS]     (default 600; the test suite runs 60)
#
# A failure leaves its input in the run's directory (crash-*, leak-*) with
# the broken rule above it in fuzz.log; reproduce with
#   bash test/fuzz/run.sh 0 path/to/crash-...
set -euo pipefail
SECONDS_TO_RUN=${1:-600}
shift || true
# shellcheck source=test/setup.sh
source "$(dirname "$0")/../setup.sh"
PACKAGES+=(clang-14)
ensure_packages
if [ -z "${WORK:-}" ] || [ ! -d "$WORK" ]; then build_and_install; fi

F=$(mktemp -d /tmp/taskevents-fuzz.XXXXXX)
CORPUS=${TASKEVENTS_CACHE:-${HOME:-$(getent passwd "$(id -u)" | cut -d: -f6)}/.cache/taskevents}/fuzz-corpus
mkdir -p "$CORPUS"
clang-14 -fPIC -shared -O1 -g -fsanitize=fuzzer-no-link -Wall -Wno-ignored-attributes \
    -I"$(pg_config --includedir-server)" -I"$TOP/src" "$TOP/test/fuzz/fuzz.c" "$TOP/src/cloudevent.c" \
    "$(clang-14 -print-file-name=libclang_rt.fuzzer_no_main-x86_64.a)" -lstdc++ \
    -Wl,-Bsymbolic -o "$F/te_fuzz.so"   # -Bsymbolic: coverage hooks are libFuzzer's, not LSan's

# Seeds: one value of each type the harness knows (in its order), and a change.
python3 - "$CORPUS" <<'PY'
import struct, sys
values = ["héllo \"x\"\n\t\\", "a\u2028b", "ab  ", "n", "c", "-32768", "42",
    "9223372036854775807", "4294967295", "-1.50e-3", "1.1", "-0", "t", "2024-02-29",
    "23:59:59.999999", "12:00+05:45", "2024-01-01 10:00", "2024-06-01 12:00:00.123456+02",
    "1 year 2 mons -3 days 04:05:06.7", "\\x00ff", "{\"a\": [1, \"\\u00e9\"]}",
    "{\"b\": null}", "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "192.168.0.1/24",
    "08:00:2b:01:02:03", "12.34", "(1,2)", "101", "a:1 b:2", "[1,10)",
    "[2024-01-01,2025-01-01)", "{1,NaN}", "{1.5,Infinity}", "{a,\"b c\"}",
    "{\"2024-01-01 00:00+00\"}", "{\"1 day\"}", "{2024-01-01}", "{\"\\\\x01\"}"]
for i, v in enumerate(values):
    open(f"{sys.argv[1]}/seed-{i:02d}", "wb").write(bytes([i, 0]) + v.encode())
change = struct.pack("<Hqq", 0x1029, 786297600000000, 786297600000000)
open(f"{sys.argv[1]}/seed-change", "wb").write(bytes([len(values)]) + change
    + "42\x01u-1\x01Té\x01trace\x0100-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".encode())
PY

cp -r "$CORPUS" "$F/corpus"
[ $# -gt 0 ] && cp "$1" "$F/input"
[ "$(id -u)" = 0 ] && chown -R "$RUN_AS" "$F"
as_user initdb -D "$F/data" -A trust >/dev/null
args="'fuzz','-max_total_time=$SECONDS_TO_RUN','-timeout=10','-print_final_stats=1','-artifact_prefix=$F/'"
if [ $# -gt 0 ]; then args+=",'$F/input'"; else args+=",'$F/corpus'"; fi
started=$SECONDS
status=0
printf '%s\n' "CREATE FUNCTION te_fuzz(text[]) RETURNS int AS '$F/te_fuzz.so' LANGUAGE C;" \
               "SELECT te_fuzz(ARRAY[$args]);" |
    (cd "$F" && as_user env LD_PRELOAD="$(gcc -print-file-name=liblsan.so)" \
        LSAN_OPTIONS="suppressions=$TOP/test/fuzz/lsan.supp" \
        "$(pg_config --bindir)/postgres" --single -D "$F/data" postgres) >"$F/fuzz.log" 2>&1 || status=$?
[ -n "$(find "$F" -maxdepth 1 \( -name 'crash-*' -o -name 'leak-*' -o -name 'timeout-*' \))" ] && status=1
grep -q '^stat::number_of_executed_units' "$F/fuzz.log" || status=1
cp -n "$F"/corpus/* "$CORPUS"/ 2>/dev/null || true
if [ $status -ne 0 ]; then
    grep -v -e '^#[0-9]' -e '^backend>' "$F/fuzz.log" | tail -n 40
    echo "fuzz: FAILED (everything in $F)"
    exit 1
fi
stat() { sed -n "s/^stat::$1: *//p" "$F/fuzz.log"; }
corpus=$(find "$F/corpus" -mindepth 1 -maxdepth 1 | wc -l)
memory=$(sed -n 's/^fuzz: long-lived memory //p' "$F/fuzz.log")
echo "fuzz: $(stat number_of_executed_units) inputs in $((SECONDS - started)) s" \
     "($(stat average_exec_per_sec)/s), $corpus in the corpus, peak RSS $(stat peak_rss_mb) MB," \
     "long-lived memory $memory: no failure, no leak"
as_root rm -rf "$F"
