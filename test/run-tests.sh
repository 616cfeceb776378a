#!/usr/bin/env bash
# Every test: the fake sidecar's self-test, the unit tests of the queue's
# arithmetic, the deployment files' checks, the consumer's contract
# (schema/), pg_regress (SQL-visible behaviour), the isolation specs (races
# between sessions, each interleaving spelled out) and the TAP tests
# (worker, faults, restarts, crashes; each event they deliver checked
# against schema/), the servers run by an unprivileged user, on every
# supported PostgreSQL: 15 on the host, 17 and 18 in cached Debian chroots
# (test/pgversions.sh).  Ends with one summary line per version.  Installs
# what is missing on a fresh Debian 12 machine.
#
#   bash test/run-tests.sh                                  every version
#   TASKEVENTS_PG_VERSIONS="15 18" bash test/run-tests.sh   only these
# shellcheck source=test/setup.sh
source "$(dirname "$0")/setup.sh"

# --- once per version ---------------------------------------------------------
if [ -z "${TASKEVENTS_PG_RUN:-}" ]; then
    source "$TOP/test/pgversions.sh"
    pgv_check_readme || exit 1
    # The host's own packages and HOST_PACKAGES first: the chroots reuse
    # its postgres user's ids and borrow its toolchains.
    read -r -a PACKAGES <<<"$(packages_for "$(pgv_host_major)")"
    ensure_packages
    # the contract's validator, which the TAP suites of every version use
    bash "$TOP/test/contract/run.sh" --fetch || exit 1
    read -r -a versions <<<"${TASKEVENTS_PG_VERSIONS:-${PGV_SUPPORTED[*]}}"
    summaries=$(mktemp /tmp/taskevents-summary.XXXXXX)
    trap 'rm -f "$summaries" "$summaries".*' EXIT
    failed=()
    for v in "${versions[@]}"; do
        echo "=== PostgreSQL $v ($(pgv_where "$v" || echo unsupported))"
        started=$SECONDS
        : >"$summaries.$v"
        TASKEVENTS_SUMMARY="$summaries.$v" TASKEVENTS_HOST_MAJOR=$(pgv_host_major) \
            TASKEVENTS_NEWEST_MAJOR=${PGV_SUPPORTED[-1]} \
            run_for_version "$v" bash "$TOP/test/run-tests.sh" || failed+=("$v")
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
bash "$TOP/test/contract/run.sh" --place "$WORK"
cd "$WORK"
mkdir -p logs
failed=()
suites=()

# run_suite NAME COMMAND...: one suite, its output also kept in
# logs/NAME.log, from which the summary line takes the suite's own count.
run_suite() {
    local name=$1
    shift
    suites+=("$name")
    "$@" 2>&1 | tee "logs/$name.log" || { failed+=("$name"); return 1; }
}

echo "== test/sidecar: the Dapr-compatible test sidecar"
run_suite sidecar as_user make -s -C test/sidecar check || true

echo "== test/unit: the queue's arithmetic (src/cursor.c), outside the server"
run_suite unit as_user make -s unitcheck || true

# The deployment files and the scripts, the same on every version: on the
# host's pass.
if [ "$PG_MAJOR" = "${TASKEVENTS_HOST_MAJOR:-$PG_MAJOR}" ]; then
    echo "== docker/validate.sh: deployment files and scripts"
    run_suite docker bash docker/validate.sh || true
fi

# The image built from docker/Dockerfile and run (test/docker/run.sh), once,
# on the host's pass: for each version tested and the Dockerfile's default.
if [ "$PG_MAJOR" = "${TASKEVENTS_HOST_MAJOR:-$PG_MAJOR}" ]; then
    echo "== test/docker: the image, built from docker/Dockerfile with buildah and run"
    run_suite image env WORK="$WORK" bash test/docker/run.sh || true
fi

# The consumer's contract (schema/): the same on every version, so on the
# host's only; the TAP suites below validate each event they deliver.
if [ "$PG_MAJOR" = "${TASKEVENTS_HOST_MAJOR:-$PG_MAJOR}" ]; then
    echo "== test/contract: schema/ and schema/asyncapi.yaml"
    run_suite contract bash test/contract/run.sh || true
fi

# pg_regress, isolation and TAP one after the other, so that a failure of
# one still lets the others run (make installcheck would stop there).
echo "== pg_regress"
if ! run_suite pg_regress as_user make -s installcheck TAP_TESTS= ISOLATION=; then
    if [ -f regression.diffs ]; then cat regression.diffs; fi
fi

echo "== isolation"
if ! run_suite isolation as_user make -s installcheck TAP_TESTS= REGRESS=; then
    if [ -f output_iso/regression.diffs ]; then cat output_iso/regression.diffs; fi
fi

echo "== TAP"
if ! run_suite TAP as_user make -s installcheck REGRESS= ISOLATION=; then
    # The log of every script with a failed test or listed by prove as
    # failed (one that died before its first test has no "not ok").
    for f in tmp_check/log/regress_log_*; do
        t=${f#tmp_check/log/regress_log_}
        if grep -q "not ok" "$f" 2>/dev/null || grep -q "^test/t/$t\.pl .*(Wstat" logs/TAP.log; then
            echo "== $f (last 80 lines)"
            tail -n 80 "$f"
        fi
    done
fi

# The fuzzer (test/fuzz/), a short bounded run, on the host's PostgreSQL
# (bash test/fuzz/run.sh alone runs it for 10 minutes).
if [ "$PG_MAJOR" = "${TASKEVENTS_HOST_MAJOR:-$PG_MAJOR}" ]; then
    echo "== test/fuzz: the CloudEvent builder and the value renderers, 60 s"
    run_suite fuzz env WORK="$WORK" bash test/fuzz/run.sh 60 || true
fi

# The real daprd and Apache Kafka (test/real/): on the host's PostgreSQL
# and on the newest supported one.
if [ "$PG_MAJOR" = "${TASKEVENTS_HOST_MAJOR:-$PG_MAJOR}" ] || [ "$PG_MAJOR" = "${TASKEVENTS_NEWEST_MAJOR:-$PG_MAJOR}" ]; then
    echo "== test/real: the real daprd and Apache Kafka"
    run_suite real bash test/real/run.sh "$WORK" || true
fi

# One line for this version: each suite's own count, read from its output
# ("N passed, M failed"; pg_regress's and the isolation tester's "All N
# tests passed." or "M of N tests failed."; prove's "Files=F, Tests=N" less its "Failed: M", and
# how many of its scripts failed).
counts() {
    python3 - "$@" <<'PY'
import re, sys
out = []
for name in sys.argv[1:]:
    text = open(f"logs/{name}.log", errors="replace").read()
    plain = re.findall(r"^(\d+) passed, (\d+) failed", text, re.M)
    regress = re.search(r"All (\d+) tests passed", text)
    regress_failed = re.search(r"(\d+) of (\d+) tests failed", text)
    prove = re.search(r"^Files=\d+, Tests=(\d+)", text, re.M)
    fuzz = re.search(r"^fuzz: (\d+) inputs.*: no failure, no leak$", text, re.M)
    if fuzz:
        out.append(f"{name} {int(fuzz.group(1)):,} inputs")
    elif plain:
        ok, bad = map(int, plain[-1])
        out.append(f"{name} {ok}/{ok + bad}")
    elif regress:
        out.append(f"{name} {regress.group(1)}/{regress.group(1)}")
    elif regress_failed:
        bad, total = map(int, regress_failed.groups())
        out.append(f"{name} {total - bad}/{total}")
    elif prove:
        total = int(prove.group(1))
        bad = sum(int(x) for x in re.findall(r"Failed: (\d+)\)", text))
        files = re.search(r"^Files=(\d+)", text, re.M).group(1)
        died = len(re.findall(r"^\S+\.pl\s+\(Wstat: ", text, re.M))
        out.append(f"{name} {total - bad}/{total}" + (f" ({died} of {files} scripts failed)" if died else ""))
    else:
        out.append(f"{name} no count")
print(", ".join(out))
PY
}
version=$(pg_config --version | awk '{print $2}')
result="ok"
[ ${#failed[@]} -gt 0 ] && result="FAILED: ${failed[*]}"
line="PostgreSQL $version ($(. /etc/os-release && echo "Debian $VERSION_CODENAME")): $(counts "${suites[@]}"): $result"
[ -n "${TASKEVENTS_SUMMARY:-}" ] && echo "$line" >"$TASKEVENTS_SUMMARY"

# shellcheck disable=SC2031 # WORK: build_and_install's, in this shell
if [ ${#failed[@]} -gt 0 ]; then
    echo "FAILED: ${failed[*]} (the build and its logs stay in $WORK)"
    exit 1
fi
cd /
# shellcheck disable=SC2031 # WORK: build_and_install's, in this shell
as_root rm -rf "$WORK"
echo "all test suites passed on PostgreSQL $version"
