#!/usr/bin/env bash
# Every test: the fake sidecar's self-test, the deployment files' checks,
# pg_regress (SQL-visible behaviour) and the TAP tests (worker, faults,
# restarts, crashes), the servers run by an unprivileged user.  Installs
# what is missing on a fresh Debian 12 machine.
source "$(dirname "$0")/setup.sh"

ensure_packages
build_and_install
cd "$WORK"
failed=()

echo "== test/sidecar: the Dapr-compatible test sidecar"
as_user make -s -C test/sidecar check || failed+=(sidecar)

echo "== docker/validate.sh: deployment files"
as_user bash docker/validate.sh || failed+=(docker)

echo "== pg_regress and TAP"
if ! as_user make -s installcheck; then
    failed+=(installcheck)
    for f in regression.diffs; do [ -f "$f" ] && cat "$f"; done
    for f in tmp_check/log/regress_log_*; do
        grep -q "not ok" "$f" 2>/dev/null && { echo "== $f (last 80 lines)"; tail -n 80 "$f"; }
    done
fi

echo "== test/real: the real daprd and Apache Kafka"
bash test/real/run.sh "$WORK" || failed+=(real)

if [ ${#failed[@]} -gt 0 ]; then
    echo "FAILED: ${failed[*]}"
    exit 1
fi
echo "all test suites passed"
