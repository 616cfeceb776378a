"""What docker/writer/lifecycle.sh's task delivered, from either end:

    python3 lifecycle.py sidecar RECEIVED.jsonl TASK   the fake sidecar's requests
    python3 lifecycle.py kafka RECORDS.jsonl TASK      the Kafka records (test/real)

Each source is flattened into (topic, event, key) triples; then the same
checks: the CloudEvents envelope, the partition key, the events per topic in
order (LIFECYCLE_EVENTS) and the insert's two events sharing the writer's
trace id.  Prints the count or the problems; exits 1 on a problem."""
import json
import os
import re
import sys
import time


def from_sidecar(path, problems):
    """The events of the fake sidecar's requests, bulk or one per request."""
    out = []
    for r in (json.loads(line) for line in open(path)):
        m = re.fullmatch(r"/v1\.0/publish/(bulk/)?pubsub-kafka/([^/]+)", r["path"])
        if r["method"] != "POST" or not m:
            problems.append(f"request {r['method']} {r['path']}")
            continue
        if r["status"] != 204:
            problems.append(f"answered {r['status']}")
        if m.group(1):
            if r["content_type"] != "application/json" or not isinstance(r["body"], list):
                problems.append(f"bulk request {r['content_type']} {json.dumps(r['body'])[:200]}")
                continue
            entries = [(en.get("event"), en.get("metadata", {}).get("partitionKey"), en.get("contentType"))
                       for en in r["body"]]
        else:
            keys = [q.split("=", 1)[1] for q in r["query"].split("&") if q.startswith("metadata.partitionKey=")]
            entries = [(r["body"], keys[0] if keys else None, r["content_type"])]
        for event, key, ctype in entries:
            if ctype != "application/cloudevents+json":
                problems.append(f"Content-Type {ctype}")
            out.append((m.group(2), event, key))
    return out


def from_kafka(path, task, count, problems):
    """The task's records as the CloudEvents SDK read them (waiting up to
    30 s for count of them), each topic's on one partition."""
    for _ in range(300):
        mine = [r for r in (json.loads(line) for line in open(path) if line.strip()) if r.get("key") == task]
        if len(mine) >= count:
            break
        time.sleep(0.1)
    if any(len({r["partition"] for r in mine if r["topic"] == t}) > 1 for t in {r["topic"] for r in mine}):
        problems.append("a topic's events of the task on several partitions")
    out = []
    for r in mine:
        ce = r.get("ce")
        if ce is None:
            problems.append(f"record {r.get('ce_error')}")
            continue
        event = {**ce, **ce.get("extensions", {})}
        try:
            event["data"] = json.loads(ce["data"])
        except (TypeError, ValueError):
            pass
        out.append((r["topic"], event, r["key"]))
    return out


def main(source, path, task):
    want = json.loads(os.environ["LIFECYCLE_EVENTS"])
    problems = []
    if source == "sidecar":
        events = from_sidecar(path, problems)
    else:
        events = from_kafka(path, task, sum(map(len, want.values())), problems)
    got = {}
    for topic, e, key in events:
        if key != task:
            problems.append(f"partition key {key}")
        if not isinstance(e, dict) or e.get("specversion") != "1.0" or e.get("subject") != task \
                or e.get("source") != "pakaura/api" or (e.get("data") or {}).get("task_id") != task:
            problems.append(f"event {json.dumps(e)[:200]}")
            continue
        got.setdefault(topic, []).append(e["type"])
    if got != want:
        problems.append(f"events per topic {got}, want {want}")
    first = {}
    for _, e, _ in events:
        if isinstance(e, dict):
            first.setdefault(e.get("type"), e)
    created, sync = first.get("task.created"), first.get("sync.task")
    if not created or not sync or not created.get("traceid") or created.get("traceid") != sync.get("traceid"):
        problems.append("the insert's two events do not share the writer's trace id")
    print("; ".join(problems) if problems else f"{len(events)} events")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
