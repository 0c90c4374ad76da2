"""The report: the summary printed at the end (faults and queue pauses, jobs, their
queues, priorities and delays, imports, subscribers, recovery times, every check's count
and its first findings with log evidence) and the Markdown section `--report` appends."""

import collections
import datetime
import re
import statistics
import subprocess
from pathlib import Path

from .common import T0
from .monitor import overlaps_outage
from .processes import queue_spec
from .settings import (CHECKS, DEAD_AFTER_SECS, FAULTS, IMPORT_BATCH_ROWS, LEASE_SECS,
                       RECOVERY_GOAL_SECS, UPLOAD_GRACE_SECS,
                       UUID, WORKER_QUEUES)

# The rows of the faults table: the faults, then the queue pauses beside them.
ACTIONS = [*FAULTS, "pause_queue"]


def percentile(values, p):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def spread(times):
    return (f"p50 {statistics.median(times):.2f}s, p99 {percentile(times, 99):.2f}s, "
            f"max {max(times):.2f}s")


def recovery_summary(recoveries):
    """Lines: how soon the jobs a killed or paused worker held were back in the queue,
    and running again, in all and without a database or Redis fault overlapping."""
    released = [r.released for r in recoveries if r.released is not None]
    times = [r.elapsed for r in recoveries if r.elapsed is not None]
    pending = len(recoveries) - len(times)
    never = f"; {pending} never running again nor ended" if pending else ""
    if not times:
        return [f"no kill -9 / SIGSTOP hit a running job{never}"]
    clean = [r for r in recoveries if not overlaps_outage(r)]
    clean_released = [r.released for r in clean if r.released is not None]
    # Running again waits for a pause of the job's queue to end, too.
    clean_times = [r.elapsed for r in recoveries
                   if r.elapsed is not None and not overlaps_outage(r, pauses=True)]
    goal = RECOVERY_GOAL_SECS
    lines = [
        f"back in the queue: {len(released)} jobs: {spread(released)}",
        f"running again: {len(times)} jobs: {spread(times)}{never} (includes waiting for a "
        "free worker slot of the job's queue, or for its queue to be resumed; the stalls "
        "check says no slot stood idle meanwhile)",
    ]
    if clean_released:
        met = "met" if percentile(clean_released, 99) <= goal else "MISSED"
        lines.append(f"back in the queue, no database/Redis fault meanwhile: "
                     f"{len(clean_released)} jobs: {spread(clean_released)}; "
                     f"goal p99 <= {goal}s {met}")
    if clean_times:
        lines.append(f"running again, no database/Redis fault nor pause of its queue "
                     f"meanwhile: {len(clean_times)} jobs: {spread(clean_times)}")
    return lines


def import_summary(checker):
    """Lines: the imports by mode and file, how they ended, and what was allowed."""
    workload = checker.workload
    imports = [j for j in workload.jobs.values() if j.upload]
    endings = collections.Counter(checker.endings_of.get(j.id) for j in imports)
    kinds = collections.Counter((j.upload.mode, "with invalid rows" if j.upload.invalid
                                 else "valid") for j in imports)
    rows = sorted(j.upload.rows for j in imports)
    lines = [f"imports: {len(imports)} accepted ("
             + ", ".join(f"{mode} {what} {n}" for (mode, what), n in sorted(kinds.items()))
             + f"), {rows[0] if rows else 0}-{rows[-1] if rows else 0} rows each; ended "
             + ", ".join(f"{status} {n}" for status, n in sorted(endings.items(), key=str))
             + f"; {len(checker.late_cancels)} cancelled (202) too late to stop"]
    mid = checker.mid_batch
    modes = sorted({mode for mode, _ in mid})
    if modes:
        lines.append("cancelled mid-batch (tried; cancel answered 202 with rows done and "
                     "left): " + "; ".join(
                         f"{mode} {mid[(mode, 'planned')]} tried, {mid[(mode, 'landed')]} "
                         "so, ended " + ", ".join(
                             f"{status} {n}" for (m, status), n in sorted(mid.items(), key=str)
                             if m == mode and status not in ("planned", "landed"))
                         for mode in modes))
    took = [checker.took[j.id] for j in imports if j.id in checker.took and not j.cancels]
    if took:
        lines.append(f"imports never cancelled, first start to end: {spread(took)}")
    lines.append(f"succeeded exports holding rows imported while they ran: "
                 f"{checker.exports_with_imports}")
    if checker.orphan_uploads:
        lines.append(f"uploads of no job (requests cut; roster keeps them "
                     f"{UPLOAD_GRACE_SECS}s): {len(checker.orphan_uploads)}, of "
                     f"{workload.unanswered_imports} import requests unanswered")
    return lines


def workers_shape():
    return "; ".join(queue_spec(queues) for queues in WORKER_QUEUES)


def dispatch_summary(checker):
    """Lines: where and when the jobs were asked to run, the pauses, and what the checks
    of delays, queues and pauses covered."""
    jobs = list(checker.workload.jobs.values())
    queues = collections.Counter(
        (j.queue, "named" if j.dispatch.get("queue") else "unnamed") for j in jobs)
    delayed = collections.Counter(
        "run_at" if "run_at" in j.dispatch else "run_in" for j in jobs
        if "run_at" in j.dispatch or "run_in" in j.dispatch)
    priorities = collections.Counter(j.dispatch.get("priority", 5) for j in jobs)
    windows = checker.chaos.pause_windows
    paused = collections.Counter(w.queue for w in windows)
    seconds = collections.defaultdict(float)
    for w in windows:
        if w.mono_end is not None:
            seconds[w.queue] += w.mono_end - w.mono_start
    lines = [
        f"worker processes (queue:workers): {workers_shape()}",
        "queues: " + ", ".join(f"{queue} {n} ({how})"
                               for (queue, how), n in sorted(queues.items()))
        + "; priorities: " + ", ".join(f"{p}: {n}" for p, n in sorted(priorities.items()))
        + "; delayed: " + (", ".join(f"{how} {n}" for how, n in sorted(delayed.items()))
                           or "none"),
        "queue pauses: " + (", ".join(f"{queue} {n} ({seconds[queue]:.0f}s in all)"
                                      for queue, n in sorted(paused.items())) or "none")
        + f"; {checker.windows_checked} windows with both ends known, checked against "
        f"{len(checker.attempts)} attempts"
        + (f"; still paused after resuming all: {checker.chaos.still_paused}"
           if checker.chaos.still_paused else ""),
        f"started no earlier than due: {checker.early_checked} jobs compared "
        f"({checker.delayed_checked} delayed)"
        + (f"; {checker.delayed_unknown} delayed jobs' run_after as accepted not known"
           if checker.delayed_unknown else ""),
    ]
    return lines


def print_summary(checker, recoveries):
    found, chaos, workload, stack = checker.found, checker.chaos, checker.workload, checker.stack
    print("\n== faults ==")
    for kind in ACTIONS:
        skipped = f" (skipped {chaos.skipped[kind]})" if chaos.skipped[kind] else ""
        print(f"  {kind:<16}{chaos.counts[kind]:>5}{skipped}")
    jobs = workload.jobs.values()
    print(f"\n== jobs ==\n  accepted {len(jobs)}, cancel answered 202 for "
          f"{sum('accepted' in j.cancels for j in jobs)}, 409 for "
          f"{sum('conflict' in j.cancels for j in jobs)}; submissions retried {workload.retried}, "
          f"never accepted {workload.not_accepted}")
    for line in dispatch_summary(checker) + import_summary(checker):
        print(f"  {line}")
    if stack.unexpected_exits:
        exits = collections.Counter((name, code) for name, code, _ in stack.unexpected_exits)
        print("  processes that exited by themselves (restarted): "
              + ", ".join(f"{name} status {code} x{n}" for (name, code), n in exits.items()))
    watches = workload.watches.values()
    errors = collections.Counter(code for w in watches for code in w.errors)
    dashboard = checker.dashboard.watch
    print(f"\n== subscribers ==\n  {len(workload.watches)} followers: "
          f"{sum(w.connections for w in watches)} connections, "
          f"{sum(w.frames for w in watches)} frames, error frames {dict(errors)}; "
          f"dashboard: {dashboard.connections} connections, {dashboard.frames} frames, "
          f"error frames {dict(collections.Counter(dashboard.errors))}; "
          f"{checker.frames_checked} (job, seq) pairs told, each checked against the others "
          "and the final rows")
    print("\n== kill -9 / SIGSTOP -> recovered ==")
    for line in recovery_summary(recoveries):
        print(f"  {line}")
    recovered = sorted((r for r in recoveries if r.elapsed is not None), key=lambda r: r.elapsed)
    for r in recovered[-3:][::-1]:
        print(f"  slowest: {r.job_id} after {r.fault} at {r.started - T0:.1f}s: {r.elapsed:.2f}s")
    print("\n== checks ==")
    for check in CHECKS:
        print(f"  {check:<20}{len(found[check]):>5}")
    for check in CHECKS:
        if found[check]:
            print(f"\n-- {check} --")
            for subject, detail in found[check][:12]:
                print(f"  {subject}: {detail}")
                if re.fullmatch(UUID, subject):
                    for line in checker.evidence(subject):
                        print(f"      {line[:220]}")
            if len(found[check]) > 12:
                print(f"  ... and {len(found[check]) - 12} more")


def git_commit():
    here = Path(__file__).resolve().parent
    out = subprocess.run(["git", "-C", str(here), "rev-parse", "--short", "HEAD"],
                         capture_output=True, text=True)
    return out.stdout.strip() or "unknown"


def write_report(path, args, stack, checker, recoveries, elapsed):
    found, chaos, workload = checker.found, checker.chaos, checker.workload
    version = subprocess.run([args.roster, "--version"], capture_output=True,
                             text=True).stdout.strip()
    lines = [
        f"\n### Chaos run {datetime.datetime.now():%Y-%m-%d %H:%M} (commit {git_commit()})\n",
        f"- binary: `{args.roster}` ({version or 'unknown version'})",
        f"- parameters: jobs {args.jobs}, faults {args.faults}, seed {args.seed}, "
        f"students {args.students}{', quick' if args.quick else ''}; lease {LEASE_SECS}s, dead after {DEAD_AFTER_SECS}s, "
        f"workers {workers_shape()}, {stack.batch_rows} rows per export batch, "
        f"{IMPORT_BATCH_ROWS} per import batch",
        f"- took {elapsed:.0f}s; {len(workload.jobs)} jobs accepted",
        *(f"- {line}" for line in dispatch_summary(checker) + import_summary(checker)),
        "",
        "| fault | count |",
        "|---|---:|",
        *(f"| {kind} | {chaos.counts[kind]} |" for kind in ACTIONS),
        "",
        "| check | count |",
        "|---|---:|",
        *(f"| {check} | {len(found[check])} |" for check in CHECKS),
        "",
        "kill -9 / SIGSTOP of a worker -> its jobs recovered (times from the fault):",
        "",
        *(f"- {line}" for line in recovery_summary(recoveries)),
        "",
    ]
    with open(path, "a") as out:
        out.write("\n".join(lines))
