# Commit-to-consumer latency from the Kafka consumer's records
# (test/real/kafka/KafkaTool.java consume): for every record from line SKIP
# on, the consumer's receive time ("received_us") minus the CloudEvent's
# "time" (the capture time, inside the writing transaction), and that split
# in two stages at the record's timestamp (set by the producer when it
# batched the record): capture -> Kafka (the commit, the pipeline's round,
# daprd) and Kafka -> consumer (acks from the replicas, the fetch).
#   python3 kafka_latency.py RECORDS SKIP [COMMITS]
# With COMMITS, a file of "row-id<TAB>commit time (µs since the epoch)" lines
# (pg_xact_commit_timestamp of each row's xmin), the records of those rows
# only, against their row's commit time instead: the record key is the row's
# id (taskevents) or a JSON object with it (Debezium).
# Prints: events p50 p99 max, then p50 p99 of each stage (ms).
import datetime
import json
import sys

commits = None
if len(sys.argv) > 3:
    commits = {}
    with open(sys.argv[3]) as f:
        for line in f:
            k, us = line.split()
            commits[k] = int(us) / 1000.0

total, to_kafka, in_kafka = [], [], []
with open(sys.argv[1]) as f:
    for i, line in enumerate(f):
        if i < int(sys.argv[2]):
            continue
        r = json.loads(line)
        if commits is not None:
            k = r.get("key") or ""
            if k.startswith("{"):
                k = str(json.loads(k).get("id"))
            if k not in commits:
                continue
            t = commits[k]
        elif "ce" in r:
            t = datetime.datetime.fromisoformat(r["ce"]["time"].replace("Z", "+00:00")).timestamp() * 1000.0
        else:
            continue
        got = r["received_us"] / 1000.0
        total.append(got - t)
        to_kafka.append(r["timestamp"] - t)
        in_kafka.append(got - r["timestamp"])
if not total:
    print("0 nan nan nan nan nan nan nan")
    sys.exit(0)
for s in (total, to_kafka, in_kafka):
    s.sort()
pick = lambda s, q: s[min(len(s) - 1, int(q * len(s)))]
print(f"{len(total)} {pick(total, 0.50):.2f} {pick(total, 0.99):.2f} {total[-1]:.2f}",
      f"{pick(to_kafka, 0.50):.2f} {pick(to_kafka, 0.99):.2f} {pick(in_kafka, 0.50):.2f} {pick(in_kafka, 0.99):.2f}")
