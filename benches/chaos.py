#!/usr/bin/env python3
"""Chaos harness for roster: the production shape under random faults, then every promise checked.

It starts a private PostgreSQL cluster and Redis in a temporary directory, one
`roster serve --no-workers` and three `roster worker` processes (2 workers each) on them,
submits jobs in bursts (about 15 % of them cancelled at some moment: at once, while
running, or later), follows every job over WebSocket (plus one `/ws` dashboard subscribed
to "*"), and meanwhile injects faults at random intervals, sometimes two at once (every
kind at least once when there are as many faults as kinds).

About 80 % of the jobs are exports (csv or jsonl, an age range or none). The others are
imports (`POST /api/imports`, half `skip_invalid`, half `all_or_nothing`) of a CSV of
(students / 20,000) x 300-1,000 rows, within 1,000-10,000 (so 1,000-2,000 with --quick), named
`chaos-imp-<n>-<row>`, unique to import n; about half the files (each mode at least one
with and one without, when there are 4 imports) have 1-5 invalid rows (age 200 or -1, a
blank name, age "12.5"). Every submission keeps one Idempotency-Key across its retries.
The faults:

  kill_worker    kill -9 a worker (one running jobs, if any), restart it 0-3 s later
  pause_worker   SIGSTOP a worker for lease+2..lease+6 s, then SIGCONT
  term_worker    SIGTERM a worker (sometimes a second one 0.5 s later), restart it
  redis_restart  kill -9 Redis (once jobs wait in its stream, if within 10 s), restart
                 it with its append-only file
  redis_wipe     the same, restarting it empty
  pg_restart     pg_ctl restart -m fast (sometimes -m immediate)
  lock_jobs      LOCK TABLE jobs IN ACCESS EXCLUSIVE MODE for 12 s
  pool_exhaust   80 concurrent slow student searches for 10 s
  cancel_kill    cancel a running job and kill -9 its worker at the same moment
                 (submitting an export for it when no job runs)
  kill_serve     kill -9 the web process, restart it 0-2 s later

A roster process that exits by itself (say, refused to start while Redis was down) is
restarted and reported. Imports commit ROSTER_IMPORT_BATCH_ROWS = 50 rows at a time.
Exports read ROSTER_EXPORT_BATCH_ROWS = students / 5,000 rows a
batch, so that one lasts a couple of seconds and faults meet running jobs; imports insert
(and skip_invalid commits) as many rows a batch, so that one lasts a few seconds too.

Then it restarts anything down, waits for every accepted job to end (for as long as jobs
run or end; up to 15 minutes), lets the sweeper settle for 15 s, and counts:

  lost                accepted (202) and not ended once nothing ran or ended for a while
  stalls              a job due in the queue for more than the redelivery interval + 5 s
                      while a worker slot stood idle and no database or Redis fault was
                      under way (guarantee 10), counted during the whole run
  double completions  `job ID succeeded` logged more than once, or two files for one job
                      (an import's upload aside)
  corrupt files       a succeeded export's file missing, or not matching its result (size,
                      sha256, rows), unparsable, out of (age, id) order, duplicate ids,
                      ages outside the job's range, a count of seeded rows (names not
                      `chaos-imp-`) other than the database's, written after its job ended
                      (a rewrite, even of equal bytes), or a download whose sha256 differs.
                      An export may or may not hold rows imported while it ran (a resumed
                      export reads on from its checkpoint as the table is then); order,
                      duplicates and ranges are checked over all its rows. For an import:
                      its upload missing or not the bytes sent; a rejects report missing
                      when the file had invalid rows (or present when it had none), not
                      listing exactly their lines, or downloading other bytes
  leftover files      hidden or *.part files, or files that neither a job's result names
                      (a succeeded export's file, an ended import's rejects report) nor an
                      existing import names as its upload; uploads of no job (a request
                      cut by kill_serve: roster keeps them 10 minutes) are allowed only up
                      to the number of import requests that got no answer
  double inserts      an import's name (`chaos-imp-<n>-<row>`) in `students` more than once
  wrong import counts a succeeded import whose rows in `students` differ from its
                      `result.inserted`, its valid rows or their ages, or whose result
                      miscounts rows or rejects; an all_or_nothing import that did not
                      succeed with rows in the table; a cancelled (or failed) skip_invalid
                      import whose rows are not the first k of its valid rows; an invalid
                      row inserted; rows of an import that was never accepted
  wrong endings       an export whose cancel got 202 but did not end `cancelled`; one never
                      cancelled that did not end `succeeded`. An import: `succeeded`
                      (`failed` for an all_or_nothing file with invalid rows) when never
                      cancelled; after a cancel answered 202, `cancelled` or, when the
                      cancel came after its last commit, that same ending
  missed endings      a subscriber whose last known status is not the job's final one
                      (the dashboard: of the jobs that ended while it was connected)
  seq backwards       a frame whose seq is lower than an earlier one on the same connection
  slow stops          a worker still running 3 s after a second SIGTERM, or
                      grace + 15 s after one

It also prints the time from each kill -9 / SIGSTOP of a worker to each job it held being
back in the queue, and running again under another lease or ended (p50, p99, max), in all
and for the kills no database or Redis fault overlapped (a locked or restarting database
holds every recovery up). Back in the queue has the goal p99 <= lease + 5 s
(informational). Running again includes waiting for a free worker slot under a backlog;
that no slot stood idle meanwhile is what the stalls check asserts.
Exit status 0 only when every count is 0.

Run it (as root: PostgreSQL runs as `postgres` through runuser; needs PostgreSQL's
initdb and pg_ctl, psql, redis-server, and `pip install websockets`):

    python3 benches/chaos.py --roster target/release/roster           # about 10 minutes
    python3 benches/chaos.py --roster target/release/roster --quick   # under 4 minutes (CI)

Options: --jobs N (200; --quick 30; imports included), --faults M (100; --quick 15),
--seed S, --students K (200000; --quick 50000), --report FILE (append a Markdown
section), --keep (keep the temporary directory with every process's log).
"""

import argparse
import asyncio
import atexit
import collections
import concurrent.futures
import contextlib
import csv
import dataclasses
import datetime
import hashlib
import http.client
import io
import json
import multiprocessing
import os
import random
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import WebSocketException

# Debian's newest installed PostgreSQL (initdb and pg_ctl are not on PATH).
PG_BIN = max(Path("/usr/lib/postgresql").glob("*/bin"),
             key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
             default=Path("/usr/lib/postgresql/15/bin"))
WORKERS = 3
CONCURRENCY = 2
LEASE_SECS = 3
REDELIVER_SECS = 3
# Faults fail attempts often (a job may see ten): retries back off briefly and for at
# most a few seconds, so that the run's end does not wait on them.
RETRY_BACKOFF_MS = 250
RETRY_BACKOFF_MAX_SECS = 5
GRACE_SECS = 5
SETTINGS = {
    "ROSTER_CONCURRENCY": str(CONCURRENCY),
    "ROSTER_LEASE_SECS": str(LEASE_SECS),
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
    "slow stops",
]

T0 = time.monotonic()


def say(message):
    print(f"[{time.monotonic() - T0:7.1f}s] {message}", flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def owner_pid(owner):
    """The pid in a lease owner `{hostname}-{pid}-{tag}/{tag}`."""
    parts = (owner or "").rsplit("/", 1)[0].rsplit("-", 2)
    return int(parts[1]) if len(parts) == 3 and parts[1].isdigit() else None


async def run(argv, timeout=60, env=None):
    """Runs a command; returns (exit status or None on timeout, stdout, stderr)."""
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        return None, "", "timed out"
    return proc.returncode, out.decode(errors="replace"), err.decode(errors="replace")


# ----------------------------------------------------------------------------- processes


class Proc:
    """A child in its own process group, its output appended to a log file.

    `wanted` says whether the supervisor should keep it running."""

    def __init__(self, name, argv, log, env=None):
        self.name, self.argv, self.log, self.env = name, argv, log, env
        self.popen = None
        self.wanted = False
        self.paused = False  # SIGSTOPped by the harness
        self.started_at = 0.0

    def start(self):
        with open(self.log, "ab") as out:
            banner = f"\n=== chaos: starting {self.name} at {datetime.datetime.now()} ===\n"
            out.write(banner.encode())
            out.flush()
            self.popen = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=self.env,
                start_new_session=True,
            )
        self.wanted = True
        self.started_at = time.monotonic()

    @property
    def pid(self):
        return self.popen.pid if self.popen else None

    @property
    def running(self):
        return self.popen is not None and self.popen.poll() is None

    def send(self, sig):
        if self.running:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, sig)

    async def wait_exit(self, timeout):
        deadline = time.monotonic() + timeout
        while self.running:
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.05)
        return True

    async def kill(self):
        self.wanted = False
        self.send(signal.SIGKILL)
        await self.wait_exit(10)

    def stop_now(self):
        self.wanted = False
        self.send(signal.SIGKILL)
        if self.popen:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(5)


class Postgres:
    """A private cluster owned by `postgres`, reached over TCP with trust auth."""

    def __init__(self, root, port):
        self.dir = root / "pg"
        self.data = self.dir / "data"
        self.port = port
        self.options = (
            f"-p {port} -k {self.dir} -c listen_addresses=127.0.0.1 "
            "-c fsync=off -c max_connections=300"
        )
        self.url = f"postgres://postgres@127.0.0.1:{port}/chaos"

    def _as_postgres(self, program, *args):
        return ["runuser", "-u", "postgres", "--", str(PG_BIN / program), *args]

    def _pg_ctl(self, *args):
        return self._as_postgres(
            "pg_ctl", "-D", str(self.data), "-l", str(self.dir / "postgres.log"),
            "-o", self.options, "-w", "-t", "60", *args,
        )

    def create(self):
        self.dir.mkdir()
        shutil.chown(self.dir, "postgres", "postgres")
        subprocess.run(
            self._as_postgres("initdb", "-D", str(self.data), "-U", "postgres",
                              "--auth=trust", "-E", "UTF8", "--no-sync"),
            check=True, stdout=subprocess.DEVNULL,
        )
        subprocess.run(self._pg_ctl("start"), check=True, stdout=subprocess.DEVNULL)
        subprocess.run(
            ["psql", self.url.rsplit("/", 1)[0] + "/postgres", "-qXc", "CREATE DATABASE chaos"],
            check=True,
        )

    async def restart(self, mode):
        status, _, err = await run(self._pg_ctl("-m", mode, "restart"), timeout=90)
        if status != 0:
            say(f"pg_ctl restart failed ({err.strip()}); starting it")
            await self.ensure_up()

    async def ensure_up(self):
        status, _, _ = await run(self._as_postgres("pg_ctl", "-D", str(self.data), "status"))
        if status != 0:
            await run(self._pg_ctl("start"), timeout=90)

    async def sql(self, query, options=HARNESS_PGOPTIONS, timeout=10):
        """Rows of a query as lists of strings, or None when it failed."""
        env = {**os.environ, "PGOPTIONS": options}
        status, out, _ = await run(
            ["psql", self.url, "-AtXq", "-F", "\t", "-c", query], timeout=timeout, env=env
        )
        if status != 0:
            return None
        return [line.split("\t") for line in out.splitlines()]

    def sql_now(self, query):
        out = subprocess.run(["psql", self.url, "-AtXq", "-F", "\t", "-c", query],
                             check=True, capture_output=True, text=True).stdout
        return [line.split("\t") for line in out.splitlines()]

    def stop(self):
        if self.data.exists():
            subprocess.run(self._as_postgres("pg_ctl", "-D", str(self.data), "-m", "immediate",
                                             "-w", "stop"),
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


class Redis:
    """A private redis-server with an append-only file; `fresh` starts it on an empty dir."""

    def __init__(self, root, port, logs):
        self.root, self.port = root, port
        self.generation = 0
        self.proc = None
        self.log = logs / "redis.log"
        self.url = f"redis://127.0.0.1:{port}"

    def start(self, fresh=False):
        self.generation += fresh
        data = self.root / f"redis-{self.generation}"
        data.mkdir(exist_ok=True)
        self.proc = Proc("redis", [
            "redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
            "--dir", str(data), "--appendonly", "yes", "--appendfsync", "everysec",
            "--save", "", "--daemonize", "no",
        ], self.log)
        self.proc.start()

    def wait_ready(self, timeout=20):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(64).startswith(b"+PONG"):
                        return
            time.sleep(0.1)
        raise RuntimeError("redis did not start")


class Stack:
    """PostgreSQL, Redis, the roster processes and the temporary directory; torn down once."""

    def __init__(self, roster, keep, students):
        self.roster, self.keep = roster, keep
        self.batch_rows = max(1, students // STUDENTS_PER_BATCH_ROW)
        self.root = Path(tempfile.mkdtemp(prefix="roster-chaos-"))
        self.root.chmod(0o755)  # postgres must reach its data dir inside
        self.logs = self.root / "logs"
        self.exports = self.root / "exports"
        self.logs.mkdir()
        self.exports.mkdir()
        self.pg = Postgres(self.root, free_port())
        self.redis = Redis(self.root, free_port(), self.logs)
        self.port = free_port()
        self.env = {
            **os.environ,
            **SETTINGS,
            "DATABASE_URL": self.pg.url,
            "BROKER_URL": self.redis.url,
            "ROSTER_EXPORT_DIR": str(self.exports),
            "ROSTER_BIND": f"127.0.0.1:{self.port}",
            "ROSTER_EXPORT_BATCH_ROWS": str(self.batch_rows),
            # Imports commit a batch at a time: a few hundred commits each, so that they
            # last a second or two and meet faults, without swamping the six workers.
            "ROSTER_IMPORT_BATCH_ROWS": str(IMPORT_BATCH_ROWS),
        }
        self.serve = Proc("serve", [roster, "serve", "--no-workers"],
                          self.logs / "serve.log", self.env)
        self.workers = [Proc(f"worker-{i}", [roster, "worker"], self.logs / f"worker-{i}.log",
                             self.env) for i in range(1, WORKERS + 1)]
        self.unexpected_exits = []
        self._torn_down = False

    @property
    def rosters(self):
        return [self.serve, *self.workers]

    def roster_cli(self, *args):
        subprocess.run([self.roster, *args], env=self.env, check=True,
                       stdout=subprocess.DEVNULL)

    def setup(self, students):
        say(f"temporary directory {self.root}")
        self.pg.create()
        self.redis.start()
        self.redis.wait_ready()
        self.roster_cli("migrate")
        started = time.monotonic()
        self.roster_cli("seed", "--students", str(students))
        say(f"seeded {students} students in {time.monotonic() - started:.1f}s")
        for proc in self.rosters:
            proc.start()
        self.wait_ready()

    def wait_ready(self, timeout=60):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError, http.client.HTTPException):
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                conn.request("GET", "/readyz")
                if conn.getresponse().status == 200:
                    return
            time.sleep(0.2)
        raise RuntimeError("roster serve did not become ready; see " + str(self.logs))

    async def supervise(self):
        """Restarts roster processes that exited while wanted (their own crash or a
        start-up refused while PostgreSQL or Redis was down)."""
        while True:
            for proc in self.rosters:
                if proc.wanted and not proc.running:
                    code = proc.popen.returncode
                    uptime = time.monotonic() - proc.started_at
                    self.unexpected_exits.append((proc.name, code, uptime))
                    say(f"{proc.name} exited by itself (status {code}, after {uptime:.1f}s); "
                        "restarting")
                    proc.start()
            await asyncio.sleep(1)

    async def restore(self):
        """Brings back whatever a fault left down."""
        await self.pg.ensure_up()
        if not self.redis.proc.running:
            self.redis.start()
        for proc in self.rosters:
            proc.send(signal.SIGCONT)
            if not proc.running:
                proc.start()

    def teardown(self):
        if self._torn_down:
            return
        self._torn_down = True
        for proc in self.rosters:
            proc.stop_now()
        if self.redis.proc:
            self.redis.proc.stop_now()
        self.pg.stop()
        if self.keep:
            print(f"kept {self.root} (logs in {self.logs})")
        else:
            shutil.rmtree(self.root, ignore_errors=True)


# ----------------------------------------------------------------------------- HTTP


@dataclasses.dataclass
class Reply:
    status: int | None  # None: no answer
    body: bytes = b""
    refused: bool = False  # the request certainly never arrived

    def json(self):
        try:
            return json.loads(self.body)
        except ValueError:
            return None


class Api:
    """Blocking http.client calls on a thread pool of their own."""

    def __init__(self, port):
        self.port = port
        self.pool = concurrent.futures.ThreadPoolExecutor(max_workers=160)

    def _call(self, method, path, body, timeout, extra=None):
        """`body`: JSON to send, or bytes sent as they are (`extra` names their type)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        headers, data = dict(extra or {}), body
        if body is not None and not isinstance(body, bytes):
            headers["Content-Type"] = "application/json"
            data = json.dumps(body).encode()
        try:
            conn.request(method, path, data, headers)
            response = conn.getresponse()
            return Reply(response.status, response.read())
        except ConnectionRefusedError:
            return Reply(None, refused=True)
        except (OSError, http.client.HTTPException):
            return Reply(None)
        finally:
            conn.close()

    def _sha256(self, path):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        try:
            conn.request("GET", path)
            response = conn.getresponse()
            digest = hashlib.sha256()
            while chunk := response.read(1 << 16):
                digest.update(chunk)
            return response.status, digest.hexdigest()
        except (OSError, http.client.HTTPException) as e:
            return None, str(e)
        finally:
            conn.close()

    async def call(self, method, path, body=None, timeout=30, headers=None):
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self.pool, self._call, method, path, body, timeout, headers
        )

    async def download_sha256(self, path):
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.pool, self._sha256, path)


# ----------------------------------------------------------------------------- WebSocket


class Watch:
    """What one subscriber knows: each job's status with the highest seq seen, any seq
    lower than an earlier one on the same connection, and the error frames it got."""

    def __init__(self):
        self.known = {}  # job id -> (seq, status)
        self.backwards = []  # (job id, earlier seq, later seq)
        self.errors = []  # the codes of {"type": "error"} frames
        self.connections = 0
        self.frames = 0
        self._connection = {}

    def new_connection(self):
        self.connections += 1
        self._connection = {}

    def frame(self, raw):
        self.frames += 1
        try:
            msg = json.loads(raw)
        except ValueError:
            return
        if msg.get("type") == "error":
            self.errors.append(msg.get("code"))
            return
        if msg.get("type") == "snapshot":
            job = msg.get("job") or {}
            job_id, seq, status = job.get("id"), job.get("seq"), job.get("status")
        elif msg.get("type") in ("progress", "status"):
            job_id, seq, status = msg.get("job_id"), msg.get("seq"), msg.get("status")
        else:
            return
        if job_id is None or not isinstance(seq, int):
            return
        last = self._connection.get(job_id)
        if last is not None and seq < last:
            self.backwards.append((job_id, last, seq))
        self._connection[job_id] = max(seq, last if last is not None else seq)
        known = self.known.get(job_id)
        if status and (known is None or seq >= known[0]):
            self.known[job_id] = (seq, status)

    def status(self, job_id):
        return self.known.get(job_id, (None, None))[1]


RECONNECTABLE = (OSError, TimeoutError, WebSocketException)


async def follow(url, watch, job_id, slots):
    """Follows /ws/jobs/{id} until it closes after a terminal status, reconnecting when
    the connection drops (the snapshot then tells the current status). An error frame
    does not make it reconnect: the server keeps the session, so it owes the ending."""
    async with slots:
        while watch.status(job_id) not in TERMINAL:
            with contextlib.suppress(*RECONNECTABLE):
                async with ws_connect(url, open_timeout=10) as ws:
                    watch.new_connection()
                    async for raw in ws:
                        watch.frame(raw)
            if watch.status(job_id) not in TERMINAL:
                await asyncio.sleep(0.5)


class Dashboard:
    """One `/ws` session subscribed to "*"; remembers when its current connection opened,
    since it can only be expected to see the endings that happened while connected."""

    def __init__(self, url):
        self.url = url
        self.watch = Watch()
        self.connected_since = None  # wall clock

    async def run(self):
        while True:
            with contextlib.suppress(*RECONNECTABLE):
                async with ws_connect(self.url, open_timeout=10) as ws:
                    self.watch.new_connection()
                    await ws.send(json.dumps({"subscribe": "*"}))
                    self.connected_since = time.time()
                    async for raw in ws:
                        self.watch.frame(raw)
            self.connected_since = None
            await asyncio.sleep(0.5)


# ----------------------------------------------------------------------------- the jobs table


@dataclasses.dataclass
class Recovery:
    job_id: str
    owner: str
    fault: str
    started: float
    # Seconds until the job left the dead owner (back in the queue, or further on).
    released: float | None = None
    # Seconds until it ran again under another owner (or ended).
    elapsed: float | None = None


# Database and Redis faults, (start, end) in monotonic time: a job cannot be recovered or
# run again while the database is locked or restarting, so recovery times are also given
# without the kills such a fault overlapped.
OUTAGES = []
ACTIVE_OUTAGES = [0]  # database and Redis faults under way now


@contextlib.contextmanager
def outage():
    start = time.monotonic()
    ACTIVE_OUTAGES[0] += 1
    try:
        yield
    finally:
        ACTIVE_OUTAGES[0] -= 1
        OUTAGES.append((start, time.monotonic()))


def overlaps_outage(r):
    end = r.started + (r.elapsed if r.elapsed is not None else float("inf"))
    return any(start < end and r.started < stop for start, stop in OUTAGES)


class Monitor:
    """Polls the jobs table every 100 ms: each job's status and lease owner, the recovery
    of the jobs a killed or paused worker held, and stalls: a job due in the queue while a
    worker slot stood idle (guarantee 10: it must be delivered within the redelivery
    interval of being due, whatever happened to its broker message)."""

    def __init__(self, pg, workers):
        self.pg, self.workers = pg, workers
        self.rows = {}  # job id -> (status, lease owner)
        self.due = set()  # ids of the queued jobs whose run_after has come
        self.recoveries = []
        # job id -> seconds it has been due while some worker slot stood idle, unbroken
        self.idle_waits = collections.defaultdict(float)
        self.stalls = {}  # job id -> (longest idle wait seconds, when it began, idle slots)
        self.last_poll = None

    async def run(self):
        while True:
            at = time.monotonic()
            rows = await self.pg.sql("SELECT id, status, coalesce(lease_owner, ''), "
                                     "(run_after <= now())::int FROM jobs")
            if rows is not None:
                self.rows = {r[0]: (r[1], r[2]) for r in rows if len(r) == 4}
                self.due = {r[0] for r in rows if len(r) == 4 and r[1] == "queued"
                            and r[3] == "1"}
                self._resolve(at)
                self._stalls(at)
            else:
                self.last_poll = None
            await asyncio.sleep(max(0.0, POLL_SECS - (time.monotonic() - at)))

    def idle_slots(self, at):
        """Worker slots free now: of the workers up (not paused, started a while ago),
        their concurrency minus the jobs they run."""
        up = {w.pid for w in self.workers
              if w.running and not w.paused and at - w.started_at > WORKER_WARMUP_SECS}
        busy = sum(1 for status, owner in self.rows.values()
                   if status == "running" and owner_pid(owner) in up)
        return len(up) * CONCURRENCY - busy

    def _stalls(self, at):
        elapsed, self.last_poll = (at - self.last_poll if self.last_poll else 0.0), at
        idle = self.idle_slots(at)
        for job_id in list(self.idle_waits):
            if job_id not in self.due:
                del self.idle_waits[job_id]
        if ACTIVE_OUTAGES[0] or idle <= 0:
            # Only an unbroken stretch of idle capacity counts: under a backlog, every
            # slot a job frees stays free for a moment before the next job is claimed.
            self.idle_waits.clear()
            return
        for job_id in self.due:
            self.idle_waits[job_id] += elapsed
            waited = self.idle_waits[job_id]
            if waited > STALL_SECS and waited > self.stalls.get(job_id, (0,))[0]:
                began = self.stalls.get(job_id, (0, at - waited - T0))[1]
                self.stalls[job_id] = (waited, began, idle)

    def _resolve(self, at):
        for r in self.recoveries:
            if r.elapsed is not None or at < r.started:
                continue
            status, owner = self.rows.get(r.job_id, (None, None))
            if r.released is None and (status != "running" or owner != r.owner):
                r.released = at - r.started
            if status in TERMINAL or (status == "running" and owner != r.owner):
                r.elapsed = at - r.started

    def status(self, job_id):
        return self.rows.get(job_id, (None, None))[0]

    def running_on(self, pid):
        return [(job_id, owner) for job_id, (status, owner) in self.rows.items()
                if status == "running" and owner_pid(owner) == pid]

    async def held_by(self, pid):
        """The running jobs `pid` holds, read now (the last poll if the table is locked)."""
        rows = await self.pg.sql("SELECT id, lease_owner FROM jobs WHERE status = 'running'")
        if rows is None:
            return self.running_on(pid)
        return [(r[0], r[1]) for r in rows if owner_pid(r[1]) == pid]

    def track(self, held, fault):
        now = time.monotonic()
        self.recoveries += [Recovery(job_id, owner, fault, now) for job_id, owner in held]


# ----------------------------------------------------------------------------- workload


class ImportFile:
    """The CSV of import number `number`: row i is `chaos-imp-{number}-{i}` with ages[i],
    or, for i in `invalid`, a row roster must reject (invalid[i] says why)."""

    def __init__(self, number, mode, rows, invalid_rows, rng):
        self.number, self.mode = number, mode
        self.ages = [rng.randint(0, 150) for _ in range(rows)]
        self.invalid = {i: rng.choice(INVALID_ROWS)
                        for i in rng.sample(range(rows), invalid_rows)}
        lines = ["name,age"]
        for i, age in enumerate(self.ages):
            what, name, bad_age = self.invalid.get(i, (None, None, None))
            lines.append(f"{self.name(i) if name is None else name},"
                         f"{age if bad_age is None else bad_age}")
        self.data = ("\r\n".join(lines) + "\r\n").encode()
        self.sha256 = hashlib.sha256(self.data).hexdigest()
        self.valid = [i for i in range(rows) if i not in self.invalid]

    def name(self, i):
        return f"{IMPORT_PREFIX}{self.number}-{i}"

    @property
    def rows(self):
        return len(self.ages)

    @property
    def refused(self):
        """Whether roster must refuse the whole file (all or nothing, invalid rows)."""
        return self.mode == "all_or_nothing" and bool(self.invalid)

    def report_lines(self):
        """The lines of the rejects report (the header is line 1)."""
        return {i + 2 for i in self.invalid}

    def describe(self):
        return (f"import {self.number}, {self.mode}, {self.rows} rows, "
                f"{len(self.invalid)} invalid")


@dataclasses.dataclass
class Job:
    id: str
    params: dict
    cancels: list = dataclasses.field(default_factory=list)  # "accepted" | "conflict" | "unknown"
    upload: ImportFile | None = None  # an import's file; None for an export

    def expected_endings(self):
        # An import ends like this unless cancelled; so does one cancelled too late (after
        # its last commit, when nothing is left to stop).
        done = {"failed" if self.upload and self.upload.refused else "succeeded"}
        late = done if self.upload else set()
        if "accepted" in self.cancels:
            return {"cancelled"} | late
        if "unknown" in self.cancels:
            return {"cancelled"} | done
        return done


class Workload:
    """Submits the exports and imports spread over the run, follows each one, and cancels
    some."""

    def __init__(self, api, monitor, port, rng):
        self.api, self.monitor, self.rng = api, monitor, rng
        self.ws_base = f"ws://127.0.0.1:{port}"
        self.jobs = {}
        self.watches = collections.defaultdict(Watch)  # job id -> its follower's
        self.slots = asyncio.Semaphore(MAX_FOLLOWERS)
        self.followers = []
        self.retried = 0
        self.not_accepted = 0
        self.imports = []  # every ImportFile submitted, accepted or not
        self.unanswered_imports = 0  # import requests that got no answer at all
        self.merged = []  # (job id, submission) answered with another submission's job
        self.import_unit = 1  # set by chaos_run: an import file has this x IMPORT_BATCHES rows

    def random_params(self):
        params = {"format": self.rng.choice(["csv", "jsonl"])}
        shape = self.rng.choice(["all", "all", "min", "max", "both"])
        low, high = sorted(self.rng.randint(0, 150) for _ in range(2))
        if shape in ("min", "both"):
            params["min_age"] = low
        if shape in ("max", "both"):
            params["max_age"] = high
        return params

    def bursts(self, count, duration):
        """Submission times: bursts of 1-8 jobs (up to more than the 6 workers take at
        once, so that jobs wait in the queue) at random moments."""
        times = []
        while len(times) < count:
            at = self.rng.uniform(0, duration)
            times += [at] * min(self.rng.randint(1, 8), count - len(times))
        return sorted(times)

    def import_shapes(self, count):
        """(mode, invalid rows) of `count` imports: the two modes, each with files that
        have invalid rows and files that have none, in turn, in random order."""
        shapes = [(mode, self.rng.random() < INVALID_FILE_SHARE if i >= 2 else i % 2 == 0)
                  for i in range(count // 2 + 1) for mode in ("skip_invalid", "all_or_nothing")]
        shapes = shapes[:count]
        self.rng.shuffle(shapes)
        return [(mode, self.rng.randint(1, 5) if invalid else 0) for mode, invalid in shapes]

    def random_import(self, mode, invalid):
        low, high = IMPORT_ROWS
        rows = min(high, max(low, self.import_unit * self.rng.randint(*IMPORT_BATCHES)))
        upload = ImportFile(len(self.imports), mode, rows, invalid, self.rng)
        self.imports.append(upload)
        return upload

    async def run(self, count, duration):
        start = time.monotonic()
        imports = self.import_shapes(round(count * IMPORT_SHARE))
        kinds = [True] * len(imports) + [False] * (count - len(imports))
        self.rng.shuffle(kinds)
        submissions = []
        for at, is_import in zip(self.bursts(count, duration), kinds):
            await asyncio.sleep(max(0.0, start + at - time.monotonic()))
            plan = None
            if self.rng.random() < CANCEL_SHARE:
                plan = self.rng.choice(["now", "running", "later"])
            if is_import:
                submission = self.submit(None, plan, upload=self.random_import(*imports.pop()))
            else:
                submission = self.submit(self.random_params(), plan)
            submissions.append(asyncio.create_task(submission))
        await asyncio.gather(*submissions)

    async def submit(self, params, cancel_plan, upload=None):
        """Submits an export of `params`, or the import of `upload` (an ImportFile)."""
        # One key for the submission and its retries, as a careful client does: a retry
        # of a request whose answer was lost returns the job it made (200), not a second.
        key = {"Idempotency-Key": f"chaos-{self.rng.getrandbits(64):016x}"}
        for _ in range(15):
            if upload is None:
                reply = await self.api.call("POST", "/api/exports", params, headers=key)
            else:
                reply = await self.api.call(
                    "POST", f"/api/imports?mode={upload.mode}", upload.data,
                    headers={**key, "Content-Type": "text/csv"})
                if reply.status is None and not reply.refused:
                    self.unanswered_imports += 1
            body = reply.json() or {}
            if reply.status in (200, 202) and "id" in body:
                break
            self.retried += 1
            await asyncio.sleep(1)
        else:
            self.not_accepted += 1
            return
        job = self.jobs.setdefault(body["id"], Job(body["id"], params, upload=upload))
        if job.upload is not upload:
            what = upload.describe() if upload else f"export {params}"
            self.merged.append((job.id, what))
            say(f"submission of {what} answered with job {job.id}, another submission's")
        url = f"{self.ws_base}/ws/jobs/{job.id}"
        follower = follow(url, self.watches[job.id], job.id, self.slots)
        self.followers.append(asyncio.create_task(follower))
        if cancel_plan:
            await self.cancel_later(job, cancel_plan)

    async def cancel_later(self, job, plan):
        if plan == "running":
            deadline = time.monotonic() + 60
            while self.monitor.status(job.id) in (None, "queued") and time.monotonic() < deadline:
                await asyncio.sleep(POLL_SECS)
            await asyncio.sleep(self.rng.uniform(0, 1.5))
        elif plan == "later":
            await asyncio.sleep(self.rng.uniform(0.5, 8))
        await self.cancel(job)

    async def cancel(self, job):
        """POST cancel until it is answered 202 or 409; an answer lost on the way is
        noted as "unknown" (the cancel may have happened)."""
        for _ in range(10):
            reply = await self.api.call("POST", f"/api/jobs/{job.id}/cancel")
            if reply.status == 202:
                job.cancels.append("accepted")
                return
            if reply.status == 409:
                job.cancels.append("conflict")
                return
            if not reply.refused:
                job.cancels.append("unknown")
            await asyncio.sleep(1)


# ----------------------------------------------------------------------------- faults


class Chaos:
    """Injects the faults. Each fault holds the lock of what it hits (a worker, Redis,
    PostgreSQL, ...) so that two faults never fight over one process."""

    def __init__(self, stack, monitor, workload, api, rng):
        self.stack, self.monitor, self.workload, self.api, self.rng = (
            stack, monitor, workload, api, rng)
        self.locks = collections.defaultdict(asyncio.Lock)
        self.counts = collections.Counter()
        self.skipped = collections.Counter()
        self.slow_stops = []  # (worker, what happened)

    def plan(self, count):
        """One of each kind (when there is room), the rest drawn by weight, in random
        order, grouped into events of one fault or sometimes two different ones."""
        kinds = list(FAULTS) if count >= len(FAULTS) else []
        kinds += self.rng.choices(list(FAULTS), weights=list(FAULTS.values()), k=count - len(kinds))
        self.rng.shuffle(kinds)
        events = []
        while kinds:
            event = [kinds.pop()]
            if kinds and kinds[-1] != event[0] and self.rng.random() < 0.25:
                event.append(kinds.pop())
            events.append(event)
        return events

    async def run(self, count, duration):
        events = self.plan(count)
        mean = duration / len(events)
        faults = []
        for event in events:
            await asyncio.sleep(self.rng.uniform(0.25, 1.75) * mean)
            faults += [asyncio.create_task(self.inject(kind)) for kind in event]
        await asyncio.gather(*faults)

    async def inject(self, kind):
        if await getattr(self, kind)() is False:
            self.skipped[kind] += 1
        else:
            self.counts[kind] += 1

    @contextlib.asynccontextmanager
    async def worker(self):
        """A running worker no other fault holds, preferably one running jobs."""
        while True:
            free = [w for w in self.stack.workers
                    if w.running and not self.locks[w.name].locked()]
            busy = [w for w in free if self.monitor.running_on(w.pid)]
            if free:
                break
            await asyncio.sleep(0.2)
        chosen = self.rng.choice(busy or free)
        async with self.locks[chosen.name]:
            yield chosen

    async def restart_later(self, proc, most):
        await asyncio.sleep(self.rng.uniform(0, most))
        await proc.wait_exit(10)
        proc.start()

    async def kill_worker(self):
        async with self.worker() as w:
            held = await self.monitor.held_by(w.pid)
            await w.kill()
            self.monitor.track(held, "kill -9")
            say(f"kill -9 {w.name} (pid {w.pid}, running {len(held)})")
            await self.restart_later(w, 3)

    async def pause_worker(self):
        async with self.worker() as w:
            held = await self.monitor.held_by(w.pid)
            pause = LEASE_SECS + self.rng.uniform(2, 6)
            w.send(signal.SIGSTOP)
            w.paused = True
            self.monitor.track(held, "SIGSTOP")
            say(f"SIGSTOP {w.name} (pid {w.pid}, running {len(held)}) for {pause:.1f}s")
            await asyncio.sleep(pause)
            w.send(signal.SIGCONT)
            w.paused = False

    async def term_worker(self):
        async with self.worker() as w:
            twice = self.rng.random() < 0.5
            w.wanted = False
            w.send(signal.SIGTERM)
            say(f"SIGTERM {w.name} (pid {w.pid}){' twice' if twice else ''}")
            if twice:
                await asyncio.sleep(0.5)
                w.send(signal.SIGTERM)
            limit = SECOND_TERM_LIMIT_SECS if twice else FIRST_TERM_LIMIT_SECS
            sent = time.monotonic()
            if not await w.wait_exit(limit):
                if twice:  # how long it does take, for the record
                    await w.wait_exit(FIRST_TERM_LIMIT_SECS - limit)
                took = time.monotonic() - sent
                what = "after a second SIGTERM" if twice else "after SIGTERM"
                state = "still running (kill -9)" if w.running else "stopped only"
                self.slow_stops.append((w.name, f"{state} {took:.1f}s {what} (limit {limit}s)"))
                say(f"{w.name} {state} {took:.1f}s {what}")
                await w.kill()
            await self.restart_later(w, 3)

    async def backlog(self, seconds, jobs=2):
        """Waits up to `seconds` for `jobs` queued jobs: a Redis fault matters most when
        its stream holds messages no worker has read yet."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if sum(status == "queued" for status, _ in self.monitor.rows.values()) >= jobs:
                return
            await asyncio.sleep(POLL_SECS)

    async def redis_restart(self, wipe=False):
        async with self.locks["redis"]:
            await self.backlog(10)
            with outage():
                await self.stack.redis.proc.kill()
                say(f"kill -9 redis; restarting it {'EMPTY' if wipe else 'with its AOF'}")
                await asyncio.sleep(self.rng.uniform(0, 2))
                self.stack.redis.start(fresh=wipe)

    async def redis_wipe(self):
        await self.redis_restart(wipe=True)

    async def pg_restart(self):
        async with self.locks["postgres"]:
            mode = "immediate" if self.rng.random() < 0.3 else "fast"
            say(f"pg_ctl restart -m {mode}")
            with outage():
                await self.stack.pg.restart(mode)

    async def lock_jobs(self):
        async with self.locks["lock_jobs"]:
            say("LOCK TABLE jobs for 12 s")
            with outage():
                await self.stack.pg.sql(
                    "BEGIN; LOCK TABLE jobs IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(12); "
                    "COMMIT;", options="", timeout=40)

    async def pool_exhaust(self, clients=80, seconds=10):
        async with self.locks["pool_exhaust"]:
            say(f"{clients} concurrent student searches for {seconds} s")
            deadline = time.monotonic() + seconds
            statuses = collections.Counter()

            async def search():
                while time.monotonic() < deadline:
                    q = "".join(self.rng.choices("abcdefghijklmnopqrstuvwxyz", k=3))
                    reply = await self.api.call("GET", f"/api/students?q={q}&per_page=1000",
                                                timeout=15)
                    statuses[reply.status] += 1
                    if reply.status is None:  # the web process is down: do not spin
                        await asyncio.sleep(0.2)

            await asyncio.gather(*(search() for _ in range(clients)))
            say(f"searches answered: {dict(statuses)}")

    def cancellable(self, held):
        """The jobs of `held` (job id, owner) that the workload submitted and never cancelled."""
        jobs = self.workload.jobs
        return [jobs[j] for j, _ in held if j in jobs and not jobs[j].cancels]

    async def cancel_kill(self):
        """Cancels a running job and kill -9s its worker at the same moment; when no job
        runs, submits one (an export of every student) for it."""
        if await self.try_cancel_kill(5):
            return True
        await self.workload.submit({"format": "csv"}, cancel_plan=None)
        if await self.try_cancel_kill(30):
            return True
        say("cancel_kill: no running job to cancel; skipped")
        return False

    async def try_cancel_kill(self, seconds):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            for w in self.stack.workers:
                if (not w.running or self.locks[w.name].locked()
                        or not self.cancellable(self.monitor.running_on(w.pid))):
                    continue
                async with self.locks[w.name]:
                    held = await self.monitor.held_by(w.pid)
                    if jobs := self.cancellable(held):
                        await self.cancel_and_kill(w, held, self.rng.choice(jobs))
                        return True
            await asyncio.sleep(POLL_SECS)
        return False

    async def cancel_and_kill(self, w, held, job):
        cancel = asyncio.create_task(self.workload.cancel(job))
        await w.kill()
        self.monitor.track(held, "cancel + kill -9")
        say(f"cancel {job.id} + kill -9 {w.name} (pid {w.pid}, running {len(held)})")
        await cancel
        await self.restart_later(w, 3)

    async def kill_serve(self):
        async with self.locks["serve"]:
            await self.stack.serve.kill()
            say("kill -9 serve")
            await self.restart_later(self.stack.serve, 2)


# ----------------------------------------------------------------------------- checks


def read_rows(data, fmt):
    """(age, id, name) of every row of an export file, or raises ValueError saying what is
    wrong."""
    text = data.decode("utf-8")
    if fmt == "jsonl":
        rows = []
        for n, line in enumerate(text.split("\n")[:-1] if text else [], 1):
            obj = json.loads(line)
            if not isinstance(obj, dict) or set(obj) != {"id", "name", "age"}:
                raise ValueError(f"line {n} is not {{id, name, age}}: {line[:80]!r}")
            rows.append((obj["age"], obj["id"], obj["name"]))
        if text and not text.endswith("\n"):
            raise ValueError("the last line is not terminated")
        return rows
    if not text.startswith("id,name,age\r\n"):
        raise ValueError(f"header is not id,name,age + CRLF: {text[:40]!r}")
    if text.count("\n") != text.count("\r\n"):
        raise ValueError("a line ends without CRLF")
    records = csv.reader(io.StringIO(text, newline=""), strict=True)
    next(records)
    rows = []
    for n, record in enumerate(records, 2):
        if len(record) != 3:
            raise ValueError(f"record {n} has {len(record)} fields")
        if record[1].startswith(FORMULA_STARTS):
            raise ValueError(f"record {n}: formula not neutralised: {record[1][:40]!r}")
        rows.append((int(record[2]), int(record[0]), record[1]))
    return rows


def verify_file(path, result, params, expected_rows, finished):
    """What is wrong with a succeeded export's file (empty when nothing), and how many
    imported rows it holds. `finished`: when its job ended (epoch seconds);
    `expected_rows`: the seeded students in its range (rows imported meanwhile may be in
    the file or not)."""
    try:
        data = Path(path).read_bytes()
        modified = os.stat(path).st_mtime
    except OSError as e:
        return [f"cannot read {path}: {e}"], 0
    problems = []
    if finished is not None and modified > finished + MTIME_SLACK_SECS:
        problems.append(f"written {modified - finished:.2f}s after its job ended")
    if len(data) != result.get("bytes"):
        problems.append(f"{len(data)} bytes, result says {result.get('bytes')}")
    if hashlib.sha256(data).hexdigest() != result.get("sha256"):
        problems.append("sha256 differs from the result's")
    try:
        rows = read_rows(data, params.get("format", "csv"))
    except (ValueError, TypeError, KeyError) as e:
        return problems + [f"unparsable: {e}"], 0
    low, high = params.get("min_age", 0), params.get("max_age", 150)
    if any(not low <= age <= high for age, _, _ in rows):
        problems.append(f"ages outside {low}..{high}")
    keys = [(age, i) for age, i, _ in rows]
    if any(a >= b for a, b in zip(keys, keys[1:])):
        problems.append("rows not strictly ordered by (age, id)")
    if len({i for _, i, _ in rows}) != len(rows):
        problems.append("duplicate ids")
    seeded = sum(not name.startswith(IMPORT_PREFIX) for _, _, name in rows)
    if len(rows) != result.get("rows") or seeded != expected_rows:
        problems.append(f"{len(rows)} rows ({len(rows) - seeded} imported); result says "
                        f"{result.get('rows')}; {seeded} seeded rows, the database "
                        f"{expected_rows}")
    return problems, len(rows) - seeded


def verify_report(path, upload):
    """What is wrong with an import's rejects report (empty when nothing): it must list
    the line of each invalid row of `upload`, once, and nothing else; with its sha256."""
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        return [f"cannot read its rejects report {path}: {e}"], None
    try:
        records = list(csv.reader(io.StringIO(data.decode("utf-8"), newline="")))
    except (ValueError, csv.Error) as e:
        return [f"rejects report unparsable: {e}"], None
    if not records or records[0] != ["line", "field", "message"]:
        return [f"rejects report header is {records[:1]}, not line,field,message"], None
    try:
        lines = [int(r[0]) for r in records[1:]]
    except (ValueError, IndexError) as e:
        return [f"rejects report has a bad line number: {e}"], None
    problems = []
    if len(lines) != len(set(lines)) or set(lines) != upload.report_lines():
        problems.append(f"rejects report lists lines {sorted(lines)[:10]}, the invalid rows "
                        f"are on {sorted(upload.report_lines())}")
    return problems, hashlib.sha256(data).hexdigest()


class Checker:
    """Collects the findings of the final checks: category -> [(job id or file, detail)]."""

    def __init__(self, stack, api, workload, dashboard, chaos, histogram):
        self.stack, self.api, self.workload, self.dashboard, self.chaos = (
            stack, api, workload, dashboard, chaos)
        self.histogram = histogram  # age -> seeded students (imported ones left out)
        self.orphan_uploads = []  # uploads of no job, allowed (a cut request's)
        self.endings_of = {}  # job id -> its status in the table at the end
        self.took = {}  # job id -> seconds from its first start to its end
        self.exports_with_imports = 0  # succeeded exports holding rows imported meanwhile
        self.late_cancels = []  # imports that ended as if never cancelled after a 202
        self.found = {check: [] for check in CHECKS}
        self.logs = {p: p.read_text(errors="replace").splitlines()
                     for p in sorted(stack.logs.glob("*.log"))}

    def add(self, check, subject, detail):
        self.found[check].append((subject, detail))

    def evidence(self, job_id, limit=4):
        """The last log lines about a job (GET requests left out)."""
        lines = [f"{p.stem}: {line}" for p, text in self.logs.items() for line in text
                 if job_id in line and '"GET ' not in line]
        return lines[-limit:]

    def expected_rows(self, params):
        low, high = params.get("min_age", 0), params.get("max_age", 150)
        return sum(n for age, n in self.histogram.items() if low <= age <= high)

    async def run(self):
        rows = self.stack.pg.sql_now(
            "SELECT row_to_json(j) FROM (SELECT id, kind, status, error, params, result, "
            "extract(epoch FROM finished_at) AS finished, attempts, "
            "extract(epoch FROM run_after - now()) AS due_in, "
            "extract(epoch FROM finished_at - started_at) AS took FROM jobs) j")
        db = {}
        for job in (json.loads(r[0]) for r in rows):
            job["params"] = json.loads(job["params"] or "{}")
            job["result"] = json.loads(job["result"] or "null")
            db[job["id"]] = job
        self.endings_of = {job_id: job["status"] for job_id, job in db.items()}
        self.took = {job_id: job["took"] for job_id, job in db.items() if job["took"]}
        self.endings(db)
        self.subscribers(db)
        self.doubles(db)
        exports = {job_id: job["finished"] for job_id, job in db.items()
                   if job["status"] == "succeeded" and not job["params"].get("upload")}
        named = await self.files(exports)
        named |= await self.imports(db)
        self.leftovers(db, named)
        for job_id, (waited, began, idle) in sorted(self.chaos.monitor.stalls.items()):
            self.add("stalls", job_id, f"due in the queue {waited:.1f}s from {began:.1f}s "
                     f"while {idle} worker slot(s) stood idle")
        for name, detail in self.chaos.slow_stops:
            self.add("slow stops", name, detail)
        return self.found

    def endings(self, db):
        for job in self.workload.jobs.values():
            row = db.get(job.id)
            status = row["status"] if row else "missing"
            what = f"{job.upload.describe()}; " if job.upload else ""
            if status not in TERMINAL:
                due = (f", due in {row['due_in']:.1f}s" if row and status == "queued"
                       else "")
                tried = f" after {row['attempts']} attempts" if row else ""
                self.add("lost", job.id, f"{what}{status}{tried}{due}; cancels: "
                         f"{job.cancels or 'none'}")
            elif status not in job.expected_endings():
                self.add("wrong endings", job.id, f"{what}ended {status} (error: "
                         f"{row['error']}); cancels: {job.cancels or 'none'}")
            elif job.upload and "accepted" in job.cancels and status != "cancelled":
                self.late_cancels.append(job.id)
        for job_id, what in self.workload.merged:
            self.add("lost", job_id, f"the submission of {what} was answered with this job, "
                     "which another submission made")

    def subscribers(self, db):
        for job in self.workload.jobs.values():
            final = db.get(job.id, {}).get("status")
            watch = self.workload.watches[job.id]
            seen = watch.status(job.id)
            if final in TERMINAL and seen != final:
                errors = f" (error frames: {watch.errors})" if watch.errors else ""
                self.add("missed endings", job.id,
                         f"follower last saw {seen}, the job ended {final}{errors}")
        since, dashboard = self.dashboard.connected_since, self.dashboard.watch
        errors = f" (error frames: {dashboard.errors})" if dashboard.errors else ""
        for job in self.workload.jobs.values():
            row = db.get(job.id, {})
            seen = dashboard.status(job.id)
            if (since is not None and row.get("status") in TERMINAL
                    and (row.get("finished") or 0) > since + 1 and seen != row["status"]):
                self.add("missed endings", job.id, f"dashboard last saw {seen}, the job "
                         f"ended {row['status']} while it was connected{errors}")
        watches = [(w, "follower") for w in self.workload.watches.values()]
        for watch, who in watches + [(self.dashboard.watch, "dashboard")]:
            for job_id, earlier, later in watch.backwards:
                self.add("seq backwards", job_id, f"{who}: seq {later} after {earlier}")

    def doubles(self, db):
        logged = collections.Counter(m.group(1) for text in self.logs.values() for line in text
                                     if (m := SUCCEEDED_LINE.search(line)))
        for job_id, n in logged.items():
            if n > 1:
                self.add("double completions", job_id, f"'succeeded' logged {n} times")
        uploads = {job["params"].get("upload") for job in db.values()}
        by_job = collections.defaultdict(list)
        for path in self.stack.exports.iterdir():
            m = re.search(UUID, path.name)
            if m and not path.name.startswith(".") and path.name not in uploads:
                by_job[m.group(0)].append(path.name)
        for job_id, names in by_job.items():
            if len(names) > 1:
                self.add("double completions", job_id, f"files {names}")

    async def files(self, succeeded):
        """Checks every succeeded export's file and download (`succeeded`: job id -> when
        it ended); returns the file names their results name."""
        named = set()
        loop = asyncio.get_running_loop()
        context = multiprocessing.get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(2, mp_context=context) as pool:
            checks = []
            for job_id, finished in sorted(succeeded.items()):
                reply = await self.api.call("GET", f"/api/jobs/{job_id}")
                view = reply.json() or {}
                result, params = view.get("result") or {}, view.get("params") or {}
                name = result.get("file") or ""
                if not name or "/" in name or name.startswith("."):
                    self.add("corrupt files", job_id, f"result names no usable file: {result}")
                    continue
                named.add(name)
                path = self.stack.exports / name
                checks.append((job_id, result, loop.run_in_executor(
                    pool, verify_file, str(path), result, params, self.expected_rows(params),
                    finished)))
            for job_id, result, check in checks:
                problems, imported = await check
                self.exports_with_imports += imported > 0
                for problem in problems:
                    self.add("corrupt files", job_id, problem)
                status, digest = await self.api.download_sha256(f"/api/jobs/{job_id}/download")
                if status != 200 or digest != result.get("sha256"):
                    self.add("corrupt files", job_id, f"download: status {status}, sha256 "
                             f"{'differs' if status == 200 else digest}")
        return named

    async def imports(self, db):
        """Checks every import: its rows in `students` (each name once, as many as its
        ending says, the right ones with the right ages), its upload, and its rejects
        report; returns the names of the reports their results name."""
        imported = collections.defaultdict(collections.Counter)  # import -> row -> count
        ages = {}  # (import, row) -> age
        names = self.stack.pg.sql_now(
            f"SELECT name, age FROM students WHERE name LIKE '{IMPORT_PREFIX}%'")
        for name, age in names:
            number, _, row = name.removeprefix(IMPORT_PREFIX).partition("-")
            key = (int(number), int(row))
            imported[key[0]][key[1]] += 1
            ages[key] = int(age)
        for number, rows in sorted(imported.items()):
            for row, n in sorted(rows.items()):
                if n > 1:
                    self.add("double inserts", f"{IMPORT_PREFIX}{number}-{row}",
                             f"{n} times in students (import {number}: job "
                             f"{self.import_job(number) or 'none'})")
        accepted = {job.upload.number: job for job in self.workload.jobs.values()
                    if job.upload}
        for number in sorted(set(imported) - set(accepted)):
            self.add("wrong import counts", f"import {number}",
                     f"{sum(imported[number].values())} rows in students, but it was "
                     "never accepted")
        named = set()
        for number, job in sorted(accepted.items()):
            row = db.get(job.id) or {}
            rows = imported.get(number, collections.Counter())
            for problem in self.import_counts(job.upload, row, rows, ages):
                self.add("wrong import counts", job.id, f"{job.upload.describe()}, "
                         f"{row.get('status')}: {problem}")
            for problem in await self.import_files(job, row, named):
                self.add("corrupt files", job.id, f"{job.upload.describe()}: {problem}")
        return named

    def import_job(self, number):
        return next((job.id for job in self.workload.jobs.values()
                     if job.upload and job.upload.number == number), None)

    @staticmethod
    def import_counts(upload, row, rows, ages):
        """What is wrong with the rows an import left in `students` (`rows`: its row
        numbers -> how many times each is there)."""
        status, result = row.get("status"), row.get("result") or {}
        in_table = sum(rows.values())
        problems = []
        if bad := sorted(i for i in rows if i in upload.invalid or i >= upload.rows):
            problems.append(f"rows inserted that the file has not as valid: {bad[:10]}")
        if wrong := sorted(i for i in rows if i < upload.rows and i not in upload.invalid
                           and ages[(upload.number, i)] != upload.ages[i]):
            problems.append(f"rows with another age than the file's: {wrong[:10]}")
        if status == "succeeded":
            if in_table != result.get("inserted") or in_table != len(upload.valid):
                problems.append(f"{in_table} rows in students; result.inserted "
                                f"{result.get('inserted')}, valid rows {len(upload.valid)}")
            if (result.get("rows"), result.get("rejected")) != (upload.rows, len(upload.invalid)):
                problems.append(f"result counts rows {result.get('rows')}, rejected "
                                f"{result.get('rejected')}; the file has {upload.rows} rows, "
                                f"{len(upload.invalid)} invalid")
        elif upload.mode == "all_or_nothing":
            if in_table:
                problems.append(f"{in_table} rows in students although it did not succeed")
        elif set(rows) != set(upload.valid[:len(rows)]) or in_table > len(upload.valid):
            problems.append(f"{in_table} rows in students, not the first of its "
                            f"{len(upload.valid)} valid rows")
        if (status == "failed" and upload.refused
                and (result.get("inserted"), result.get("rejected")) != (0, len(upload.invalid))):
            problems.append(f"result says inserted {result.get('inserted')}, rejected "
                            f"{result.get('rejected')}; the file has {len(upload.invalid)} "
                            "invalid rows")
        return problems

    async def import_files(self, job, row, named):
        """What is wrong with an import's upload and rejects report; adds the report's
        name to `named`."""
        upload, result = job.upload, row.get("result") or {}
        problems = []
        name = (row.get("params") or {}).get("upload") or ""
        if not UPLOAD_NAME.match(name) or not name.startswith(job.id) or name.startswith("."):
            problems.append(f"params name no upload of its own: {name!r}")
        else:
            try:
                data = (self.stack.exports / name).read_bytes()
                if hashlib.sha256(data).hexdigest() != upload.sha256:
                    problems.append(f"upload {name} is not the file sent")
            except OSError as e:
                problems.append(f"upload gone while its job exists: {e}")
        report = result.get("file")
        if report is not None:
            named.add(report)
        if row.get("status") not in ("succeeded", "failed"):
            return problems  # cancelled (or lost): no report to check
        if report is None:
            if upload.invalid:
                problems.append(f"result names no rejects report: {result}")
            return problems
        if "/" in report or report.startswith(".") or not report.startswith(job.id):
            return problems + [f"result names no usable report: {result}"]
        if not upload.invalid:
            problems.append(f"a rejects report {report} although every row is valid")
        loop = asyncio.get_running_loop()
        found, digest = await loop.run_in_executor(
            None, verify_report, str(self.stack.exports / report), upload)
        problems += found
        if digest is not None:
            status, downloaded = await self.api.download_sha256(f"/api/jobs/{job.id}/download")
            if status != 200 or downloaded != digest:
                problems.append(f"report download: status {status}, sha256 "
                                f"{'differs' if status == 200 else downloaded}")
        return problems

    def leftovers(self, db, named):
        """Files no job may own: temporary files, and files that neither a result names
        (`named`) nor an existing job names as its upload. An upload of no job (of a
        request cut by kill_serve; roster keeps it for the grace) is allowed, as many as
        import requests got no answer."""
        uploads = {job["params"].get("upload") for job in db.values()}
        strays = []
        for path in sorted(self.stack.exports.iterdir()):
            m = UPLOAD_NAME.match(path.name)
            if path.name in named or path.name in uploads:
                continue
            if m and m.group(1) not in db and time.time() - path.stat().st_mtime < (
                    UPLOAD_GRACE_SECS):
                strays.append(path.name)
            elif path.name.startswith(".") or path.name.endswith(".part"):
                self.add("leftover files", path.name, "temporary file left behind")
            else:
                self.add("leftover files", path.name,
                         "no job's result names it, nor any job as its upload")
        allowed = self.workload.unanswered_imports
        if len(strays) > allowed:
            for name in strays:
                self.add("leftover files", name, f"upload of no job ({len(strays)} such, "
                         f"{allowed} import requests got no answer)")
        else:
            self.orphan_uploads = strays


# ----------------------------------------------------------------------------- summary


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
    clean_times = [r.elapsed for r in clean if r.elapsed is not None]
    goal = LEASE_SECS + 5
    lines = [
        f"back in the queue: {len(released)} jobs: {spread(released)}",
        f"running again: {len(times)} jobs: {spread(times)}{never} (includes waiting for a "
        "free worker slot; the stalls check says none stood idle meanwhile)",
    ]
    if clean_released:
        met = "met" if percentile(clean_released, 99) <= goal else "MISSED"
        lines.append(f"back in the queue, no database/Redis fault meanwhile: "
                     f"{len(clean_released)} jobs: {spread(clean_released)}; "
                     f"goal p99 <= {goal}s {met}")
    if clean_times:
        lines.append(f"running again, no database/Redis fault meanwhile: {len(clean_times)} "
                     f"jobs: {spread(clean_times)}")
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


def print_summary(checker, recoveries):
    found, chaos, workload, stack = checker.found, checker.chaos, checker.workload, checker.stack
    print("\n== faults ==")
    for kind in FAULTS:
        skipped = f" (skipped {chaos.skipped[kind]})" if chaos.skipped[kind] else ""
        print(f"  {kind:<16}{chaos.counts[kind]:>5}{skipped}")
    jobs = workload.jobs.values()
    print(f"\n== jobs ==\n  accepted {len(jobs)}, cancel answered 202 for "
          f"{sum('accepted' in j.cancels for j in jobs)}, 409 for "
          f"{sum('conflict' in j.cancels for j in jobs)}; submissions retried {workload.retried}, "
          f"never accepted {workload.not_accepted}")
    for line in import_summary(checker):
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
          f"error frames {dict(collections.Counter(dashboard.errors))}")
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
        f"students {args.students}{', quick' if args.quick else ''}; lease {LEASE_SECS}s, "
        f"{WORKERS} workers x 2, {stack.batch_rows} rows per export batch, "
        f"{IMPORT_BATCH_ROWS} per import batch",
        f"- took {elapsed:.0f}s; {len(workload.jobs)} jobs accepted",
        *(f"- {line}" for line in import_summary(checker)),
        "",
        "| fault | count |",
        "|---|---:|",
        *(f"| {kind} | {chaos.counts[kind]} |" for kind in FAULTS),
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


# ----------------------------------------------------------------------------- main


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
    await asyncio.gather(workload.run(args.jobs, duration * 0.9), chaos.run(args.faults, duration))
    say("faults over; restoring anything down")
    await stack.restore()
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
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
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


if __name__ == "__main__":
    main()
