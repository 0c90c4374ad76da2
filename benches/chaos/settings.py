"""The run's fixed settings: the production shape it starts (workers, the queues each
serves and their concurrency, lease, retries, grace), the sizes and shares of the job mix
(queues, priorities, delays), the fault kinds and their weights, the queue pauses, the
names of the checks (the rows of the final report), and the patterns that read roster's
names and logs."""

import os
import re
from pathlib import Path


# Debian's newest installed PostgreSQL (initdb and pg_ctl are not on PATH).
PG_BIN = max(Path("/usr/lib/postgresql").glob("*/bin"),
             key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
             default=Path("/usr/lib/postgresql/15/bin"))
# The queues each worker process serves, with its workers in each: two processes serve
# both queues (ROSTER_QUEUES), one serves `default` alone in the one-queue spelling
# (ROSTER_QUEUE + ROSTER_CONCURRENCY). 6 slots in all, as before queues: 4 of `default`, 2
# of `imports`. A job runs only in a process serving its queue. The web process
# (`serve --no-workers`, neither variable set) accepts jobs that name no queue into
# `default`.
WORKER_QUEUES = [
    {"default": 1, "imports": 1},
    {"default": 2},
    {"default": 1, "imports": 1},
]
WORKERS = len(WORKER_QUEUES)
QUEUES = ["default", "imports"]
HOME_QUEUE = "default"  # where the web process puts a job that names no queue
# The lease is short by default, so that faults meet lease expiry often. With
# CHAOS_LEASE_SECS=30 (roster's default) a killed or paused worker's jobs come back when it
# is judged dead (ROSTER_DEAD_AFTER_SECS, CHAOS_DEAD_AFTER_SECS here) instead, which is
# what a production deployment sees.
LEASE_SECS = int(os.environ.get("CHAOS_LEASE_SECS", "3"))
DEAD_AFTER_SECS = int(os.environ.get("CHAOS_DEAD_AFTER_SECS", "8"))
# How soon a killed worker's jobs must be back in the queue (p99, no database or Redis
# fault meanwhile): at the lease's end, or a beat interval and a sweep after the process
# is judged dead, whichever comes first.
RECOVERY_GOAL_SECS = (LEASE_SECS + 5 if LEASE_SECS <= DEAD_AFTER_SECS
                      else DEAD_AFTER_SECS + 4)
REDELIVER_SECS = 3
# Faults fail attempts often (a job may see ten): retries back off briefly and for at
# most a few seconds, so that the run's end does not wait on them.
RETRY_BACKOFF_MS = 250
RETRY_BACKOFF_MAX_SECS = 5
GRACE_SECS = 5
SETTINGS = {
    "ROSTER_LEASE_SECS": str(LEASE_SECS),
    "ROSTER_DEAD_AFTER_SECS": str(DEAD_AFTER_SECS),
    "ROSTER_REDELIVER_SECS": str(REDELIVER_SECS),
    "ROSTER_MAX_ATTEMPTS": "25",
    "ROSTER_RETRY_BACKOFF_MS": str(RETRY_BACKOFF_MS),
    "ROSTER_RETRY_BACKOFF_MAX_SECS": str(RETRY_BACKOFF_MAX_SECS),
    "ROSTER_SHUTDOWN_GRACE_SECS": str(GRACE_SECS),
    "RUST_LOG": "info",
}
# Rows per keyset batch: one per 5,000 students, so that an export of every student
# takes 1.5-2 s alone on a 2-core machine (at 2,000 rows a batch it takes 0.2 s, and
# faults almost never meet a running job). Each batch of a CSV export on PostgreSQL is a
# COPY, which PostgreSQL parses and plans anew (it cannot be prepared): about 0.25 ms a
# batch here, twice a prepared SELECT's, so at one row per 20,000 students (10-row
# batches) an export took 5 s and the run's jobs queued behind each other.
STUDENTS_PER_BATCH_ROW = 5_000
# Import files are sized by this unit instead (one per 20,000 students), so that an
# import still takes a few seconds.
STUDENTS_PER_IMPORT_UNIT = 20_000
TERMINAL = {"succeeded", "failed", "cancelled"}
POLL_SECS = 0.1
# A job due in the queue while a worker slot stands idle this long (no database or Redis
# fault under way) is a stall: guarantee 10 allows the redelivery interval, plus the
# consumer's poll and a start.
STALL_SECS = REDELIVER_SECS + 5
# A worker just (re)started is not counted as a free slot until it has had time to
# connect and join the consumer group.
WORKER_WARMUP_SECS = 5
FAULT_INTERVAL_SECS = 4.0  # on average, between the starts of two faults
# After the faults, jobs may wait for a retry's backoff, a lease to expire and a
# redelivery; a job still not ended once nothing has run or ended for this long is lost.
QUIET_SECS = RETRY_BACKOFF_MAX_SECS + LEASE_SECS + STALL_SECS + 10
END_CAP_SECS = 900
SETTLE_SECS = 15
SECOND_TERM_LIMIT_SECS = 3
FIRST_TERM_LIMIT_SECS = GRACE_SECS + 15
CANCEL_SHARE = 0.15
# Where a job is sent: (queue named in the request or None, its share), by kind. Those
# that name none go to HOME_QUEUE. Exports go to `imports` too, so that both queues hold
# both kinds.
EXPORT_QUEUES = [(None, 0.50), ("default", 0.35), ("imports", 0.15)]
IMPORT_QUEUES = [(None, 0.20), ("default", 0.20), ("imports", 0.60)]
PRIORITY_SHARE = 0.6  # of the jobs: an explicit priority 0-9 (the others: the default 5)
# Of the jobs: delayed by `run_in` 1-5 s (a quarter of those by `run_at`, an RFC 3339
# time as far ahead, instead).
DELAY_SHARE = 0.25
DELAY_SECS = (1, 5)
RUN_AT_SHARE = 0.25
# The accepted run_after must be no earlier than asked (the request's send time + run_in,
# or run_at): the harness's clock is the database's (PostgreSQL runs on this host); the
# slack covers roster's delay kept to the millisecond and timestamps to the microsecond.
DELAY_SLACK_SECS = 0.01
# Two times of the database's clock read by two paths (an answer's RFC 3339, psql's
# epoch) may differ by this much in float rounding; a start earlier than a run_after by
# more is a start before it.
TIME_ROUNDING_SECS = 0.0001
# Queue pauses, at random moments during the faults (on average one every this many
# seconds), each of one queue for PAUSE_SECS, then resumed; independent of the faults, so
# they meet them in any combination.
PAUSE_INTERVAL_SECS = 10.0
PAUSE_SECS = (1, 6)
# A claim whose transaction began just before a pause committed may start a job just
# after its paused_at: not counted as running while paused within this much of it.
PAUSE_SLACK_SECS = 1.0
# Resuming every queue before the final phase: retried for at most this long.
RESUME_ALL_SECS = 120
# How often the monitor reads the workers table (process name -> the queues it serves).
WORKERS_POLL_SECS = 1.0
# Of the imports beyond the first six (of which two, one of each mode, always are):
# cancelled mid-batch, once their progress shows rows done.
MID_BATCH_SHARE = 0.25
# Their files are this many times longer (up to MID_BATCH_MAX_ROWS rows): an import of
# 1,000 rows (20 commits) takes about 40 ms, too short to be caught mid-batch by a cancel
# sent once its progress shows; one of 10,000 takes about half a second.
MID_BATCH_ROWS_FACTOR = 10
MID_BATCH_MAX_ROWS = 20_000
MID_BATCH_WAIT_SECS = 120  # for its progress to show rows done; then it is cancelled anyway
MID_BATCH_POLL_SECS = 0.01  # its follower's progress, read in this process
MID_BATCH_DELAY_SECS = 0.05  # at most, from rows done shown to the cancel sent
# One not caught with rows done and rows left (it ended first: the cancel was answered
# 409, say slowly while the pool was exhausted) is followed, after a pause that takes it
# past the fault most likely, by another of the same mode, up to this many in all.
MID_BATCH_TRIES = 4
MID_BATCH_AGAIN_SECS = (5, 15)
IMPORT_SHARE = 0.20  # of the submissions: imports, the rest exports
IMPORT_PREFIX = "chaos-imp-"  # the names of imported students: chaos-imp-<n>-<row>
# Rows of an import file: one unit (STUDENTS_PER_IMPORT_UNIT) x this, so that an import
# takes a few seconds like an export; within IMPORT_ROWS.
IMPORT_BATCHES = (300, 1_000)
# Rows per import batch (ROSTER_IMPORT_BATCH_ROWS): an import of 1,000-10,000 rows makes
# 20-200 commits.
IMPORT_BATCH_ROWS = 50
# Small enough that the imports of a long run (about 40) do not double the table, which
# would double every later export and leave a backlog no fault caused.
IMPORT_ROWS = (1_000, 10_000)
INVALID_FILE_SHARE = 0.5  # of the import files: with 1-5 invalid rows
# An invalid row: (what is wrong, its name field or None for ours, its age field).
INVALID_ROWS = [("age 200", None, "200"), ("age -1", None, "-1"),
                ("blank name", "   ", "30"), ("age 12.5", None, "12.5")]
# roster keeps an upload whose job does not exist (yet) this long.
UPLOAD_GRACE_SECS = 600
UPLOAD_NAME = re.compile(r"^\.?([0-9a-f-]{36})\.0\.upload\.csv(\.part)?$")
MAX_FOLLOWERS = 256
# psql sessions of the harness itself never wait long on roster's locks.
HARNESS_PGOPTIONS = "-c lock_timeout=1000 -c statement_timeout=4000"
UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
SUCCEEDED_LINE = re.compile(rf"job ({UUID}) succeeded")
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
# A finished export's file is written before its job's ending is recorded; a write after
# it (by an attempt that lost its lease) is a rewrite even when the bytes come out equal.
MTIME_SLACK_SECS = 0.5

# fault kind -> weight when drawing beyond one of each
FAULTS = {
    "kill_worker": 3,
    "pause_worker": 2,
    "term_worker": 2,
    "redis_restart": 1,
    "redis_wipe": 1,
    "pg_restart": 1,
    "lock_jobs": 1,
    "pool_exhaust": 1,
    "cancel_kill": 2,
    "kill_serve": 1,
}
CHECKS = [
    "lost",
    "stalls",
    "double completions",
    "corrupt files",
    "leftover files",
    "double inserts",
    "wrong import counts",
    "wrong endings",
    "missed endings",
    "seq backwards",
    "uncommitted events",
    "mid-batch cancels",
    "slow stops",
    "ran early",
    "wrong queue",
    "ran while paused",
]
