# Where the worker's rounds spent their time, from the server log's DEBUG1
# lines "taskevents: round of N changes, R requests: claim … ms, build … ms,
# durable … ms, send … ms (… requests in flight on average), record … ms"
# (src/worker.c, wk_log_round) on standard input.
# Prints: rounds, then p50 p99 (ms) of claim, build, durable, send, record.
import re
import sys

LINE = re.compile(r"taskevents: round of \d+ changes, \d+ requests: claim ([\d.]+) ms, build ([\d.]+) ms, "
                  r"durable ([\d.]+) ms, send ([\d.]+) ms \([\d.]+ requests in flight on average\), record ([\d.]+) ms")
stages = [[] for _ in range(5)]
for line in sys.stdin:
    m = LINE.search(line)
    if m:
        for s, v in zip(stages, m.groups()):
            s.append(float(v))


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p))] if xs else 0.0


print(len(stages[0]), " ".join("%.1f %.1f" % (pct(s, 0.5), pct(s, 0.99)) for s in stages))
