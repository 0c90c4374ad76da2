"""The jobs table, watched: the Monitor polls every job's status, progress and lease
owner, times the recovery of the jobs a killed or paused worker held, and finds stalls;
the outages (database and Redis faults) that recovery times are read against."""

import asyncio
import collections
import contextlib
import dataclasses
import time

from .common import T0, owner_pid
from .settings import CONCURRENCY, POLL_SECS, STALL_SECS, TERMINAL, WORKER_WARMUP_SECS


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
        self.progress = {}  # job id -> its progress (done) in the table
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
                                     "(run_after <= now())::int, progress_done FROM jobs")
            if rows is not None:
                self.rows = {r[0]: (r[1], r[2]) for r in rows if len(r) == 5}
                self.progress = {r[0]: int(r[4]) for r in rows if len(r) == 5}
                self.due = {r[0] for r in rows if len(r) == 5 and r[1] == "queued"
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
