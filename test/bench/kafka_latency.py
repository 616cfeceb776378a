# Commit-to-consumer latency from the Kafka consumer's records
# (test/real/kafka/KafkaTool.java consume): for every record from line SKIP
# on, the consumer's receive time ("received_us") minus the CloudEvent's
# "time" (the capture time, inside the writing transaction).
#   python3 kafka_latency.py RECORDS SKIP [COMMITS]
# With COMMITS, a file of "row-id<TAB>commit time (µs since the epoch)" lines
# (pg_xact_commit_timestamp of each row's xmin), the records of those rows
# only, against their row's commit time instead: the record key is the row's
# id (taskevents) or a JSON object with it (Debezium).
# Prints: events p50 p99 max (ms).
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

lat = []
with open(sys.argv[1]) as f:
    for i, line in enumerate(f):
        if i < int(sys.argv[2]):
            continue
        r = json.loads(line)
        if commits is not None:
            k = r.get("key") or ""
            if k.startswith("{"):
                k = str(json.loads(k).get("id"))
            if k in commits:
                lat.append(r["received_us"] / 1000.0 - commits[k])
            continue
        if "ce" not in r:
            continue
        t = datetime.datetime.fromisoformat(r["ce"]["time"].replace("Z", "+00:00")).timestamp()
        lat.append(r["received_us"] / 1000.0 - t * 1000.0)
lat.sort()
if not lat:
    print("0 nan nan nan")
    sys.exit(0)
pick = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))]
print(f"{len(lat)} {pick(0.50):.2f} {pick(0.99):.2f} {lat[-1]:.2f}")
