#!/usr/bin/env python3
"""Waits until a roster jobs table counts N ended jobs, for benches/run.sh.

    wait_jobs.py pg POSTGRES_URL N TIMEOUT_SECONDS PID
    wait_jobs.py sqlite DB_PATH N TIMEOUT_SECONDS PID

Counts `succeeded` and `failed` jobs every ~50 ms (PostgreSQL through one long-lived psql
session, SQLite through Python's sqlite3 module: no process per poll, so the poller costs
the 2-core machine next to nothing) until they add up to N. Prints "SUCCEEDED FAILED".
Exits 1 if PID (the worker) dies first or TIMEOUT_SECONDS pass.
"""

import os
import sqlite3
import subprocess
import sys
import time

POLL_EVERY = 0.050
QUERY = (
    "SELECT count(CASE WHEN status = 'succeeded' THEN 1 END),"
    " count(CASE WHEN status = 'failed' THEN 1 END) FROM jobs"
)


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def postgres(url):
    psql = subprocess.Popen(
        ["psql", url, "-qAtX", "-F", " ", "-v", "ON_ERROR_STOP=1"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )

    def count():
        psql.stdin.write(QUERY + ";\n")
        psql.stdin.flush()
        line = psql.stdout.readline()
        if not line:
            sys.exit("psql ended")
        return tuple(int(v) for v in line.split())

    return count


def sqlite(path):
    db = sqlite3.connect(path, timeout=5)

    def count():
        return tuple(db.execute(QUERY).fetchone())

    return count


def main():
    backend, target, n, limit, pid = sys.argv[1:6]
    n, limit, pid = int(n), float(limit), int(pid)
    count = postgres(target) if backend == "pg" else sqlite(target)
    deadline = time.monotonic() + limit
    while True:
        succeeded, failed = count()
        if succeeded + failed >= n:
            print(succeeded, failed)
            return
        if not alive(pid):
            sys.exit(f"the worker exited with {succeeded} succeeded, {failed} failed")
        if time.monotonic() > deadline:
            sys.exit(f"only {succeeded} succeeded, {failed} failed after {limit} s")
        time.sleep(POLL_EVERY)


if __name__ == "__main__":
    main()
