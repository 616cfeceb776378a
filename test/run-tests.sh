#!/usr/bin/env bash
# Every test: pg_regress (SQL-visible behaviour) and the TAP tests (worker,
# faults, restarts, crashes), each on throw-away servers run by an
# unprivileged user.  Installs what is missing on a fresh Debian 12 machine.
source "$(dirname "$0")/setup.sh"

ensure_packages
build_and_install
cd "$WORK"
set +e
as_user make -s PG_CONFIG=/usr/lib/postgresql/15/bin/pg_config installcheck PROVE_FLAGS="--timer ${PROVE_FLAGS:-}"
rc=$?
set -e
if [ $rc -ne 0 ]; then
    for f in results/*.diffs regression.diffs; do [ -f "$f" ] && cat "$f"; done
    for f in tmp_check/log/regress_log_*; do
        [ -f "$f" ] && { echo "== $f (last 60 lines)"; tail -n 60 "$f"; }
    done
fi
exit $rc
