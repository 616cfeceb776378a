#!/usr/bin/env python3
"""Reads every record test/real/kafka/KafkaTool.java wrote (FILE, one JSON line
per Kafka record) with the official CloudEvents SDK for Python (PyPI
cloudevents, its Kafka binding and JSON format, as a consumer would) and
checks that the SDK sees what the record holds: id, source, type, subject,
time, specversion, datacontenttype, the traceid and traceparent extensions,
the data, and the key as the binding's partitionkey.

  sdk_python.py FILE      prints "python cloudevents V: N records read as sent" or the problems
"""
import datetime
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
for p in (os.environ.get("TASKEVENTS_PYLIB"), os.path.join(HERE, "pylib")):
    if p and os.path.isdir(p):
        sys.path.insert(0, p)
import cloudevents
from cloudevents.core.bindings.kafka import KafkaMessage, from_kafka
from cloudevents.core.formats.json import JSONFormat


def instant(s):
    return datetime.datetime.fromisoformat(s.replace("Z", "+00:00"))


def problems(rec):
    raw = json.loads(rec["value"])
    headers = {k: (v or "").encode() for k, v in (rec.get("headers") or {}).items()}
    key = rec["key"].encode() if rec.get("key") is not None else None
    try:
        ev = from_kafka(KafkaMessage(headers=headers, key=key, value=rec["value"].encode()), JSONFormat())
    except Exception as e:                      # the SDK refuses the record
        return [f"the SDK cannot read it: {type(e).__name__}: {e}"]
    seen = {"id": ev.get_id(), "source": ev.get_source(), "type": ev.get_type(), "subject": ev.get_subject(),
            "specversion": ev.get_specversion(), "datacontenttype": ev.get_datacontenttype(),
            "traceid": ev.get_extension("traceid"), "traceparent": ev.get_extension("traceparent")}
    out = [f"{a}: SDK {seen[a]!r}, record {raw.get(a)!r}" for a in seen if seen[a] != raw.get(a)]
    if ev.get_time() != instant(raw["time"]):
        out.append(f"time: SDK {ev.get_time()}, record {raw['time']}")
    if ev.get_data() != raw["data"]:
        out.append("data differs")
    if ev.get_extension("partitionkey") != rec.get("key") or rec.get("key") != raw.get("subject"):
        out.append(f"key {rec.get('key')!r}: SDK partitionkey {ev.get_extension('partitionkey')!r}")
    return out


def main(path):
    n = bad = 0
    with open(path, encoding="utf-8") as f:
        for line in f:
            if not line.endswith("\n"):
                continue
            rec = json.loads(line)
            n += 1
            p = problems(rec)
            if p:
                bad += 1
                if bad <= 10:
                    print(f"record {rec['topic']}/{rec['partition']}/{rec['offset']}: " + "; ".join(p))
    print(f"python cloudevents {cloudevents.__version__}: {n} records, {n - bad} read as sent, {bad} not")
    return 1 if bad or not n else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
