#!/usr/bin/env bash
# The consumer's contract (schema/): the JSON Schemas checked against the
# draft 2020-12 meta-schema and against events as the extension writes them
# and as it must not (test/contract/selfcheck.py), and schema/asyncapi.yaml
# parsed by the AsyncAPI project's parser (test/contract/asyncapi.mjs).
# Ends with "N passed, M failed".  The TAP suites validate every event they
# deliver with test/contract/validate.py (test/t/TaskEventsTest.pm).
#
#   bash test/contract/run.sh               install what is missing, run the checks
#   bash test/contract/run.sh --fetch       only install them (test/run-tests.sh, on
#                                           the host before the chroots need them)
#   bash test/contract/run.sh --place DIR   put the validator's Python packages
#                                           into DIR/test/contract/pylib (a copy of
#                                           the tree that the suites run from)
#
# jsonschema (PyPI, requirements.txt) and @asyncapi/parser (npm,
# package-lock.json) are installed once into
# ${TASKEVENTS_CACHE:-$HOME/.cache/taskevents}/contract, keyed on those files.
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$HERE/../setup.sh"

CACHE=${TASKEVENTS_CACHE:-$HOME/.cache/taskevents}/contract
PYLIB=$CACHE/pylib-$(sha256sum "$HERE/requirements.txt" | cut -c1-12)
NODELIB=$CACHE/node-$(cat "$HERE/package.json" "$HERE/package-lock.json" | sha256sum | cut -c1-12)

# Run "$@" holding the cache's lock, so that runs side by side install once.
locked() {
    mkdir -p "$CACHE"
    ( flock 9; "$@" ) 9>"$CACHE/.lock"
}

fetch_python() {
    [ -f "$PYLIB/.complete" ] && return 0
    python3 -m pip --version >/dev/null 2>&1 || { PACKAGES+=(python3-pip); ensure_packages; }
    echo "== installing the JSON Schema validator (PyPI: $(grep -v '^#' "$HERE/requirements.txt" | xargs)) into $PYLIB"
    rm -rf "$PYLIB"
    python3 -m pip install -q --disable-pip-version-check --no-warn-conflicts --no-deps \
        --target "$PYLIB" -r "$HERE/requirements.txt" || return 1
    touch "$PYLIB/.complete"
}

fetch_node() {
    [ -f "$NODELIB/.complete" ] && return 0
    command -v npm >/dev/null || { PACKAGES+=(nodejs npm); ensure_packages; }
    echo "== installing @asyncapi/parser (npm, test/contract/package-lock.json) into $NODELIB"
    rm -rf "$NODELIB"
    mkdir -p "$NODELIB"
    cp "$HERE/package.json" "$HERE/package-lock.json" "$NODELIB/"
    (cd "$NODELIB" && npm ci --silent --no-audit --no-fund --cache "$CACHE/npm-cache") || return 1
    touch "$NODELIB/.complete"
}

if [ "${1:-}" = --fetch ]; then
    locked fetch_python && locked fetch_node
    exit
fi
if [ "${1:-}" = --place ]; then
    locked fetch_python || exit 1
    rm -rf "$2/test/contract/pylib"
    cp -a "$PYLIB" "$2/test/contract/pylib"
    [ "$(id -u)" = 0 ] && chown -R "$RUN_AS" "$2/test/contract/pylib"
    exit 0
fi

locked fetch_python || exit 1
locked fetch_node || exit 1
passed=0 failed=0
# check TITLE COMMAND...: one checker; its "ok"/"not ok" lines are counted,
# and a checker that fails without saying which check is one failure more.
check() {
    local title=$1 log rc
    shift
    echo "== $title"
    rc=0
    log=$("$@" 2>&1) || rc=$?
    echo "$log"
    passed=$((passed + $(grep -c '^ok ' <<<"$log" || true)))
    failed=$((failed + $(grep -c '^not ok ' <<<"$log" || true)))
    if [ "$rc" != 0 ] && ! grep -q '^not ok ' <<<"$log"; then
        echo "not ok - $title: exited with status $rc"
        failed=$((failed + 1))
    fi
}
check "schema/: the JSON Schemas, with jsonschema's draft 2020-12 validator" \
    env TASKEVENTS_PYLIB="$PYLIB" python3 "$HERE/validate.py" --check
check "schema/asyncapi.yaml, parsed by @asyncapi/parser" \
    node "$HERE/asyncapi.mjs" "$NODELIB/node_modules" "$TOP/schema"
echo "$passed passed, $failed failed"
[ "$failed" = 0 ] && [ "$passed" -gt 0 ]
