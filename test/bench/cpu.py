"""Where the CPU went during a measurement (test/bench.sh real).

  cpu.py PID...                  a sample: the machine's busy and idle ticks,
                                 then each process tree's (PID, its
                                 descendants and the children it reaped)
  cpu.py --add SUM BEFORE AFTER  SUM plus AFTER - BEFORE, element by element
                                 ("" for zeros)
  cpu.py --per EVENTS SUM NAME...  per 1,000 events: each tree's CPU in ms,
                                 the rest of the machine's ("other") and
                                 the share of the cores left idle
"""
import os
import sys

TICK_MS = 1000 / os.sysconf("SC_CLK_TCK")


def procs():
    """pid -> (ppid, own + reaped children's ticks)."""
    out = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                text = f.read()
        except OSError:
            continue
        rest = text[text.rindex(")") + 2:].split()
        out[int(name)] = (int(rest[1]), sum(int(x) for x in rest[11:15]))
    return out


def tree(all_procs, root):
    total, todo = 0, [root]
    children = {}
    for pid, (ppid, _) in all_procs.items():
        children.setdefault(ppid, []).append(pid)
    while todo:
        pid = todo.pop()
        if pid in all_procs:
            total += all_procs[pid][1]
            todo.extend(children.get(pid, []))
    return total


def sample(pids):
    with open("/proc/stat") as f:
        cpu = [int(x) for x in f.readline().split()[1:]]
    busy = cpu[0] + cpu[1] + cpu[2] + cpu[5] + cpu[6] + cpu[7]
    idle = cpu[3] + cpu[4]
    all_procs = procs()
    return [busy, idle] + [tree(all_procs, int(p)) for p in pids]


def main(argv):
    if argv[0] == "--add":
        after = [int(x) for x in argv[3].split()]
        total, before = ([int(x) for x in s.split()] or [0] * len(after) for s in argv[1:3])
        print(" ".join(str(t + a - b) for t, a, b in zip(total, after, before)))
    elif argv[0] == "--per":
        events = int(argv[1])
        busy, idle, *trees = (int(x) for x in argv[2].split())
        names = argv[3:]
        per = lambda ticks: ticks * TICK_MS * 1000 / events
        parts = [f"{n} {per(t):.0f}" for n, t in zip(names, trees)]
        parts.append(f"other {per(busy - sum(trees)):.0f}")
        print(", ".join(parts) + f" ms per 1,000 events, cores {100 * idle / (busy + idle):.0f} % idle")
    else:
        print(" ".join(str(x) for x in sample(argv)))


if __name__ == "__main__":
    main(sys.argv[1:])
