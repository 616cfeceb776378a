#!/usr/bin/env bash
# Self-test for the fake Dapr sidecar (fakedapr.c).
# Builds it, starts it on free loopback ports and checks it with curl; python3
# is used only to look inside JSON and to send raw (malformed) bytes.
# Prints "N passed, M failed" and exits non-zero when anything failed.
set -u
cd "$(dirname "$0")" || exit 2
make -s fakedapr || { echo "build failed"; exit 1; }

TMP=$(mktemp -d)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
    wait 2>/dev/null
    rm -rf "$TMP"
}
trap cleanup EXIT

PASSED=0
FAILED=0
ok() { PASSED=$((PASSED + 1)); echo "ok   - $1"; }
bad() { FAILED=$((FAILED + 1)); echo "FAIL - $1${2:+ ($2)}"; }
# expect DESC WANT GOT
expect() { if [ "$2" == "$3" ]; then ok "$1"; else bad "$1" "want '$2', got '$3'"; fi; }

# start NAME ARGS... : sets PORT CTL PID U C
start() {
    local name=$1
    shift
    ./fakedapr --port 0 --control-port 0 "$@" >"$TMP/$name.out" 2>"$TMP/$name.err" &
    PID=$!
    PIDS+=("$PID")
    local line=""
    for _ in $(seq 100); do
        line=$(head -n1 "$TMP/$name.out" 2>/dev/null)
        [ -n "$line" ] && break
        sleep 0.05
    done
    if [[ ! $line =~ ^port=([0-9]+)\ control=([0-9]+)$ ]]; then
        echo "fakedapr did not start: '$line'"; cat "$TMP/$name.err"; exit 1
    fi
    PORT=${BASH_REMATCH[1]}
    CTL=${BASH_REMATCH[2]}
    U=http://127.0.0.1:$PORT
    C=http://127.0.0.1:$CTL
}

TOKEN=s3cret
TOPIC_URL=/v1.0/publish/pubsub-kafka/task-events
# pub PATH [curl args] -> prints status, body in $TMP/body; curl exit code in $TMP/rc
pub() {
    local path=$1
    shift
    curl -s -o "$TMP/body" -w '%{http_code}' -X POST "$U$path" "$@"
    echo $? >"$TMP/rc"
}
pubt() { pub "$@" -H "dapr-api-token: $TOKEN"; }
ctl() { curl -s -o "$TMP/ctl" -w '%{http_code}' -X POST "$C/mode" --data-binary "$1"; }
getstat() { curl -s "$C/stats" | python3 -c "import json,sys; print(json.load(sys.stdin)['$1'])"; }
# jfield FILE EXPR  (EXPR on variable d, e.g. "d['errorCode']")
jfield() { python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print($2)" "$1" 2>&1; }

CE='{"specversion":"1.0","id":"e1","source":"taskevents","type":"task.created","data":{"id":42,"title":"buy <milk> & \"eggs\""}}'

# ----------------------------------------------------------------- instance A (token)
start a --record "$TMP/rec.jsonl" --token "$TOKEN"

expect "healthz/outbound answers 204 without a token (exempt)" 204 \
    "$(curl -s -o /dev/null -w '%{http_code}' "$U/v1.0/healthz/outbound")"
expect "healthz answers 204" 204 "$(curl -s -o /dev/null -w '%{http_code}' "$U/v1.0/healthz")"

expect "publish answers 204" 204 \
    "$(pubt "$TOPIC_URL?metadata.partitionKey=42" -H 'Content-Type: application/cloudevents+json' --data-binary "$CE")"
expect "204 has an empty body" 0 "$(stat -c %s "$TMP/body")"

expect "publish without token gets 401" 401 "$(pub "$TOPIC_URL" -H 'Content-Type: application/json' -d '{}')"
expect "401 body is daprd's text" "invalid api token" "$(cat "$TMP/body")"
expect "publish with a wrong token gets 401" 401 \
    "$(pub "$TOPIC_URL" -H 'dapr-api-token: nope' -H 'Content-Type: application/json' -d '{}')"

expect "wrong pubsub gets 404" 404 \
    "$(pubt /v1.0/publish/other/task-events -H 'Content-Type: application/json' -d '{}')"
expect "wrong pubsub errorCode" ERR_PUBSUB_NOT_FOUND "$(jfield "$TMP/body" "d['errorCode']")"
expect "wrong pubsub message" "pubsub other is not found" "$(jfield "$TMP/body" "d['message']")"

expect "unknown path gets 404" 404 "$(pubt /v1.0/nothing -d x)"
expect "unknown path errorCode (fallback handler)" ERR_DIRECT_INVOKE "$(jfield "$TMP/body" "d['errorCode']")"
expect "empty topic gets 404 like daprd" 404 "$(pubt /v1.0/publish/pubsub-kafka/ -d x)"
expect "GET on a publish route gets 404" 404 \
    "$(curl -s -o /dev/null -w '%{http_code}' -H "dapr-api-token: $TOKEN" "$U$TOPIC_URL")"

expect "bad cloudevent gets 500" 500 \
    "$(pubt "$TOPIC_URL" -H 'Content-Type: application/cloudevents+json' -d '{"id":')"
expect "bad cloudevent errorCode" ERR_PUBSUB_CLOUD_EVENTS_SER "$(jfield "$TMP/body" "d['errorCode']")"
expect "bad rawPayload gets 400" 400 \
    "$(pubt "$TOPIC_URL?metadata.rawPayload=maybe" -H 'Content-Type: application/json' -d '{}')"
expect "bad rawPayload errorCode" ERR_PUBSUB_REQUEST_METADATA "$(jfield "$TMP/body" "d['errorCode']")"

printf '{"a":"\xff"}' >"$TMP/latin1"
expect "non-UTF-8 body is accepted" 204 \
    "$(pubt "$TOPIC_URL" -H 'Content-Type: text/plain' --data-binary @"$TMP/latin1")"

# fail mode with count
expect "control: fail count=2" 200 "$(ctl 'mode=fail&status=500&code=ERR_PUBSUB_PUBLISH_MESSAGE&count=3')"
expect "control: count can be changed without mode" 200 "$(ctl 'count=2')"
r1=$(pubt "$TOPIC_URL" -H 'Content-Type: application/json' -d '{"n":1}')
c1=$(jfield "$TMP/body" "d['errorCode']")
r2=$(pubt "$TOPIC_URL" -H 'Content-Type: application/json' -d '{"n":2}')
m2=$(jfield "$TMP/body" "d['message']")
r3=$(pubt "$TOPIC_URL" -H 'Content-Type: application/json' -d '{"n":3}')
expect "fail count=2: statuses" "500 500 204" "$r1 $r2 $r3"
expect "fail errorCode" ERR_PUBSUB_PUBLISH_MESSAGE "$c1"
expect "fail message is daprd's" \
    "error when publishing to topic task-events in pubsub pubsub-kafka: fakedapr: simulated failure" "$m2"
expect "mode is back to ok" ok "$(getstat mode)"

ctl 'mode=fail&match=poison' >/dev/null
r1=$(pubt "$TOPIC_URL" -H 'Content-Type: application/json' -d '{"n":"fine"}')
r2=$(pubt "$TOPIC_URL" -H 'Content-Type: application/json' -d '{"n":"poison"}')
expect "fail match: only matching bodies fail" "204 500" "$r1 $r2"
ctl 'mode=fail&code=ERR_PUBSUB_FORBIDDEN' >/dev/null
expect "fail code=ERR_PUBSUB_FORBIDDEN defaults to 403" 403 \
    "$(pubt "$TOPIC_URL" -H 'Content-Type: application/json' -d '{}')"
expect "forbidden message" "topic task-events is not allowed for app id taskevents" \
    "$(jfield "$TMP/body" "d['message']")"
ctl 'mode=fail&status=404&code=ERR_TOPIC_NAME_EMPTY' >/dev/null
pubt "$TOPIC_URL" -H 'Content-Type: application/json' -d '{}' >/dev/null
expect "fail code=ERR_TOPIC_NAME_EMPTY" "ERR_TOPIC_NAME_EMPTY topic is empty in pubsub pubsub-kafka" \
    "$(jfield "$TMP/body" "d['errorCode']+' '+d['message']")"
expect "control: unknown mode is refused" 400 "$(ctl 'mode=broken')"
expect "control: unknown key is refused" 400 "$(ctl 'mode=fail&stauts=500')"

# hang
ctl 'mode=hang&count=1' >/dev/null
code=$(curl -s -o /dev/null -m 1 -w '%{http_code}' -X POST "$U$TOPIC_URL" \
    -H "dapr-api-token: $TOKEN" -H 'Content-Type: application/json' -d '{}')
rc=$?
expect "hang: curl -m 1 times out" "28" "$rc"
expect "hang count=1 then ok" 204 "$(pubt "$TOPIC_URL" -H 'Content-Type: application/json' -d '{}')"

# reset
ctl 'mode=reset&count=1' >/dev/null
pubt "$TOPIC_URL" -H 'Content-Type: application/json' -d '{}' >/dev/null
rc=$(cat "$TMP/rc")
if [ "$rc" == 56 ] || [ "$rc" == 52 ]; then ok "reset: connection reset ($rc)"; else bad "reset" "curl rc $rc"; fi
expect "reset count=1 then ok" 204 "$(pubt "$TOPIC_URL" -H 'Content-Type: application/json' -d '{}')"

# garbage
ctl 'mode=garbage' >/dev/null
expect "garbage: 500" 500 "$(pubt "$TOPIC_URL" -H 'Content-Type: application/json' -d '{}')"
expect "garbage: non-JSON body" "<html>oops</html>" "$(cat "$TMP/body")"
ctl 'mode=garbage&raw=1' >/dev/null
pubt "$TOPIC_URL" -H 'Content-Type: application/json' -d '{}' >/dev/null
rc=$(cat "$TMP/rc")
if [ "$rc" != 0 ]; then ok "garbage raw=1: not HTTP (curl rc $rc)"; else bad "garbage raw=1" "curl succeeded"; fi

# slow (only a lower bound: the answer must wait)
ctl 'mode=slow&ms=400' >/dev/null
t=$(curl -s -o /dev/null -w '%{http_code} %{time_total}' -X POST "$U$TOPIC_URL" \
    -H "dapr-api-token: $TOKEN" -H 'Content-Type: application/json' -d '{}')
if [ "${t%% *}" == 204 ] && python3 -c "import sys; sys.exit(0 if float('${t#* }') >= 0.35 else 1)"; then
    ok "slow: 204 after the delay"
else bad "slow" "$t"; fi

# down / up
ctl 'mode=down' >/dev/null
pubt "$TOPIC_URL" -H 'Content-Type: application/json' -d '{}' >/dev/null
expect "down: connection refused" 7 "$(cat "$TMP/rc")"
curl -s -o /dev/null "$U/v1.0/healthz/outbound"
expect "down: healthz refused too" 7 "$?"
expect "down: control port still answers" down "$(getstat mode)"
expect "control: mode=ok reopens" 200 "$(ctl 'mode=ok')"
expect "up again on the same port" 204 "$(pubt "$TOPIC_URL" -H 'Content-Type: application/json' -d '{}')"

# healthz setting
ctl 'healthz=503' >/dev/null
expect "healthz=503" 503 "$(curl -s -o "$TMP/body" -w '%{http_code}' "$U/v1.0/healthz/outbound")"
expect "healthz not ready errorCode" ERR_OUTBOUND_HEALTH_NOT_READY "$(jfield "$TMP/body" "d['errorCode']")"
ctl 'healthz=204' >/dev/null
expect "healthz back to 204" 204 "$(curl -s -o /dev/null -w '%{http_code}' "$U/v1.0/healthz/outbound")"

# body size limit (4 MiB default), with and without Expect: 100-continue
python3 -c "import sys; sys.stdout.write('x'*4194304)" >"$TMP/max"
python3 -c "import sys; sys.stdout.write('x'*4194305)" >"$TMP/over"
expect "body of exactly 4 MiB: 204" 204 \
    "$(pubt "$TOPIC_URL" -H 'Content-Type: text/plain' --data-binary @"$TMP/max")"
expect "body over 4 MiB: 500" 500 \
    "$(pubt "$TOPIC_URL" -H 'Content-Type: text/plain' --data-binary @"$TMP/over")"
expect "body over 4 MiB: daprd's error" \
    "ERR_PUBSUB_PUBLISH_MESSAGE error when publishing to topic task-events in pubsub pubsub-kafka: stream too large" \
    "$(jfield "$TMP/body" "d['errorCode']+' '+d['message']")"
expect "body over 4 MiB without Expect: 500" 500 \
    "$(pubt "$TOPIC_URL" -H 'Expect:' -H 'Content-Type: text/plain' --data-binary @"$TMP/over")"
expect "bulk body over 4 MiB: 400 stream too large" "400 ERR_PUBSUB_EVENTS_SER" \
    "$(pubt /v1.0/publish/bulk/pubsub-kafka/task-events -H 'Content-Type: application/json' \
        --data-binary @"$TMP/over") $(jfield "$TMP/body" "d['errorCode']")"
expect "big body to a wrong pubsub: 404 first" 404 \
    "$(pubt /v1.0/publish/nope/t -H 'Content-Type: text/plain' --data-binary @"$TMP/over")"

# bulk
BULK='[{"entryId":"a","event":{"n":1},"contentType":"application/json"},
       {"entryId":"b","event":{"n":"poison"},"contentType":"application/json"},
       {"entryId":"c","event":"hello","contentType":"text/plain"}]'
curl -s -o /dev/null -X POST "$C/reset-stats"
expect "bulk publish: 204" 204 \
    "$(pubt /v1.0/publish/bulk/pubsub-kafka/task-events -H 'Content-Type: application/json' --data-binary "$BULK")"
expect "bulk publish counts events" "1 3" "$(getstat published) $(getstat events)"
ctl 'mode=fail&match=poison' >/dev/null
expect "bulk fail with match: 500" 500 \
    "$(pubt /v1.0/publish/bulk/pubsub-kafka/task-events -H 'Content-Type: application/json' --data-binary "$BULK")"
expect "bulk failedEntries lists the failed entry" "ERR_PUBSUB_PUBLISH_MESSAGE ['b']" \
    "$(jfield "$TMP/body" "d['errorCode']+' '+str([e['entryId'] for e in d['failedEntries']])")"
ctl 'mode=ok' >/dev/null
expect "bulk duplicate entryId: 400" "400 ERR_PUBSUB_EVENTS_SER" \
    "$(pubt /v1.0/publish/bulk/pubsub-kafka/t -H 'Content-Type: application/json' \
        -d '[{"entryId":"1","event":1,"contentType":"application/json"},{"entryId":"1","event":2,"contentType":"application/json"}]') $(jfield "$TMP/body" "d['errorCode']")"
expect "bulk event/contentType mismatch: 400" 400 \
    "$(pubt /v1.0/publish/bulk/pubsub-kafka/t -H 'Content-Type: application/json' \
        -d '[{"entryId":"1","event":{"a":1},"contentType":"text/plain"}]')"
expect "bulk not an array: 400" 400 "$(pubt /v1.0/publish/bulk/pubsub-kafka/t -d '{"entryId":"1"}')"
expect "v1.0-alpha1 bulk route: 204" 204 \
    "$(pubt /v1.0-alpha1/publish/bulk/pubsub-kafka/t -H 'Content-Type: application/json' --data-binary "$BULK")"

# keep-alive: two URLs in one curl invocation reuse one connection
curl -s -o /dev/null -X POST "$C/reset-stats"
curl -s -o /dev/null -o /dev/null -X POST -H "dapr-api-token: $TOKEN" -H 'Content-Type: application/json' \
    -d '{"k":1}' "$U$TOPIC_URL" "$U$TOPIC_URL"
expect "keep-alive: 2 requests on 1 connection" "2 1" "$(getstat requests) $(getstat connections_total)"

# raw socket checks: pipelining, malformed input, fuzz
cat >"$TMP/raw.py" <<'EOF'
import os, random, socket, sys
port, token = int(sys.argv[1]), sys.argv[2]
def xfer(data, timeout=2.0, half_close=False):
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s.sendall(data)
    if half_close:
        s.shutdown(socket.SHUT_WR)
    out = b""
    try:
        while True:
            b = s.recv(65536)
            if not b:
                break
            out += b
            if data.startswith(b"POST") and out.count(b"HTTP/1.1 204") >= 2:
                break
    except socket.timeout:
        out += b"<timeout>"
    s.close()
    return out
req = ("POST /v1.0/publish/pubsub-kafka/t HTTP/1.1\r\nHost: x\r\ndapr-api-token: %s\r\n"
       "Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{}" % token).encode()
what = sys.argv[3]
if what == "pipeline":
    print(xfer(req + req).count(b"HTTP/1.1 204 No Content"))
elif what == "malformed":
    r = xfer(b"GARBAGE\r\n\r\n")
    print(r.split(b"\r\n")[0].decode(errors="replace"))
elif what == "badlen":
    r = xfer(b"POST /v1.0/publish/pubsub-kafka/t HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n")
    print(r.split(b"\r\n")[0].decode(errors="replace"))
elif what == "chunked":
    r = xfer(b"POST /v1.0/publish/pubsub-kafka/t HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n")
    print(r.split(b"\r\n")[0].decode(errors="replace").split(":")[0])
elif what == "fuzz":
    rnd = random.Random(1234)
    seeds = [req, b"GET /v1.0/healthz/outbound HTTP/1.1\r\nHost: x\r\n\r\n",
             b"POST /v1.0/publish/bulk/pubsub-kafka/t HTTP/1.1\r\nHost: x\r\ndapr-api-token: " +
             token.encode() + b"\r\nContent-Length: 40\r\n\r\n[{\"entryId\":\"1\",\"event\":{\"a\":[1,2,{}]}}]"]
    for i in range(400):
        d = bytearray(rnd.choice(seeds))
        for _ in range(rnd.randint(1, 8)):
            op = rnd.randint(0, 3)
            p = rnd.randrange(len(d))
            if op == 0: d[p] = rnd.randrange(256)
            elif op == 1: del d[p:p + rnd.randint(1, 10)]
            elif op == 2: d[p:p] = os.urandom(rnd.randint(1, 10))
            else: d[p:p] = d[:rnd.randint(0, 30)]
            if not d: d = bytearray(b"x")
        try:
            xfer(bytes(d), timeout=2.0, half_close=True)
        except OSError:
            pass
    for i in range(50):
        try:
            xfer(os.urandom(rnd.randint(1, 20000)), timeout=2.0, half_close=True)
        except OSError:
            pass
    print("done")
EOF
expect "pipelined requests both answered" 2 "$(python3 "$TMP/raw.py" "$PORT" "$TOKEN" pipeline)"
expect "malformed request line: 400" "HTTP/1.1 400 Bad Request" "$(python3 "$TMP/raw.py" "$PORT" "$TOKEN" malformed)"
expect "bad Content-Length: 400" "HTTP/1.1 400 Bad Request" "$(python3 "$TMP/raw.py" "$PORT" "$TOKEN" badlen)"
expect "chunked request body: 411" "HTTP/1.1 411 Length Required" "$(python3 "$TMP/raw.py" "$PORT" "$TOKEN" chunked)"
python3 "$TMP/raw.py" "$PORT" "$TOKEN" fuzz >/dev/null
if kill -0 "$PID" 2>/dev/null; then ok "fuzzing did not crash it"; else bad "fuzzing crashed it"; fi
expect "still publishing after the fuzz" 204 "$(pubt "$TOPIC_URL" -H 'Content-Type: application/json' -d '{}')"

# the record file
python3 - "$TMP/rec.jsonl" "$CE" "$TOKEN" >"$TMP/reccheck" 2>&1 <<'EOF'
import json, sys
path, ce, token = sys.argv[1], sys.argv[2], sys.argv[3]
lines = open(path, encoding="utf-8").read().splitlines()
recs = [json.loads(l) for l in lines]                 # every line is valid JSON
assert [r["n"] for r in recs] == list(range(1, len(recs) + 1)), "sequence"
for r in recs:
    for k in ("n", "t", "method", "path", "query", "content_type", "token", "status", "body"):
        assert k in r, (k, r)
first = recs[0]
assert first["body"] == json.loads(ce), first["body"]           # exact body, embedded as JSON
assert first["query"] == "metadata.partitionKey=42", first["query"]
assert first["token"] == token and first["status"] == 204
assert first["path"] == "/v1.0/publish/pubsub-kafka/task-events"
assert first["content_type"] == "application/cloudevents+json"
nojson = [r for r in recs if r["body"] == '{"id":']
assert nojson and nojson[0]["status"] == 500, "non-JSON body kept as a string"
assert any(r["status"] == 401 and r["token"] is None for r in recs)
assert any(r.get("action") == "hang" for r in recs)
big = [r for r in recs if isinstance(r["body"], str) and len(r["body"]) == 4194304]
assert big and big[0]["status"] == 204, "4 MiB body recorded"
b64 = [r for r in recs if r.get("body_base64")]
assert b64 and b64[0]["body"] is None and b64[0]["body_base64"] == "eyJhIjoi/yJ9", b64[:1]
print("ok", len(recs))
EOF
if grep -q '^ok' "$TMP/reccheck"; then ok "record file: valid JSON lines with exact bodies ($(cat "$TMP/reccheck"))"
else bad "record file" "$(tail -3 "$TMP/reccheck")"; fi

# SIGTERM exits 0
kill -TERM "$PID"
wait "$PID"
expect "SIGTERM: exit status 0" 0 "$?"

# ----------------------------------------------------------------- instance B (no token, other pubsub, --print)
start b --pubsub mybus --print --max-body 1000
expect "no token configured: publish needs none" 204 \
    "$(pub /v1.0/publish/mybus/orders -H 'Content-Type: application/json' -d '{"o":1}')"
expect "--pubsub: the default name is now unknown" 404 \
    "$(pub "$TOPIC_URL" -H 'Content-Type: application/json' -d '{}')"
expect "--max-body 1000: 1001 bytes refused" 500 \
    "$(pub /v1.0/publish/mybus/orders -H 'Content-Type: text/plain' --data-binary "$(printf 'y%.0s' $(seq 1001))")"
expect "--print writes topic<TAB>body" "$(printf 'orders\t{"o":1}')" "$(sed -n 2p "$TMP/b.out")"
kill -INT "$PID"
wait "$PID"
expect "SIGINT: exit status 0" 0 "$?"

echo "$PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
