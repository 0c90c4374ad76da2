"""The faults: each kind (kill -9, SIGSTOP, SIGTERM of a worker, Redis killed and
restarted with or without its data, PostgreSQL restarted, the jobs table locked, the pool
exhausted, a cancel racing a kill, the web process killed), planned at random and injected
one or two at a time."""

import asyncio
import collections
import contextlib
import signal
import time

from .common import say
from .monitor import outage
from .settings import (FAULTS, FIRST_TERM_LIMIT_SECS, LEASE_SECS, POLL_SECS,
                       SECOND_TERM_LIMIT_SECS)


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
