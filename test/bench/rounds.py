# Where the worker's rounds spent their time, from the server log's DEBUG1
# lines "taskevents: round of N changes in K claims, R requests: claim … ms,
# build … ms, durable … ms, send … ms (… requests in flight on average; … ms
# of it claiming and building more), record … ms" (src/round.c, rd_log) on
# standard input.
#   python3 rounds.py            rounds, then p50 p99 (ms) of claim, build,
#                                durable, send, record
#   python3 rounds.py --totals   rounds, then the seconds spent in each
#                                stage, then the requests in flight on
#                                average while sending, then the claims
#                                and the seconds spent claiming and
#                                building more while sending
import re
import sys

LINE = re.compile(r"taskevents: round of \d+ changes in (\d+) claims, \d+ requests: claim ([\d.]+) ms, "
                  r"build ([\d.]+) ms, durable ([\d.]+) ms, send ([\d.]+) ms \(([\d.]+) requests in flight on "
                  r"average; ([\d.]+) ms of it claiming and building more\), record ([\d.]+) ms")
stages = [[] for _ in range(5)]
weighted = 0.0
claims = 0
more = 0.0
for line in sys.stdin:
    m = LINE.search(line)
    if m:
        n, claim, build, durable, send, in_flight, more_ms, record = map(float, m.groups())
        for s, v in zip(stages, (claim, build, durable, send, record)):
            s.append(v)
        weighted += in_flight * send
        claims += n
        more += more_ms


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p))] if xs else 0.0


if sys.argv[1:] == ["--totals"]:
    send = sum(stages[3])
    print(len(stages[0]), " ".join("%.2f" % (sum(s) / 1000) for s in stages), "%.1f" % (weighted / send if send else 0),
          "%d %.2f" % (claims, more / 1000))
else:
    print(len(stages[0]), " ".join("%.1f %.1f" % (pct(s, 0.5), pct(s, 0.99)) for s in stages))
