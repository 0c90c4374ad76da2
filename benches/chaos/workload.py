"""The job mix and its submission: exports and imports (their CSV files, valid or with
invalid rows) submitted in bursts with idempotency keys, each sent to a queue (named, or
none: the web process's `default`), a share with a priority 0-9 and a share delayed
(`run_in` or `run_at` a few seconds ahead); a follower for each accepted job, and the
cancels: at once, while running, later, or of an import mid-batch (once its progress
shows rows done)."""

import asyncio
import collections
import dataclasses
import hashlib
import time
import urllib.parse

from .common import epoch, rfc3339, say
from .settings import (CANCEL_SHARE, DELAY_SECS, DELAY_SHARE, EXPORT_QUEUES, HOME_QUEUE,
                       IMPORT_QUEUES, PRIORITY_SHARE, RUN_AT_SHARE,
                       IMPORT_BATCHES, IMPORT_PREFIX, IMPORT_ROWS,
                       IMPORT_SHARE, INVALID_FILE_SHARE, INVALID_ROWS, MAX_FOLLOWERS,
                       MID_BATCH_MAX_ROWS, MID_BATCH_POLL_SECS, MID_BATCH_ROWS_FACTOR,
                       MID_BATCH_AGAIN_SECS, MID_BATCH_DELAY_SECS, MID_BATCH_SHARE,
                       MID_BATCH_TRIES,
                       MID_BATCH_WAIT_SECS, POLL_SECS,
                       TERMINAL)
from .watchers import Watch, follow


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
    # The job as each cancel answered 202 showed it (its seq, status and progress then).
    cancel_views: list = dataclasses.field(default_factory=list)
    mid_batch: bool = False  # an import planned to be cancelled once rows are done
    # Where and when it was asked to run: the request's `queue`, `priority`, `run_in` or
    # `run_at` (none of them: the defaults).
    dispatch: dict = dataclasses.field(default_factory=dict)
    # The earliest it may be due as asked (epoch seconds: the first request's send time +
    # run_in, or run_at; this host's clock, the database's too), None when not delayed.
    asked_due: float | None = None
    # Its run_after as accepted (the answer's, when it showed the job before any attempt;
    # the database's clock), and the queue the answer showed.
    accepted_due: float | None = None
    accepted_queue: str | None = None

    @property
    def queue(self):
        """The queue it must be in: the one it named, else the web process's."""
        return self.dispatch.get("queue") or HOME_QUEUE

    def cancelled_mid_batch(self):
        """The progress (done) with which a cancel of this import was answered 202 while
        it ran with rows done and rows left to do, or None."""
        for view in self.cancel_views:
            done = (view.get("progress") or {}).get("done")
            if (self.upload and view.get("status") == "running" and isinstance(done, int)
                    and 0 < done < self.upload.rows):
                return done
        return None

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

    def random_dispatch(self, is_import):
        """The dispatch fields of a request: a queue (or none) by the kind's shares, a
        priority 0-9 for a share, a delay of 1-5 s (`run_in`, or `run_at` as far ahead)
        for a share. `run_at` is filled in when the request is sent."""
        dispatch = {}
        shares = IMPORT_QUEUES if is_import else EXPORT_QUEUES
        queue = self.rng.choices([q for q, _ in shares], weights=[w for _, w in shares])[0]
        if queue:
            dispatch["queue"] = queue
        if self.rng.random() < PRIORITY_SHARE:
            dispatch["priority"] = self.rng.randint(0, 9)
        if self.rng.random() < DELAY_SHARE:
            seconds = self.rng.randint(*DELAY_SECS)
            if self.rng.random() < RUN_AT_SHARE:
                dispatch["run_at"] = seconds  # seconds ahead of the first send, for now
            else:
                dispatch["run_in"] = seconds
        return dispatch

    def bursts(self, count, duration):
        """Submission times: bursts of 1-8 jobs (up to more than the 6 workers take at
        once, so that jobs wait in their queue) at random moments."""
        times = []
        while len(times) < count:
            at = self.rng.uniform(0, duration)
            times += [at] * min(self.rng.randint(1, 8), count - len(times))
        return sorted(times)

    def import_shapes(self, count):
        """(mode, invalid rows, cancelled mid-batch) of `count` imports: the two modes, each
        with files that have invalid rows and files that have none, in turn, then one of
        each mode cancelled mid-batch (the all_or_nothing one valid: it would commit every
        row if it were not cancelled), then any, a share of them cancelled mid-batch; in
        random order."""
        shapes = []
        for i in range(count // 2 + 1):
            for mode in ("skip_invalid", "all_or_nothing"):
                if i < 2:
                    shapes.append((mode, i % 2 == 0, False))
                elif i == 2:
                    shapes.append((mode, mode == "skip_invalid"
                                   and self.rng.random() < INVALID_FILE_SHARE, True))
                else:
                    shapes.append((mode, self.rng.random() < INVALID_FILE_SHARE,
                                   self.rng.random() < MID_BATCH_SHARE))
        shapes = shapes[:count]
        self.rng.shuffle(shapes)
        return [(mode, self.rng.randint(1, 5) if invalid else 0, mid_batch)
                for mode, invalid, mid_batch in shapes]

    def random_import(self, mode, invalid, mid_batch=False):
        low, high = IMPORT_ROWS
        rows = min(high, max(low, self.import_unit * self.rng.randint(*IMPORT_BATCHES)))
        if mid_batch:  # long enough to be caught with rows done and rows left
            rows = min(MID_BATCH_MAX_ROWS, rows * MID_BATCH_ROWS_FACTOR)
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
            dispatch = self.random_dispatch(is_import)
            if is_import:
                mode, invalid, mid_batch = imports.pop()
                submission = self.submit(None, "mid_batch" if mid_batch else plan,
                                         upload=self.random_import(mode, invalid, mid_batch),
                                         dispatch=dispatch)
            else:
                submission = self.submit(self.random_params(), plan, dispatch=dispatch)
            submissions.append(asyncio.create_task(submission))
        await asyncio.gather(*submissions)

    async def submit(self, params, cancel_plan, upload=None, tries=MID_BATCH_TRIES,
                     dispatch=None):
        """Submits an export of `params`, or the import of `upload` (an ImportFile), with
        the dispatch fields `dispatch` (queue, priority, run_in; run_at: seconds ahead,
        made a time here); `tries`: of an import to cancel mid-batch, how many more may be
        submitted in its stead if this one is not caught with rows done and left."""
        # One key for the submission and its retries, as a careful client does: a retry
        # of a request whose answer was lost returns the job it made (200), not a second.
        key = {"Idempotency-Key": f"chaos-{self.rng.getrandbits(64):016x}"}
        dispatch, sent = dict(dispatch or {}), time.time()
        asked_due = None
        if "run_at" in dispatch:
            dispatch["run_at"] = rfc3339(sent + dispatch["run_at"])
            asked_due = epoch(dispatch["run_at"])
        elif "run_in" in dispatch:
            asked_due = sent + dispatch["run_in"]
        for _ in range(15):
            if upload is None:
                reply = await self.api.call("POST", "/api/exports", {**params, **dispatch},
                                            headers=key)
            else:
                query = urllib.parse.urlencode({"mode": upload.mode, **dispatch})
                reply = await self.api.call(
                    "POST", f"/api/imports?{query}", upload.data,
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
        job = self.jobs.setdefault(body["id"], Job(body["id"], params, upload=upload,
                                                   dispatch=dispatch, asked_due=asked_due))
        if job.upload is not upload or job.dispatch is not dispatch:
            what = upload.describe() if upload else f"export {params}"
            self.merged.append((job.id, what))
            say(f"submission of {what} answered with job {job.id}, another submission's")
        else:
            # The answer shows the row as accepted unless an attempt has begun since (a
            # retried request answered 200 later): then the monitor's first sight says.
            if reply.status == 202 or (body.get("attempts") == 0
                                       and body.get("status") == "queued"):
                job.accepted_due = epoch(body.get("run_after"))
            job.accepted_queue = body.get("queue")
            if cancel_plan == "mid_batch":
                job.mid_batch = True
        url = f"{self.ws_base}/ws/jobs/{job.id}"
        follower = follow(url, self.watches[job.id], job.id, self.slots)
        self.followers.append(asyncio.create_task(follower))
        if cancel_plan:
            await self.cancel_later(job, cancel_plan)
        if (cancel_plan == "mid_batch" and upload and job.upload is upload and tries > 1
                and job.cancelled_mid_batch() is None):
            later = self.rng.uniform(*MID_BATCH_AGAIN_SECS)
            say(f"{upload.describe()} (job {job.id}) not cancelled mid-batch (cancel "
                f"{job.cancels[-1] if job.cancels else 'never answered'}); another in its "
                f"stead in {later:.1f}s")
            await asyncio.sleep(later)
            again = self.random_import(upload.mode, len(upload.invalid), mid_batch=True)
            await self.submit(None, "mid_batch", upload=again, tries=tries - 1,
                              dispatch=self.random_dispatch(True))

    def rows_done(self, job):
        """The rows (items) done by `job` as its follower or the jobs table last showed."""
        return max(self.watches[job.id].done(job.id), self.monitor.progress.get(job.id, 0))

    async def cancel_later(self, job, plan):
        if plan == "running":
            deadline = time.monotonic() + 60
            while self.monitor.status(job.id) in (None, "queued") and time.monotonic() < deadline:
                await asyncio.sleep(POLL_SECS)
            await asyncio.sleep(self.rng.uniform(0, 1.5))
        elif plan == "later":
            await asyncio.sleep(self.rng.uniform(0.5, 8))
        elif plan == "mid_batch" and job.upload:
            # Once its progress shows rows done (its follower's, or the table's): its
            # batches are committing (skip_invalid) or being staged (all_or_nothing). An
            # import of 20,000 rows takes a few tenths of a second: no later.
            watch = self.watches[job.id]
            deadline = time.monotonic() + MID_BATCH_WAIT_SECS
            while (self.rows_done(job) == 0 and watch.status(job.id) not in TERMINAL
                   and self.monitor.status(job.id) not in TERMINAL
                   and time.monotonic() < deadline):
                await asyncio.sleep(MID_BATCH_POLL_SECS)
            await asyncio.sleep(self.rng.uniform(0, MID_BATCH_DELAY_SECS))
        await self.cancel(job)

    async def cancel(self, job):
        """POST cancel until it is answered 202 or 409; an answer lost on the way is
        noted as "unknown" (the cancel may have happened)."""
        for _ in range(10):
            reply = await self.api.call("POST", f"/api/jobs/{job.id}/cancel")
            if reply.status == 202:
                job.cancels.append("accepted")
                job.cancel_views.append(reply.json() or {})
                return
            if reply.status == 409:
                job.cancels.append("conflict")
                return
            if not reply.refused:
                job.cancels.append("unknown")
            await asyncio.sleep(1)
