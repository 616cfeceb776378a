# Where the worker's rounds spent their time, from the server log's DEBUG1
# lines "taskevents: round of N changes, R requests: claim … ms, build … ms,
# durable … ms, send … ms (… requests in flight on average), record … ms"
# (src/round.c, rd_log) on standard input.
#   python3 rounds.py            rounds, then p50 p99 (ms) of claim, build,
#                                durable, send, record
#   python3 rounds.py --totals   rounds, then the seconds spent in each
#                                stage, then the requests in flight on
#                                average while sending
import re
import sys

LINE = re.compile(r"taskevents: round of \d+ changes, \d+ requests: claim ([\d.]+) ms, build ([\d.]+) ms, "
                  r"durable ([\d.]+) ms, send ([\d.]+) ms \(([\d.]+) requests in flight on average\), record ([\d.]+) ms")
stages = [[] for _ in range(5)]
weighted = 0.0
for line in sys.stdin:
    m = LINE.search(line)
    if m:
        claim, build, durable, send, in_flight, record = map(float, m.groups())
        for s, v in zip(stages, (claim, build, durable, send, record)):
            s.append(v)
        weighted += in_flight * send


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p))] if xs else 0.0


if sys.argv[1:] == ["--totals"]:
    send = sum(stages[3])
    print(len(stages[0]), " ".join("%.2f" % (sum(s) / 1000) for s in stages), "%.1f" % (weighted / send if send else 0))
else:
    print(len(stages[0]), " ".join("%.1f %.1f" % (pct(s, 0.5), pct(s, 0.99)) for s in stages))
