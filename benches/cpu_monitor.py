#!/usr/bin/env python3
"""Records who uses the CPU while benches/run.sh runs, for benches/run.sh.

    cpu_monitor.py ROOT_PID OUT_FILE

Every second, reads utime+stime of every process in /proc and appends one line to
OUT_FILE: "UNIX_TIME OURS DATABASES OTHER", the CPU seconds used since the start by
ROOT_PID and its descendants (roster, the clients, the pollers), by PostgreSQL and Redis,
and by everything else (another user's build or tests would show here: the machine is
shared, and such load skews the figures). A process that exits between two samples loses
its last second. Stops when ROOT_PID is gone.
"""

import os
import sys
import time

TICK = os.sysconf("SC_CLK_TCK")
DATABASES = ("postgres", "redis-server")


def processes():
    """pid -> (ppid, comm, cpu seconds)."""
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        comm = stat[stat.find("(") + 1 : stat.rfind(")")]
        fields = stat[stat.rfind(")") + 2 :].split()
        # After the name: state, ppid, …; utime and stime are the 12th and 13th.
        found[int(entry)] = (int(fields[1]), comm, (int(fields[11]) + int(fields[12])) / TICK)
    return found


def main():
    root, out = int(sys.argv[1]), sys.argv[2]
    totals = {"ours": 0.0, "databases": 0.0, "other": 0.0}
    last = None  # pid -> cpu seconds at the previous sample
    while os.path.exists(f"/proc/{root}"):
        procs = processes()
        ours = {root}
        changed = True
        while changed:
            changed = False
            for pid, (ppid, _, _) in procs.items():
                if ppid in ours and pid not in ours:
                    ours.add(pid)
                    changed = True
        for pid, (_, comm, cpu) in procs.items():
            # At the first sample everything starts from now; later, a new process from 0.
            before = cpu if last is None else last.get(pid, 0.0)
            delta = max(cpu - before, 0.0)
            if pid in ours:
                totals["ours"] += delta
            elif comm in DATABASES:
                totals["databases"] += delta
            else:
                totals["other"] += delta
        last = {pid: cpu for pid, (_, _, cpu) in procs.items()}
        with open(out, "a") as f:
            f.write(
                f"{time.time():.1f} {totals['ours']:.2f} {totals['databases']:.2f}"
                f" {totals['other']:.2f}\n"
            )
        time.sleep(1)


if __name__ == "__main__":
    main()
