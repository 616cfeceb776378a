#!/usr/bin/env bash
# Self-test for the fake Dapr sidecar (fakedapr.c): what the TAP tests, the
# demo and the benchmarks rely on (daprd's answers for the codes they use,
# the control port's modes and knobs, the record and times files).  Builds
# it, starts it on free loopback ports and checks it with curl; python3 only
# looks inside JSON and sends raw bytes.  Prints "N passed, M failed".
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
    local name=$1 line=""
    shift
    ./fakedapr --port 0 --control-port 0 "$@" >"$TMP/$name.out" 2>"$TMP/$name.err" &
    PID=$!
    PIDS+=("$PID")
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
TOPIC=/v1.0/publish/pubsub-kafka/task-events
BULK=/v1.0/publish/bulk/pubsub-kafka/task-events
# pub PATH [curl args]: prints the status; body in $TMP/body, curl's exit code in $TMP/rc
pub() {
    local path=$1
    shift
    curl -s -o "$TMP/body" -w '%{http_code}' -H 'Expect:' -X POST "$U$path" "$@"
    echo $? >"$TMP/rc"
}
pubt() { pub "$@" -H "dapr-api-token: $TOKEN"; }
ce() { pubt "$TOPIC" -H 'Content-Type: application/cloudevents+json' -d "${1:-{\}}"; }
healthz() { curl -s -o "$TMP/body" -w '%{http_code}' "$U/v1.0/healthz/outbound"; }
ctl() { curl -s -o "$TMP/ctl" -w '%{http_code}' -X POST "$C/mode" --data-binary "$1"; }
getstat() { curl -s "$C/stats" | python3 -c "import json,sys; print(json.load(sys.stdin)['$1'])"; }
# jfield FILE EXPR  (EXPR on variable d, e.g. "d['errorCode']")
jfield() { python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print($2)" "$1" 2>&1; }
code_msg() { jfield "$TMP/body" "d['errorCode']+' '+d['message']"; }

EV='{"specversion":"1.0","id":"e1","source":"pakaura/api","type":"task.created","time":"2026-11-24T10:15:57.114183Z","data":{"title":"buy <milk> & \"eggs\""}}'

# ----------------------------------------------------------------- A: token, record, times
start a --record "$TMP/rec.jsonl" --times "$TMP/times" --token "$TOKEN"

expect "healthz/outbound: 204 without the token" 204 "$(healthz)"
expect "publish: 204" 204 \
    "$(pubt "$TOPIC?metadata.partitionKey=42" -H 'Content-Type: application/cloudevents+json' --data-binary "$EV")"
expect "204 has an empty body" 0 "$(stat -c %s "$TMP/body")"

expect "no token: 401" 401 "$(pub "$TOPIC" -d '{}')"
expect "401 is daprd's text" "invalid api token" "$(cat "$TMP/body")"
expect "a wrong token: 401" 401 "$(pub "$TOPIC" -H 'dapr-api-token: nope' -d '{}')"
expect "another pubsub: 404 ERR_PUBSUB_NOT_FOUND" "404 ERR_PUBSUB_NOT_FOUND pubsub other is not found" \
    "$(pubt /v1.0/publish/other/t -d '{}') $(code_msg)"

# fail mode: count (also changed on its own), match, codes and texts
expect "control: fail" 200 "$(ctl 'mode=fail&count=3')"
expect "control: count alone" 200 "$(ctl 'count=2')"
r1=$(ce); m1=$(code_msg); r2=$(ce); r3=$(ce)
expect "fail count=2: two failures, then ok" "500 500 204" "$r1 $r2 $r3"
expect "fail: daprd's ERR_PUBSUB_PUBLISH_MESSAGE" \
    "ERR_PUBSUB_PUBLISH_MESSAGE error when publishing to topic task-events in pubsub pubsub-kafka: fakedapr: simulated failure" "$m1"
expect "the count spent, the mode is ok again" ok "$(getstat mode)"
ctl 'mode=fail&match=poison' >/dev/null
expect "fail match: only matching bodies" "204 500" "$(ce '{"n":"fine"}') $(ce '{"n":"poison"}')"
ctl 'mode=fail&status=403&code=ERR_PUBSUB_FORBIDDEN' >/dev/null
expect "fail 403 ERR_PUBSUB_FORBIDDEN" "403 ERR_PUBSUB_FORBIDDEN topic task-events is not allowed for app id taskevents-db" \
    "$(ce) $(code_msg)"
for c in "400 ERR_PUBSUB_NOT_FOUND pubsub pubsub-kafka is not found" \
         "404 ERR_TOPIC_NAME_EMPTY topic is empty in pubsub pubsub-kafka" \
         "404 ERR_PUBSUB_EMPTY pubsub name is empty" \
         "500 ERR_PUBSUB_CLOUD_EVENTS_SER cannot create cloudevent" \
         "400 ERR_MALFORMED_REQUEST fakedapr: simulated failure"; do
    read -r s code _ <<<"$c"
    ctl "mode=fail&status=$s&code=$code" >/dev/null
    expect "fail $s $code" "$c" "$(ce) $(code_msg)"
done
ctl 'mode=fail&status=500&error=kafka: Message was too large' >/dev/null
expect "fail error=: the broker's error in daprd's message" \
    "ERR_PUBSUB_PUBLISH_MESSAGE error when publishing to topic task-events in pubsub pubsub-kafka: kafka: Message was too large" \
    "$(ce >/dev/null; code_msg)"
ctl 'mode=fail&message=%C3%A9t%C3%A9' >/dev/null
expect "fail message=: %-decoded, instead of daprd's" "ERR_PUBSUB_PUBLISH_MESSAGE été" "$(ce >/dev/null; code_msg)"
ctl 'mode=fail&status=503&code=' >/dev/null
expect "fail code= (empty): no body" "503 0" "$(ce) $(stat -c %s "$TMP/body")"
expect "control: an unknown mode is refused" 400 "$(ctl 'mode=broken')"
expect "control: an unknown key is refused" 400 "$(ctl 'mode=fail&stauts=500')"
expect "control: a bad status is refused" 400 "$(ctl 'status=99')"
expect "control: a refused change changes nothing" fail "$(getstat mode)"

# no answers: hang, reset, garbage, slow, down
ctl 'mode=hang&count=1' >/dev/null
curl -s -o /dev/null -m 1 -X POST -H "dapr-api-token: $TOKEN" "$U$TOPIC" -d '{}'
expect "hang: no answer (curl -m 1 times out)" 28 "$?"
expect "hang: healthz still answers" 204 "$(healthz)"
expect "hang count=1, then ok" 204 "$(ce)"
ctl 'mode=reset&count=1' >/dev/null
ce >/dev/null
rc=$(cat "$TMP/rc")
if [ "$rc" == 56 ] || [ "$rc" == 52 ]; then ok "reset: connection reset ($rc)"; else bad "reset" "curl rc $rc"; fi
expect "reset count=1, then ok" 204 "$(ce)"
ctl 'mode=garbage' >/dev/null
expect "garbage: 500 with an HTML body" "500 <html>oops</html>" "$(pub "$TOPIC" -d '{}') $(cat "$TMP/body")"
ctl 'mode=garbage&status=403&message=%FFnot%20UTF-8' >/dev/null
expect "garbage status= message=: that status, those bytes" "403 ff6e6f74" "$(ce) $(head -c4 "$TMP/body" | od -An -tx1 | tr -d ' \n')"
ctl 'mode=garbage&raw=1' >/dev/null
ce >/dev/null
rc=$(cat "$TMP/rc")
if [ "$rc" != 0 ]; then ok "garbage raw=1: not HTTP (curl rc $rc)"; else bad "garbage raw=1" "curl succeeded"; fi
ctl 'mode=slow&ms=400' >/dev/null
t=$(curl -s -o /dev/null -w '%{http_code} %{time_total}' -X POST -H "dapr-api-token: $TOKEN" "$U$TOPIC" -d '{}')
if [ "${t%% *}" == 204 ] && python3 -c "import sys; sys.exit(0 if float('${t#* }') >= 0.35 else 1)"; then
    ok "slow: 204 after the delay"
else bad "slow" "$t"; fi
ctl 'mode=down' >/dev/null
ce >/dev/null
expect "down: connection refused" 7 "$(cat "$TMP/rc")"
healthz >/dev/null
expect "down: healthz refused too" 7 "$?"
expect "down: the control port still answers" down "$(getstat mode)"
expect "mode=ok reopens the port" "200 204" "$(ctl 'mode=ok') $(ce)"

ctl 'healthz=500' >/dev/null
expect "healthz=500: daprd's not ready" "500 ERR_OUTBOUND_HEALTH_NOT_READY" "$(healthz) $(jfield "$TMP/body" "d['errorCode']")"
expect "healthz= stays across modes" 500 "$(ctl 'mode=hang' >/dev/null; healthz)"
ctl 'mode=ok&healthz=204' >/dev/null
expect "healthz back to 204" 204 "$(healthz)"

# daprd's 4 MiB body limit
python3 -c "import sys; sys.stdout.write('[' + ' ' * 4194302 + ']')" >"$TMP/max"
python3 -c "import sys; sys.stdout.write('[' + ' ' * 4194303 + ']')" >"$TMP/over"
expect "exactly 4 MiB: 204" 204 "$(pubt "$TOPIC" --data-binary @"$TMP/max")"
expect "over 4 MiB: daprd's stream too large" \
    "500 ERR_PUBSUB_PUBLISH_MESSAGE error when publishing to topic task-events in pubsub pubsub-kafka: stream too large" \
    "$(pubt "$TOPIC" --data-binary @"$TMP/over") $(code_msg)"
expect "bulk over 4 MiB: 400 stream too large" \
    "400 ERR_PUBSUB_EVENTS_SER error when unmarshaling the request for topic task-events pubsub pubsub-kafka: stream too large" \
    "$(pubt "$BULK" --data-binary @"$TMP/over") $(code_msg)"
expect "over 4 MiB without the token: 401 first" 401 "$(pub "$TOPIC" --data-binary @"$TMP/over")"
expect "a body that is not JSON: 204" 204 "$(ce 'not JSON')"

# bulk publish
ENTRIES='[{"entryId":"a","event":{"n":1,"time":"2026-01-01T00:00:00Z"},"contentType":"application/cloudevents+json","metadata":{"partitionKey":"k1"}},
          {"entryId":"b","event":{"n":"poison"},"contentType":"application/cloudevents+json"},
          {"entryId":"c","event":{"n":3},"contentType":"application/cloudevents+json"}]'
curl -s -o /dev/null -X POST "$C/reset-stats"
expect "reset-stats" "0 0" "$(getstat requests) $(getstat events)"
expect "bulk: 204" 204 "$(pubt "$BULK" -H 'Content-Type: application/json' --data-binary "$ENTRIES")"
expect "bulk: one request, three events" "1 3" "$(getstat requests) $(getstat events)"
ctl 'mode=fail&match=poison&error=broker down' >/dev/null
expect "bulk fail match=: 500 failedEntries with the targeted entry" \
    "500 ERR_PUBSUB_PUBLISH_MESSAGE [('b', 'broker down')]" \
    "$(pubt "$BULK" -H 'Content-Type: application/json' --data-binary "$ENTRIES") \
$(jfield "$TMP/body" "d['errorCode']+' '+str([(e['entryId'], e['error']) for e in d['failedEntries']])")"
expect "bulk fail: the others counted as published" 5 "$(getstat events)"
ctl 'mode=fail&status=403&code=ERR_PUBSUB_FORBIDDEN' >/dev/null
expect "bulk 403: about the whole request" "403 ERR_PUBSUB_FORBIDDEN False" \
    "$(pubt "$BULK" --data-binary "$ENTRIES") $(jfield "$TMP/body" "d['errorCode']+' '+str('failedEntries' in d)")"
ctl 'mode=fail&match=nothing-matches' >/dev/null
expect "bulk fail, nothing targeted: 204" 204 "$(pubt "$BULK" --data-binary "$ENTRIES")"
ctl 'mode=ok' >/dev/null
expect "bulk not a JSON array: 400 ERR_PUBSUB_EVENTS_SER" "400 ERR_PUBSUB_EVENTS_SER" \
    "$(pubt "$BULK" -d '{"entryId":"1"}') $(jfield "$TMP/body" "d['errorCode']")"

# connections: kept alive, pipelined, bad requests, noise
curl -s -o /dev/null -X POST "$C/reset-stats"
curl -s -o /dev/null -o /dev/null -X POST -H "dapr-api-token: $TOKEN" -d '{"k":1}' "$U$TOPIC" "$U$TOPIC"
expect "keep-alive: 2 requests on 1 connection" "2 1" "$(getstat requests) $(getstat connections)"
cat >"$TMP/raw.py" <<'EOF'
import os, random, socket, sys
port, token, what = int(sys.argv[1]), sys.argv[2], sys.argv[3]
def xfer(data, want=1):
    s = socket.create_connection(("127.0.0.1", port), timeout=2)
    s.sendall(data)
    s.shutdown(socket.SHUT_WR)
    out = b""
    try:
        while out.count(b"HTTP/1.1 ") < want and (b := s.recv(65536)):
            out += b
    except OSError:
        pass
    s.close()
    return out
req = ("POST /v1.0/publish/pubsub-kafka/t HTTP/1.1\r\nHost: x\r\ndapr-api-token: %s\r\n"
       "Content-Length: 2\r\n\r\n{}" % token).encode()
if what == "pipeline":
    print(xfer(req * 3, 3).count(b"HTTP/1.1 204 No Content"))
elif what == "malformed":
    print(xfer(b"GARBAGE\r\n\r\n").split(b"\r\n")[0].decode())
elif what == "chunked":
    print(xfer(b"POST /v1.0/publish/pubsub-kafka/t HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n").split(b"\r\n")[0].decode())
else:
    rnd = random.Random(1234)
    for i in range(300):
        d = bytearray(req)
        for _ in range(rnd.randint(1, 6)):
            p = rnd.randrange(len(d) or 1)
            d[p:p + rnd.randint(0, 5)] = os.urandom(rnd.randint(0, 5))
        xfer(bytes(d) or b"x")
    print("done")
EOF
expect "pipelined requests all answered" 3 "$(python3 "$TMP/raw.py" "$PORT" "$TOKEN" pipeline)"
expect "a malformed request: 400" "HTTP/1.1 400 Bad Request" "$(python3 "$TMP/raw.py" "$PORT" "$TOKEN" malformed)"
expect "a chunked body: 400" "HTTP/1.1 400 Bad Request" "$(python3 "$TMP/raw.py" "$PORT" "$TOKEN" chunked)"
python3 "$TMP/raw.py" "$PORT" "$TOKEN" fuzz >/dev/null
if kill -0 "$PID" 2>/dev/null; then ok "mangled requests did not crash it"; else bad "mangled requests crashed it"; fi
expect "still publishing after them" 204 "$(ce)"

# the record file (what TaskEventsTest.pm and test/demo.sh read)
python3 - "$TMP/rec.jsonl" "$EV" "$TOKEN" >"$TMP/reccheck" 2>&1 <<'EOF'
import json, sys
path, ev, token = sys.argv[1:4]
recs = [json.loads(l) for l in open(path, encoding="utf-8")]
assert [r["n"] for r in recs] == list(range(1, len(recs) + 1)), "n counts"
for r in recs:
    for k in ("t", "method", "path", "query", "content_type", "token", "status", "body"):
        assert k in r, (k, r)
first = recs[0]
assert first["body"] == json.loads(ev), first["body"]
assert (first["method"], first["path"], first["query"], first["content_type"], first["token"], first["status"]) == \
    ("POST", "/v1.0/publish/pubsub-kafka/task-events", "metadata.partitionKey=42",
     "application/cloudevents+json", token, 204), first
assert any(r["status"] == 401 and r["token"] is None for r in recs), "401 without a token"
assert any(r["status"] == 0 and r.get("action") == "hang" for r in recs), "hang"
assert any(r["status"] == 0 and r.get("action") == "reset" for r in recs), "reset"
assert any(r["status"] == 0 and r.get("action") == "raw" for r in recs), "raw"
assert any(r["status"] == 500 and r["response"]["errorCode"] == "ERR_PUBSUB_PUBLISH_MESSAGE" for r in recs), "response"
part = [r for r in recs if "bulk" in r["path"] and r.get("response", {}).get("failedEntries")]
assert part and [e["entryId"] for e in part[0]["body"]] == ["a", "b", "c"], "bulk body embedded"
assert [e["entryId"] for e in part[0]["response"]["failedEntries"]] == ["b"], "bulk response"
assert any(r["body"] == {"n": "fine"} for r in recs), "bodies embedded"
assert any(r["body"] == "not JSON" for r in recs), "other bodies as strings"
assert all(r["path"] != "/v1.0/healthz/outbound" for r in recs), "healthz not recorded"
print("ok", len(recs))
EOF
if grep -q '^ok' "$TMP/reccheck"; then ok "record file: a JSON line per request, exact bodies ($(cat "$TMP/reccheck"))"
else bad "record file" "$(tail -3 "$TMP/reccheck")"; fi

kill -TERM "$PID"
wait "$PID"
expect "SIGTERM: exit status 0" 0 "$?"
# the times file: one line per CloudEvent a 2xx answer took, written by the exit
expect "times file: receive time and the event's time" \
    "2026-01-01T00:00:00Z 2026-11-24T10:15:57.114183Z" \
    "$(python3 -c "
import sys, time
rows = [l.split() for l in open(sys.argv[1])]
assert all(abs(float(r) - time.time()) < 600 for r, _ in rows)
print(' '.join(sorted(set(t for _, t in rows))))" "$TMP/times" 2>&1)"

# ----------------------------------------------------------------- B: no token, --pubsub, --max-body
start b --pubsub mybus --max-body 1000
expect "no token configured: none needed" 204 "$(pub /v1.0/publish/mybus/orders -d '{}')"
expect "--pubsub: the default name is unknown" 404 "$(pub "$TOPIC" -d '{}')"
expect "--max-body 1000: 1000 bytes pass" 204 "$(pub /v1.0/publish/mybus/orders -d "$(printf 'y%.0s' $(seq 1000))")"
expect "--max-body 1000: 1001 bytes refused" 500 "$(pub /v1.0/publish/mybus/orders -d "$(printf 'y%.0s' $(seq 1001))")"
kill -INT "$PID"
wait "$PID"
expect "SIGINT: exit status 0" 0 "$?"

# ----------------------------------------------------------------- C: --bind ::1
if python3 -c "import socket; s = socket.socket(socket.AF_INET6); s.bind(('::1', 0))" 2>/dev/null; then
    start c --bind ::1
    expect "--bind ::1: publishes over IPv6" 204 \
        "$(curl -s -o /dev/null -w '%{http_code}' -X POST "http://[::1]:$PORT$TOPIC" -d '{}')"
else
    ok "--bind ::1: skipped, no IPv6 loopback here"
fi

echo "$PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
