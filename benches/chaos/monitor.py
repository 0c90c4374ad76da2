"""The jobs table, watched: the Monitor polls every job's status, progress, lease owner,
queue and whether that queue is paused, times the recovery of the jobs a killed or paused
worker held, and finds stalls (per queue: a due job of a queue that is not paused while a
slot of that queue stood idle); it also reads the workers table (which queues each
process says it serves) and notes each job's run_after as first seen before any attempt.
The outages (database and Redis faults) and queue pauses that recovery times are read
against."""

import asyncio
import collections
import contextlib
import dataclasses
import time

from .common import T0, owner_pid
from .settings import POLL_SECS, STALL_SECS, TERMINAL, WORKER_WARMUP_SECS, WORKERS_POLL_SECS


@dataclasses.dataclass
class Recovery:
    job_id: str
    owner: str
    fault: str
    started: float
    queue: str | None = None  # the job's queue: a pause of it holds its running again up
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


# Queue pauses, (queue, start, end) in monotonic time (from the pause's request to its
# resume's answer): a job of a paused queue does not run again until it is resumed.
PAUSES = []


def overlaps_outage(r, pauses=False):
    """Whether a database or Redis fault (or, with `pauses`, a pause of the job's queue)
    overlapped the recovery `r`."""
    end = r.started + (r.elapsed if r.elapsed is not None else float("inf"))
    if any(start < end and r.started < stop for start, stop in OUTAGES):
        return True
    return pauses and any(queue == r.queue and start < end and r.started < stop
                          for queue, start, stop in PAUSES)


class Monitor:
    """Polls the jobs table every 100 ms: each job's status, lease owner and queue, the
    recovery of the jobs a killed or paused worker held, and stalls: a job due in its
    queue, which is not paused, while a worker slot of that queue stood idle (guarantee
    10: it must be delivered within the redelivery interval of being due, whatever
    happened to its broker message). A job delayed (run_after ahead) is not due; a job of
    a paused queue (a row in `queue_pauses`, read in the same statement) is not either."""

    # One statement a poll (a psql each: two would double the load on a 2-core machine).
    # Times on the database's clock; roster stores UTC without a time zone.
    POLL = ("SELECT id, status, coalesce(lease_owner, ''), "
            "(run_after <= (now() AT TIME ZONE 'UTC'))::int, progress_done, queue, "
            "(queue IN (SELECT queue FROM queue_pauses))::int, attempts, "
            "extract(epoch FROM run_after) FROM jobs")

    def __init__(self, pg, workers):
        self.pg, self.workers = pg, workers
        self.rows = {}  # job id -> (status, lease owner)
        self.progress = {}  # job id -> its progress (done) in the table
        self.queue_of = {}  # job id -> its queue
        self.due = set()  # ids of the queued jobs whose run_after has come, queue not paused
        self.held_by_pause = set()  # ids of the queued jobs due but their queue paused
        # job id -> its run_after (epoch seconds, the database's clock) as first seen
        # queued before any attempt: when it was accepted to be due.
        self.first_due = {}
        # process name -> the queues it says it serves (the workers table's `queue`)
        self.process_queues = {}
        self.recoveries = []
        # job id -> seconds it has been due while some worker slot stood idle, unbroken
        self.idle_waits = collections.defaultdict(float)
        self.stalls = {}  # job id -> (longest idle wait seconds, when it began, idle slots)
        self.last_poll = None

    async def run(self):
        workers = asyncio.create_task(self.watch_workers())
        try:
            while True:
                at = time.monotonic()
                rows = await self.pg.sql(self.POLL)
                if rows is not None:
                    self._read(rows)
                    self._resolve(at)
                    self._stalls(at)
                else:
                    self.last_poll = None
                await asyncio.sleep(max(0.0, POLL_SECS - (time.monotonic() - at)))
        finally:
            workers.cancel()

    def _read(self, rows):
        rows = [r for r in rows if len(r) == 9]
        self.rows = {r[0]: (r[1], r[2]) for r in rows}
        self.progress = {r[0]: int(r[4]) for r in rows}
        self.queue_of = {r[0]: r[5] for r in rows}
        queued_due = [r for r in rows if r[1] == "queued" and r[3] == "1"]
        self.due = {r[0] for r in queued_due if r[6] == "0"}
        self.held_by_pause = {r[0] for r in queued_due if r[6] == "1"}
        for r in rows:
            if r[0] not in self.first_due and r[1] == "queued" and r[7] == "0":
                self.first_due[r[0]] = float(r[8])

    async def watch_workers(self):
        """Reads the workers table every WORKERS_POLL_SECS: which queues each process (by
        the name its attempts carry) says it serves. A row goes at a graceful stop, so
        every name seen is kept."""
        while True:
            rows = await self.pg.sql("SELECT name, queue FROM workers")
            for r in rows or []:
                if len(r) == 2:
                    self.process_queues[r[0]] = frozenset(q for q in r[1].split(",") if q)
            await asyncio.sleep(WORKERS_POLL_SECS)

    def idle_slots(self, at):
        """Worker slots free now, by queue: of the workers up (not paused, started a while
        ago), each queue's concurrency minus the jobs of that queue they run."""
        up = {w.pid: w for w in self.workers
              if w.running and not w.paused and at - w.started_at > WORKER_WARMUP_SECS}
        busy = collections.Counter(
            (owner_pid(owner), self.queue_of.get(job_id))
            for job_id, (status, owner) in self.rows.items()
            if status == "running" and owner_pid(owner) in up)
        idle = collections.Counter()
        for pid, w in up.items():
            for queue, n in (w.queues or {}).items():
                idle[queue] += max(0, n - busy[(pid, queue)])
        return idle

    def _stalls(self, at):
        elapsed, self.last_poll = (at - self.last_poll if self.last_poll else 0.0), at
        idle = self.idle_slots(at)
        for job_id in list(self.idle_waits):
            # Not due any more (running, ended, its queue paused): a later wait starts anew.
            if job_id not in self.due or idle[self.queue_of.get(job_id)] <= 0:
                del self.idle_waits[job_id]
        if ACTIVE_OUTAGES[0]:
            self.idle_waits.clear()
            return
        for job_id in self.due:
            free = idle[self.queue_of.get(job_id)]
            if free <= 0:
                # Only an unbroken stretch of idle capacity of its queue counts: under a
                # backlog, every slot a job frees stays free for a moment before the next
                # job is claimed.
                continue
            self.idle_waits[job_id] += elapsed
            waited = self.idle_waits[job_id]
            if waited > STALL_SECS and waited > self.stalls.get(job_id, (0,))[0]:
                began = self.stalls.get(job_id, (0, at - waited - T0))[1]
                self.stalls[job_id] = (waited, began,
                                       f"{free} slot(s) of queue {self.queue_of.get(job_id)}")

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
        self.recoveries += [Recovery(job_id, owner, fault, now, self.queue_of.get(job_id))
                            for job_id, owner in held]
