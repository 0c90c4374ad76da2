"""The faults: each kind (kill -9, SIGSTOP, SIGTERM of a worker, Redis killed and
restarted with or without its data, PostgreSQL restarted, the jobs table locked, the pool
exhausted, a cancel racing a kill, the web process killed), planned at random and injected
one or two at a time; and, beside them at random moments of their own, queue pauses (a
queue paused for 1-6 s, then resumed), each one's window recorded on the database's clock.
Every queue is resumed before the final phase."""

import asyncio
import collections
import contextlib
import dataclasses
import signal
import time

from .common import epoch, say
from .monitor import PAUSES, outage
from .settings import (FAULTS, FIRST_TERM_LIMIT_SECS, LEASE_SECS, PAUSE_INTERVAL_SECS,
                       PAUSE_SECS, POLL_SECS, QUEUES, RESUME_ALL_SECS,
                       SECOND_TERM_LIMIT_SECS)


@dataclasses.dataclass
class PauseWindow:
    """A pause of `queue` the harness made. `start`: its paused_at (epoch seconds, the
    database's clock: the moment the pause was written); `end`: the database's clock read
    just before the resume was sent, so that [start, end] lies within the time the queue
    was paused (None: not known, the window is not checked)."""
    queue: str
    mono_start: float
    start: float | None = None
    end: float | None = None
    mono_end: float | None = None
    resumed: bool = False

    def holds(self, at, slack):
        """Whether `at` (the database's clock) lies in the window, beyond `slack` seconds
        after its start."""
        return (self.start is not None and self.end is not None
                and self.start + slack < at < self.end)


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
        self.pause_windows = []  # every PauseWindow, in order
        self.still_paused = []  # queues the table still showed paused after resume_all
        self.unsure_resumes = set()  # queues whose last resume was never answered

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

    async def pauses(self, duration):
        """Pauses a queue at random moments until `duration` is over (on average one every
        PAUSE_INTERVAL_SECS), whatever fault is under way; waits for the last to resume."""
        start, pauses = time.monotonic(), []
        while True:
            await asyncio.sleep(self.rng.uniform(0.25, 1.75) * PAUSE_INTERVAL_SECS)
            if time.monotonic() - start >= duration:
                break
            pauses.append(asyncio.create_task(self.pause_queue(self.rng.choice(QUEUES))))
        await asyncio.gather(*pauses)

    async def db_now(self):
        """The database's clock now (epoch seconds); this host's when the database does not
        answer (it runs on this host: the same clock)."""
        rows = await self.stack.pg.sql("SELECT extract(epoch FROM now())")
        with contextlib.suppress(TypeError, ValueError, IndexError):
            return float(rows[0][0])
        return time.time()

    async def queue_call(self, queue, action, seconds):
        """POST /api/queues/{queue}/{action} until it is answered 200 with the queue paused
        (pause) or not (resume), for up to `seconds`; the queue's view, or None."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            reply = await self.api.call("POST", f"/api/queues/{queue}/{action}")
            view = reply.json() if reply.status == 200 else None
            if isinstance(view, dict) and view.get("paused") == (action == "pause"):
                return view
            await asyncio.sleep(0.5)
        return None

    async def pause_queue(self, queue):
        """Pauses `queue` for PAUSE_SECS, then resumes it; records the window."""
        async with self.locks[f"queue {queue}"]:
            seconds = self.rng.uniform(*PAUSE_SECS)
            window = PauseWindow(queue, time.monotonic())
            self.pause_windows.append(window)
            # A resume of this queue never answered might still land now: until one is
            # answered, its windows say nothing (left unchecked).
            unsure = queue in self.unsure_resumes
            view = await self.queue_call(queue, "pause", 60)
            window.start = None if unsure else epoch((view or {}).get("paused_at"))
            if window.start is None and not unsure:  # not answered: the table says
                rows = await self.stack.pg.sql("SELECT extract(epoch FROM paused_at) FROM "
                                               f"queue_pauses WHERE queue = '{queue}'")
                with contextlib.suppress(TypeError, ValueError, IndexError):
                    window.start = float(rows[0][0])
            say(f"pause queue {queue} for {seconds:.1f}s"
                + ("" if view else " (pause not answered)"))
            await asyncio.sleep(seconds)
            window.end = await self.db_now()
            view = await self.queue_call(queue, "resume", RESUME_ALL_SECS)
            window.mono_end = time.monotonic()
            window.resumed = view is not None
            if window.resumed:
                self.unsure_resumes.discard(queue)
            else:
                self.unsure_resumes.add(queue)
            PAUSES.append((queue, window.mono_start, window.mono_end))
            self.counts["pause_queue"] += 1
            say(f"resume queue {queue}" + ("" if view else ": NOT ANSWERED"))

    async def resume_all(self):
        """Resumes every queue the table shows paused (each queue the run knows when the
        table does not answer), until it shows none paused; the queues still paused."""
        deadline = time.monotonic() + RESUME_ALL_SECS
        paused = set(QUEUES)
        while time.monotonic() < deadline:
            rows = await self.stack.pg.sql("SELECT queue FROM queue_pauses")
            if rows is not None:
                paused = {r[0] for r in rows if r and r[0]}
                if not paused:
                    return []
            for queue in sorted(paused if rows is not None else set(QUEUES) | paused):
                await self.api.call("POST", f"/api/queues/{queue}/resume")
            await asyncio.sleep(0.5)
        self.still_paused = sorted(paused)
        say(f"queues still paused after {RESUME_ALL_SECS}s of resuming: {self.still_paused}")
        return self.still_paused

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
        jobs wait whose wake-ups it may lose (consumers must find them in the table)."""
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
