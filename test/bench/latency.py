# Commit-to-sidecar latency from a fakedapr --record file: for every published
# event, the sidecar's receive time ("t") minus the CloudEvent's "time" (the
# capture time, inside the writing transaction).  Prints: events p50 p99 max (ms).
import datetime
import json
import sys


def events(body):
    if isinstance(body, dict):          # one CloudEvent
        yield body
    elif isinstance(body, list):        # bulk publish: entries
        for entry in body:
            if isinstance(entry, dict) and isinstance(entry.get("event"), dict):
                yield entry["event"]


lat = []
for line in open(sys.argv[1]):
    r = json.loads(line)
    if r.get("status") not in (200, 204) or "/publish/" not in r.get("path", ""):
        continue
    for ev in events(r.get("body")):
        t = datetime.datetime.fromisoformat(ev["time"].replace("Z", "+00:00")).timestamp()
        lat.append((r["t"] - t) * 1000.0)
lat.sort()
if not lat:
    print("0 nan nan nan")
    sys.exit(0)
pick = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))]
print(f"{len(lat)} {pick(0.50):.2f} {pick(0.99):.2f} {lat[-1]:.2f}")
