#!/usr/bin/env bash
# Every test: the fake sidecar's self-test, the deployment files' checks,
# pg_regress (SQL-visible behaviour) and the TAP tests (worker, faults,
# restarts, crashes), the servers run by an unprivileged user, on every
# supported PostgreSQL: 15 on the host, 17 and 18 in cached Debian chroots
# (test/pgversions.sh).  Ends with one summary line per version.  Installs
# what is missing on a fresh Debian 12 machine.
#
#   bash test/run-tests.sh                                  every version
#   TASKEVENTS_PG_VERSIONS="15 18" bash test/run-tests.sh   only these
source "$(dirname "$0")/setup.sh"

# --- once per version ---------------------------------------------------------
if [ -z "${TASKEVENTS_PG_RUN:-}" ]; then
    source "$TOP/test/pgversions.sh"
    pgv_check_readme || exit 1
    # The host's own packages and HOST_PACKAGES first: the chroots reuse
    # its postgres user's ids and borrow its toolchains.
    read -r -a PACKAGES <<<"$(packages_for "$(pgv_host_major)")"
    ensure_packages
    read -r -a versions <<<"${TASKEVENTS_PG_VERSIONS:-${PGV_SUPPORTED[*]}}"
    summaries=$(mktemp /tmp/taskevents-summary.XXXXXX)
    trap 'rm -f "$summaries"' EXIT
    failed=()
    for v in "${versions[@]}"; do
        echo "=== PostgreSQL $v ($(pgv_where "$v" || echo unsupported))"
        started=$SECONDS
        : >"$summaries.$v"
        TASKEVENTS_SUMMARY="$summaries.$v" run_for_version "$v" bash "$TOP/test/run-tests.sh" || failed+=("$v")
        line=$(cat "$summaries.$v")
        rm -f "$summaries.$v"
        echo "${line:-PostgreSQL $v: did not run to the end (see above)}, $((SECONDS - started)) s" >>"$summaries"
    done
    echo "=== summary"
    cat "$summaries"
    if [ ${#failed[@]} -gt 0 ]; then
        echo "FAILED on PostgreSQL ${failed[*]}"
        exit 1
    fi
    echo "all test suites passed on PostgreSQL ${versions[*]}"
    exit 0
fi

# --- on PostgreSQL $PG_MAJOR (here, or inside its chroot) ---------------------
ensure_packages
build_and_install
cd "$WORK"
mkdir -p logs
failed=()

echo "== test/sidecar: the Dapr-compatible test sidecar"
as_user make -s -C test/sidecar check 2>&1 | tee logs/sidecar.log || failed+=(sidecar)

echo "== docker/validate.sh: deployment files"
as_user bash docker/validate.sh 2>&1 | tee logs/docker.log || failed+=(docker)

# pg_regress and TAP one after the other, so that a pg_regress failure
# still lets the TAP tests run (make installcheck would stop there).
echo "== pg_regress"
if ! as_user make -s installcheck TAP_TESTS= 2>&1 | tee logs/pg_regress.log; then
    failed+=(pg_regress)
    for f in regression.diffs; do [ -f "$f" ] && cat "$f"; done
fi

echo "== TAP"
if ! as_user make -s installcheck REGRESS= 2>&1 | tee logs/tap.log; then
    failed+=(TAP)
    for f in tmp_check/log/regress_log_*; do
        grep -q "not ok" "$f" 2>/dev/null && { echo "== $f (last 80 lines)"; tail -n 80 "$f"; }
    done
fi

# One line for this version: each suite's own count.
counts() {
    local name=$1 log=$2
    python3 - "$name" "$log" <<'PY'
import re, sys
name, text = sys.argv[1], open(sys.argv[2], errors="replace").read()
if name in ("sidecar", "docker"):
    m = re.findall(r"^(\d+) passed, (\d+) failed", text, re.M)
    print(f"{name} {m[-1][0]}/{int(m[-1][0]) + int(m[-1][1])}" if m else f"{name} no result")
elif name == "pg_regress":
    # 15: " All 7 tests passed." / " 1 of 7 tests failed."; 16+: the same after "# ".
    m = re.search(r"All (\d+) tests passed", text)
    f = re.search(r"(\d+) of (\d+) tests failed", text)
    print(f"pg_regress {m.group(1)}/{m.group(1)}" if m else
          f"pg_regress {int(f.group(2)) - int(f.group(1))}/{f.group(2)}" if f else "pg_regress no result")
else:
    t = re.search(r"^Files=\d+, Tests=(\d+)", text, re.M)
    bad = sum(int(x) for x in re.findall(r"Failed: (\d+)\)", text))
    print(f"TAP {int(t.group(1)) - bad}/{t.group(1)}" if t else "TAP no result")
PY
}
version=$(pg_config --version | awk '{print $2}')
result="ok"
[ ${#failed[@]} -gt 0 ] && result="FAILED: ${failed[*]}"
line="PostgreSQL $version ($( [ -f /etc/os-release ] && . /etc/os-release && echo "Debian $VERSION_CODENAME")):"
line+=" $(counts sidecar logs/sidecar.log), $(counts docker logs/docker.log),"
line+=" $(counts pg_regress logs/pg_regress.log), $(counts TAP logs/tap.log): $result"
[ -n "${TASKEVENTS_SUMMARY:-}" ] && echo "$line" >"$TASKEVENTS_SUMMARY"

if [ ${#failed[@]} -gt 0 ]; then
    echo "FAILED: ${failed[*]} (the build and its logs stay in $WORK)"
    exit 1
fi
cd /
as_root rm -rf "$WORK"
echo "all test suites passed on PostgreSQL $version"
