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
#   bash test/contract/run.sh --place DIR   put what the suites use into DIR/test/contract
#                                           (DIR: a copy of the tree they run from):
#                                           pylib/ (jsonschema, the CloudEvents SDK for
#                                           Python), node_modules/ (the SDK for
#                                           JavaScript), bin/sdk-go (the SDK for Go)
#
# jsonschema and cloudevents (PyPI, requirements.txt), @asyncapi/parser and
# cloudevents (npm, package-lock.json) and sdk-go/ (Go module proxy, go.sum)
# are installed or built once into
# ${TASKEVENTS_CACHE:-$HOME/.cache/taskevents}/contract, keyed on those files.
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=test/setup.sh
source "$HERE/../setup.sh"

CACHE=${TASKEVENTS_CACHE:-$HOME/.cache/taskevents}/contract
PYLIB=$CACHE/pylib-$(sha256sum "$HERE/requirements.txt" | cut -c1-12)
NODELIB=$CACHE/node-$(cat "$HERE/package.json" "$HERE/package-lock.json" | sha256sum | cut -c1-12)
SDKGO=$CACHE/sdk-go-$(cat "$HERE"/sdk-go/{go.mod,go.sum,main.go} | sha256sum | cut -c1-12)

# Run "$@" holding the cache's lock, so that runs side by side install once.
locked() {
    mkdir -p "$CACHE"
    ( flock 9; "$@" ) 9>"$CACHE/.lock"
}

fetch_python() {
    [ -f "$PYLIB/.complete" ] && return 0
    python3 -m pip --version >/dev/null 2>&1 || { PACKAGES+=(python3-pip); ensure_packages; }
    echo "== installing jsonschema and the CloudEvents SDK for Python (PyPI: $(grep -v '^#' "$HERE/requirements.txt" | xargs)) into $PYLIB"
    rm -rf "$PYLIB"
    python3 -m pip install -q --disable-pip-version-check --no-warn-conflicts --root-user-action=ignore --no-deps \
        --target "$PYLIB" -r "$HERE/requirements.txt" || return 1
    touch "$PYLIB/.complete"
}

fetch_node() {
    [ -f "$NODELIB/.complete" ] && return 0
    command -v npm >/dev/null || { PACKAGES+=(nodejs npm); ensure_packages; }
    echo "== installing @asyncapi/parser and the CloudEvents SDK for JavaScript (npm, test/contract/package-lock.json) into $NODELIB"
    rm -rf "$NODELIB"
    mkdir -p "$NODELIB"
    cp "$HERE/package.json" "$HERE/package-lock.json" "$NODELIB/"
    (cd "$NODELIB" && npm ci --silent --no-audit --no-fund --cache "$CACHE/npm-cache") || return 1
    touch "$NODELIB/.complete"
}

# The CloudEvents SDK for Go's reader (sdk-go/main.go), built as Dapr's own
# build is (test/real/lib.sh): Go from the host, modules from the proxy.
fetch_go() {
    [ -x "$SDKGO/sdk-go" ] && return 0
    command -v go >/dev/null || { echo "go is needed to build test/contract/sdk-go" >&2; return 1; }
    echo "== building test/contract/sdk-go (the CloudEvents SDK for Go) into $SDKGO"
    mkdir -p "$SDKGO"
    (cd "$HERE/sdk-go" && GOPATH="$CACHE/../go" GOMODCACHE="$CACHE/../go/pkg/mod" GOCACHE="$CACHE/../go-build" \
        GOFLAGS=-mod=readonly CGO_ENABLED=0 GOTOOLCHAIN=local go build -o "$SDKGO/sdk-go.tmp" .) || return 1
    mv "$SDKGO/sdk-go.tmp" "$SDKGO/sdk-go"
}

if [ "${1:-}" = --fetch ]; then
    { locked fetch_python && locked fetch_node; } || exit 1
    locked fetch_go || echo "test/contract: no CloudEvents SDK for Go; the real suite's check with it will fail" >&2
    exit 0
fi
if [ "${1:-}" = --place ]; then
    dest=$2/test/contract
    locked fetch_python || exit 1
    rm -rf "${dest:?}/pylib" "${dest:?}/node_modules" "${dest:?}/bin"
    cp -a "$PYLIB" "$dest/pylib"
    [ "$(id -u)" = 0 ] && chown -R "$RUN_AS" "$dest/pylib"
    # the SDKs of JavaScript and Go, for the real suite: hard links where it can
    if locked fetch_node; then
        # (across mounts, as in a version's chroot, hard links fail half way: copy afresh)
        cp -al "$NODELIB/node_modules" "$dest/node_modules" 2>/dev/null ||
            { rm -rf "$dest/node_modules" && cp -a "$NODELIB/node_modules" "$dest/node_modules"; }
    else
        echo "test/contract: no CloudEvents SDK for JavaScript; the real suite's check with it will fail" >&2
    fi
    if locked fetch_go; then
        mkdir -p "$dest/bin"
        cp -a "$SDKGO/sdk-go" "$dest/bin/sdk-go"
    else
        echo "test/contract: no CloudEvents SDK for Go; the real suite's check with it will fail" >&2
    fi
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
