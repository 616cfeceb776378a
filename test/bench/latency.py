# Commit-to-sidecar latency from a fakedapr --times file: for every published
# event, the sidecar's receive time minus the CloudEvent's "time" (the capture
# time, inside the writing transaction).
#   latency.py FILE            prints: events p50 p99 max (ms)
#   latency.py FILE --minutes  prints a line per minute of the run:
#                              minute events p50 p99 max (ms)
import datetime
import sys


def summary(lat):
    lat.sort()
    if not lat:
        return "0 nan nan nan"
    pick = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))]
    return f"{len(lat)} {pick(0.50):.2f} {pick(0.99):.2f} {lat[-1]:.2f}"


rows = []
for line in open(sys.argv[1]):
    recv, when = line.split()
    t = datetime.datetime.fromisoformat(when.replace("Z", "+00:00")).timestamp()
    rows.append((t, (float(recv) - t) * 1000.0))
if "--minutes" not in sys.argv:
    print(summary([ms for _, ms in rows]))
    sys.exit(0)
start = min((t for t, _ in rows), default=0)
minutes = {}
for t, ms in rows:
    minutes.setdefault(int((t - start) // 60), []).append(ms)
for m in sorted(minutes):
    print(m + 1, summary(minutes[m]))
