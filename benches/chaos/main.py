"""The run from start to end: the command line, the stack set up, the workload, the
faults and the queue pauses run together, every queue resumed, the wait for every job to
end, the checks, the report, and the exit status (0 only when every count is 0)."""

import argparse
import asyncio
import atexit
import os
import random
import resource
import signal
import sys
import time
from pathlib import Path

from . import __doc__ as PACKAGE_DOC
from .api import Api
from .checks import Checker
from .common import T0, say
from .faults import Chaos
from .monitor import Monitor
from .processes import Stack
from .report import print_summary, write_report
from .settings import (END_CAP_SECS, FAULT_INTERVAL_SECS, IMPORT_BATCH_ROWS, IMPORT_PREFIX,
                       QUIET_SECS, SETTLE_SECS, STUDENTS_PER_IMPORT_UNIT, TERMINAL)
from .watchers import Dashboard
from .workload import Workload


async def wait_for_endings(monitor, jobs):
    """Waits until every job has ended, for as long as the system works on them: gives up
    once no job has run or ended for QUIET_SECS (what is left then is stranded), or after
    END_CAP_SECS in all."""
    deadline = time.monotonic() + END_CAP_SECS
    last_activity, ended = time.monotonic(), 0
    while time.monotonic() < deadline:
        statuses = [monitor.status(job_id) for job_id in jobs]
        now_ended = sum(status in TERMINAL for status in statuses)
        if now_ended == len(jobs):
            return True
        if now_ended != ended or "running" in statuses:
            last_activity, ended = time.monotonic(), now_ended
        elif time.monotonic() - last_activity > QUIET_SECS:
            return False
        await asyncio.sleep(0.5)
    return False


async def chaos_run(args, stack):
    rng = random.Random(args.seed)
    api = Api(stack.port)
    monitor = Monitor(stack.pg, stack.workers)
    workload = Workload(api, monitor, stack.port, rng)
    workload.import_unit = max(1, args.students // STUDENTS_PER_IMPORT_UNIT)
    dashboard = Dashboard(f"ws://127.0.0.1:{stack.port}/ws")
    chaos = Chaos(stack, monitor, workload, api, rng)
    background = [asyncio.create_task(task)
                  for task in (stack.supervise(), monitor.run(), dashboard.run())]

    duration = args.faults * FAULT_INTERVAL_SECS
    say(f"{args.jobs} jobs and {args.faults} faults over about {duration:.0f}s "
        f"({stack.batch_rows} rows per export batch, {IMPORT_BATCH_ROWS} per import batch)")
    await asyncio.gather(workload.run(args.jobs, duration * 0.9), chaos.run(args.faults, duration),
                         chaos.pauses(duration))
    say("faults over; restoring anything down, resuming every queue")
    await stack.restore()
    # Each pause resumed its queue; this makes sure (a resume never answered, say): the
    # final phase waits for every job, and a paused queue starts none.
    await chaos.resume_all()
    waiting = time.monotonic()
    ended = await wait_for_endings(monitor, list(workload.jobs))
    took = time.monotonic() - waiting
    say(f"every job ended {took:.0f}s after the faults" if ended
        else f"jobs still not ended {took:.0f}s after the faults, nothing running")
    say(f"settling {SETTLE_SECS}s for the sweeper")
    await asyncio.sleep(SETTLE_SECS)
    for task in workload.followers:
        task.cancel()
    histogram = {int(age): int(n) for age, n in stack.pg.sql_now(
        f"SELECT age, count(*) FROM students WHERE name NOT LIKE '{IMPORT_PREFIX}%' "
        "GROUP BY age")}
    checker = Checker(stack, api, workload, dashboard, chaos, histogram)
    found = await checker.run()
    for task in background:
        task.cancel()
    # Let the cancelled tasks finish (a poll's psql among them) before the loop closes.
    await asyncio.gather(*background, return_exceptions=True)
    print_summary(checker, monitor.recoveries)
    elapsed = time.monotonic() - T0
    if args.report:
        write_report(args.report, args, stack, checker, monitor.recoveries, elapsed)
    failed = sum(len(v) for v in found.values())
    print(f"\n{'FAIL' if failed else 'PASS'}: {failed} finding(s) in {elapsed:.0f}s")
    return 1 if failed else 0


def parse_args():
    parser = argparse.ArgumentParser(description=PACKAGE_DOC.split("\n\n")[0])
    parser.add_argument("--roster", required=True, help="path to the roster binary")
    parser.add_argument("--jobs", type=int,
                        help="jobs to submit, a fifth of them imports (200; --quick 30)")
    parser.add_argument("--faults", type=int, help="faults to inject (100; --quick 15)")
    parser.add_argument("--seed", type=int, default=1, help="random seed of the run")
    parser.add_argument("--students", type=int, help="students to seed (200000; --quick 50000)")
    parser.add_argument("--quick", action="store_true", help="a short run for CI")
    parser.add_argument("--report", help="append a Markdown section to this file")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args()
    if not os.access(args.roster, os.X_OK):
        parser.error(f"--roster {args.roster}: not an executable file")
    args.jobs = args.jobs or (30 if args.quick else 200)
    args.faults = args.faults or (15 if args.quick else 100)
    args.students = args.students or (50_000 if args.quick else 200_000)
    args.roster = str(Path(args.roster).resolve())
    return args


def interrupted(signum, _frame):
    raise KeyboardInterrupt(f"signal {signum}")


def main():
    args = parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 65536)), hard))
    stack = Stack(args.roster, args.keep, args.students)
    atexit.register(stack.teardown)
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, interrupted)
    try:
        stack.setup(args.students)
        code = asyncio.run(chaos_run(args, stack))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        code = 130
    finally:
        stack.teardown()
    sys.exit(code)
