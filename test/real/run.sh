#!/usr/bin/env bash
# The real pipeline's tests: PostgreSQL -> taskevents -> a real daprd (built
# once from the Go module proxy) -> Apache Kafka (Maven Central's jars) -> a
# consumer reading every record with the CloudEvents SDK.  README: "The real
# pipeline".
#
#   bash test/real/run.sh        install what is missing, build taskevents into a
#                                scratch copy of PostgreSQL (test/setup.sh), run the suite
#   bash test/real/run.sh DIR    run the suite of DIR, a copy of the tree already
#                                built and installed into the PostgreSQL that
#                                $PG_CONFIG (or pg_config on PATH) names; what
#                                test/run-tests.sh does, once per PostgreSQL version
#
# The servers run as the unprivileged user of test/setup.sh; daprd and the
# jars come from ${TASKEVENTS_CACHE:-$HOME/.cache/taskevents} (TASKEVENTS_DAPRD
# to use an installed daprd instead of building one).
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=test/setup.sh
source "$HERE/../setup.sh"
# shellcheck source=test/real/lib.sh
source "$HERE/lib.sh"

PACKAGES+=(openjdk-17-jdk-headless maven)
# node for the CloudEvents SDK for JavaScript (test/contract/sdk_js.mjs)
command -v node >/dev/null || PACKAGES+=(nodejs)
ensure_packages
if [ $# -ge 1 ]; then
    WORK=$(cd "$1" && pwd)
else
    build_and_install
    bash "$HERE/../contract/run.sh" --place "$WORK"    # the events' validator
fi
PG_CONFIG=${PG_CONFIG:-pg_config}
export PG_CONFIG
real_prepare "$WORK/real"

start=$SECONDS
if ! as_user make -s -C "$WORK/test/real" installcheck; then
    for f in "$WORK"/test/real/tmp_check/log/regress_log_*; do
        grep -q "not ok" "$f" 2>/dev/null && { echo "== $f (last 80 lines)"; tail -n 80 "$f"; }
    done
    echo "test/real: FAILED after $((SECONDS - start)) s ($("$PG_CONFIG" --version))"
    exit 1
fi
echo "test/real: passed in $((SECONDS - start)) s ($("$PG_CONFIG" --version))"
