"""The checks at the end of the run: the `Checker` reads the jobs table, the attempts, the
files, the logs and what the workload, the watchers, the monitor and the queue pauses saw,
and collects the findings of each check (lost jobs, stalls, double completions, files,
imports, endings, subscribers, events that describe no committed state, cancels of
imports mid-batch, slow stops, jobs started before they were due, attempts on a process
not serving the job's queue, jobs started while their queue was paused)."""

import asyncio
import bisect
import collections
import concurrent.futures
import hashlib
import json
import multiprocessing
import re
import time

from .common import owner_pid
from .files import verify_file, verify_report
from .watchers import meaning
from .settings import (CHECKS, DELAY_SLACK_SECS, IMPORT_PREFIX, PAUSE_SLACK_SECS,
                       SUCCEEDED_LINE, TERMINAL, TIME_ROUNDING_SECS, UPLOAD_GRACE_SECS,
                       UPLOAD_NAME, UUID)


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
        self.imported = {}  # import number -> its row numbers in students -> how many times
        self.frames_checked = 0  # (job, seq) pairs the watchers were told of, all checked
        self.mid_batch = collections.Counter()  # (mode, "planned" | "landed" | ending) -> n
        self.attempts = []  # (job id, worker, number, started: epoch seconds, job's queue)
        self.early_checked = 0  # jobs whose first start was compared with their run_after
        self.delayed_checked = 0  # of them, delayed ones (run_in or run_at)
        self.delayed_unknown = 0  # delayed jobs whose run_after as accepted is not known
        self.windows_checked = 0  # pause windows whose both ends are known
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
            "extract(epoch FROM finished_at) AS finished, attempts, seq, progress_done, "
            "progress_total, cancel_requested, "
            "extract(epoch FROM run_after - (now() AT TIME ZONE 'UTC')) AS due_in, "
            "queue, priority, (queue IN (SELECT queue FROM queue_pauses)) AS paused, "
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
        await self.committed_events(db)
        self.mid_batch_cancels(db)
        for job_id, (waited, began, idle) in sorted(self.chaos.monitor.stalls.items()):
            self.add("stalls", job_id, f"due in the queue {waited:.1f}s from {began:.1f}s "
                     f"while {idle} stood idle")
        for name, detail in self.chaos.slow_stops:
            self.add("slow stops", name, detail)
        self.attempts = [
            (r[0], r[1], int(r[2]), float(r[3]), r[4]) for r in self.stack.pg.sql_now(
                "SELECT a.job_id, a.worker, a.number, extract(epoch FROM a.started_at), "
                "j.queue FROM job_attempts a JOIN jobs j ON j.id = a.job_id "
                "ORDER BY a.job_id, a.number")]
        self.ran_early()
        self.wrong_queue(db)
        self.ran_while_paused()
        return self.found

    def endings(self, db):
        for job in self.workload.jobs.values():
            row = db.get(job.id)
            status = row["status"] if row else "missing"
            what = f"{job.upload.describe()}; " if job.upload else ""
            if status not in TERMINAL:
                due = (f", due in {row['due_in']:.1f}s" if row and status == "queued"
                       else "")
                if row and row.get("paused"):
                    due += f", its queue {row['queue']} still paused"
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
        self.imported = imported
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

    async def final_views(self, db):
        """Each job's final row as `GET /api/jobs/{id}` shows it now (the table's row when
        that is not answered)."""
        views = {}
        for job_id, row in sorted(db.items()):
            reply = await self.api.call("GET", f"/api/jobs/{job_id}")
            view = reply.json() if reply.status == 200 else None
            if not isinstance(view, dict) or not isinstance(view.get("seq"), int):
                view = {"status": row["status"], "seq": row["seq"],
                        "progress": {"done": row["progress_done"],
                                     "total": row["progress_total"]},
                        "cancel_requested": row["cancel_requested"]}
            views[job_id] = view
        return views

    def watchers(self):
        """(who, Watch) of every subscriber the run had: each job's follower, the dashboard."""
        return ([("follower", watch) for watch in self.workload.watches.values()]
                + [("dashboard", self.dashboard.watch)])

    async def committed_events(self, db):
        """Every event a watcher was told must describe a state its job committed (guarantee
        11: an event goes out only after the write that gave it its seq commits). So: no
        (job, seq) told with two meanings (a progress and a status, two statuses, two
        progress values, two cancel marks), by one watcher or several, nor by a cancel's
        202 answer (the job as the cancel left it); no seq beyond the job's final row's;
        what is told at the final seq is the final row; the ending each watcher knows is
        the final row's status at its seq; and the progress told of a `skip_invalid`
        import covers no more valid rows than it left in `students` (each batch commits
        with its progress, so a progress whose batch rolled back would say more)."""
        finals = await self.final_views(db)
        heard = collections.defaultdict(list)  # (job id, seq) -> [(meaning, who)]
        for who, watch in self.watchers():
            for key, meanings in watch.said.items():
                heard[key] += [(m, who) for m in meanings]
        for job in self.workload.jobs.values():
            for view in job.cancel_views:
                if isinstance(view.get("seq"), int):
                    heard[(job.id, view["seq"])].append(
                        (meaning(view, "cancel answer"), "cancel 202"))
        self.frames_checked = len(heard)
        most_done = {}  # job id -> (the most done told, seq, who)
        for (job_id, seq), told in sorted(heard.items()):
            final = finals.get(job_id)
            problems = []
            kinds = {m[0] for m, _ in told}
            if {"progress", "status"} <= kinds:
                problems.append("told as a progress and as a status")
            for index, field in enumerate(("status", "done", "total", "cancel_requested"), 1):
                values = {m[index] for m, _ in told if m[index] is not None}
                if len(values) > 1:
                    problems.append(f"{field} told as {sorted(values, key=str)}")
            if final is not None and seq > final["seq"]:
                problems.append(f"beyond the final row's seq {final['seq']}")
            elif final is not None and seq == final["seq"]:
                row = meaning(final, "row")
                if any(m[0] == "progress" or any(
                        m[i] is not None and m[i] != row[i] for i in range(1, 5))
                       for m, _ in told):
                    problems.append(f"the final row at this seq is {row[1:]}")
            if problems:
                said = "; ".join(sorted({f"{who}: {m[0]} {m[1:]}" for m, who in told}))
                self.add("uncommitted events", job_id,
                         f"seq {seq}: {', '.join(problems)} ({said[:400]})")
            for m, who in told:
                if isinstance(m[2], int) and m[2] > most_done.get(job_id, (-1,))[0]:
                    most_done[job_id] = (m[2], seq, who)
        for who, watch in self.watchers():
            for job_id, (seq, status) in sorted(watch.known.items()):
                final = finals.get(job_id)
                if (status in TERMINAL and final is not None
                        and (seq, status) != (final["seq"], final["status"])):
                    self.add("uncommitted events", job_id,
                             f"{who} knows the ending {status} at seq {seq}; the final row "
                             f"is {final['status']} at seq {final['seq']}")
        for job in self.workload.jobs.values():
            upload = job.upload
            if not upload or upload.mode != "skip_invalid" or job.id not in most_done:
                continue
            done, seq, who = most_done[job.id]
            covered = bisect.bisect_left(upload.valid, done)  # valid rows among the first done
            in_table = len(self.imported.get(upload.number, ()))
            if covered > in_table:
                self.add("uncommitted events", job.id,
                         f"{upload.describe()}: {who} was told {done} rows done (seq {seq}), "
                         f"{covered} valid ones, but {in_table} are in students "
                         f"({(db.get(job.id) or {}).get('status')})")

    def mid_batch_cancels(self, db):
        """The imports cancelled while they ran with rows done and rows left (a cancel
        answered 202 showing it so), and those planned to be: each ends `cancelled` (one
        whose cancel was answered at rows done short of all of them has no other ending;
        one whose cancel was answered 409 or after every row ends as if never cancelled);
        its follower and the dashboard (connected as it ended) know that ending; an
        all_or_nothing one that ended cancelled left no row in `students`; a skip_invalid
        one left no row twice, and the first of its valid rows only. And the run cancelled
        at least one import of each mode mid-batch that it planned to."""
        since, dashboard = self.dashboard.connected_since, self.dashboard.watch
        planned, landed = collections.Counter(), collections.Counter()
        for job in self.workload.jobs.values():
            upload, done_at = job.upload, job.cancelled_mid_batch()
            if not upload or not (job.mid_batch or done_at is not None):
                continue
            row = db.get(job.id) or {}
            status = row.get("status")
            rows = self.imported.get(upload.number, collections.Counter())
            planned[upload.mode] += job.mid_batch
            landed[upload.mode] += done_at is not None
            self.mid_batch[(upload.mode, status)] += 1
            what = (f"{upload.describe()}, cancels {job.cancels or 'none'}"
                    + (f" (202 at {done_at} rows done)" if done_at is not None else ""))
            problems = []
            if done_at is not None and status != "cancelled":
                problems.append(f"ended {status}, though its cancel was answered while "
                                f"{upload.rows - done_at} rows were left")
            elif status not in {"cancelled"} | job.expected_endings():
                problems.append(f"ended {status}")
            if status in TERMINAL:
                seen = self.workload.watches[job.id].status(job.id)
                if seen != status:
                    problems.append(f"its follower knows {seen}")
                if (since is not None and (row.get("finished") or 0) > since + 1
                        and dashboard.status(job.id) != status):
                    problems.append(f"the dashboard knows {dashboard.status(job.id)}")
            if upload.mode == "all_or_nothing" and status == "cancelled" and rows:
                problems.append(f"{sum(rows.values())} rows in students")
            if upload.mode == "skip_invalid":
                if twice := sorted(i for i, n in rows.items() if n > 1):
                    problems.append(f"rows in students twice: {twice[:10]}")
                if set(rows) != set(upload.valid[:len(rows)]):
                    problems.append(f"{len(rows)} rows in students, not the first of its "
                                    f"{len(upload.valid)} valid rows")
            for problem in problems:
                self.add("mid-batch cancels", job.id, f"{what}: {problem}")
        self.mid_batch.update({(mode, "planned"): n for mode, n in planned.items()})
        self.mid_batch.update({(mode, "landed"): n for mode, n in landed.items()})
        for mode in sorted(planned):
            if not landed[mode]:
                self.add("mid-batch cancels", f"{mode} imports",
                         f"{planned[mode]} planned to be cancelled mid-batch, none was "
                         "(no cancel answered 202 while rows were done and left)")

    def first_starts(self):
        """job id -> when its first attempt started (epoch seconds, the database's clock)."""
        first = {}
        for job_id, _, _, started, _ in self.attempts:
            first[job_id] = min(started, first.get(job_id, started))
        return first

    def ran_early(self):
        """No job started before its run_after as first accepted: the accept's answer's
        (the row as committed, before any attempt), else the monitor's first sight of the
        row queued before any attempt; both, and the attempts' starts, on the database's
        clock. So that a runtime that dropped the delay cannot pass: a delayed job's
        accepted run_after is no earlier than asked (the first request's send time +
        run_in, or run_at; this host's clock is the database's)."""
        first, monitor = self.first_starts(), self.chaos.monitor
        for job in self.workload.jobs.values():
            due = job.accepted_due
            source = "the accept's answer"
            if due is None:
                due, source = monitor.first_due.get(job.id), "first seen"
            if due is None:
                self.delayed_unknown += job.asked_due is not None
                continue
            if job.asked_due is not None and due < job.asked_due - DELAY_SLACK_SECS:
                self.add("ran early", job.id,
                         f"accepted due {job.asked_due - due:.3f}s before asked "
                         f"({job.dispatch}; run_after as {source})")
            started = first.get(job.id)
            if started is None:
                continue
            self.early_checked += 1
            self.delayed_checked += job.asked_due is not None
            if started < due - TIME_ROUNDING_SECS:
                self.add("ran early", job.id,
                         f"first attempt started {due - started:.3f}s before its run_after "
                         f"as accepted ({source}; {job.dispatch or 'not delayed'})")

    def wrong_queue(self, db):
        """Every job is in the queue it named (or the web process's, when it named none),
        and every attempt of every job ran on a worker process serving its queue: the
        process named in the attempt's `worker` (`<name>/<tag>`, the name holding the pid)
        was started by the harness with that queue in its environment, and says it serves
        it in the workers table (when the monitor saw its row). And every process's row
        names the queues it was started with."""
        for job in self.workload.jobs.values():
            row = db.get(job.id) or {}
            wrong = [f"{queue} ({where})" for where, queue in (
                ("the table", row.get("queue")), ("the accept's answer", job.accepted_queue))
                if queue is not None and queue != job.queue]
            if wrong:
                self.add("wrong queue", job.id, f"in queue {' and '.join(wrong)}; it asked "
                         f"for {job.dispatch.get('queue') or 'none: ' + job.queue}")
        given_to = self.stack.pid_queues
        declared = self.chaos.monitor.process_queues
        for job_id, worker, number, _, queue in self.attempts:
            name, pid = worker.rsplit("/", 1)[0], owner_pid(worker)
            given = given_to.get(pid, [])
            if not given:
                self.add("wrong queue", job_id, f"attempt {number} ran on {worker}, no "
                         f"worker process the harness started (queue {queue})")
            elif not any(queue in queues for _, queues in given):
                procs = "; ".join(f"{proc} serving {','.join(queues)}"
                                  for proc, queues in given)
                self.add("wrong queue", job_id, f"attempt {number} of a job of queue {queue} "
                         f"ran on {worker} ({procs})")
            if name in declared and queue not in declared[name]:
                self.add("wrong queue", job_id, f"attempt {number} of a job of queue {queue} "
                         f"ran on {name}, which says it serves {','.join(sorted(declared[name]))}")
        for name, queues in sorted(declared.items()):
            given = given_to.get(owner_pid(name), [])
            if not any(set(q) == queues for _, q in given):
                self.add("wrong queue", name, f"says it serves {','.join(sorted(queues))}; "
                         "started with " + ("; ".join(",".join(q) for _, q in given)
                                            or "nothing the harness knows"))

    def ran_while_paused(self):
        """No job started while its queue was paused: no attempt of a job of a queue began
        within a pause window of that queue (from its paused_at, as written, to the
        database's clock just before the resume was sent), beyond PAUSE_SLACK_SECS after
        its start (a claim whose transaction began just before the pause committed)."""
        windows = collections.defaultdict(list)
        for window in self.chaos.pause_windows:
            if window.start is not None and window.end is not None:
                windows[window.queue].append(window)
                self.windows_checked += 1
        for job_id, worker, number, started, queue in self.attempts:
            for window in windows.get(queue, ()):
                if window.holds(started, PAUSE_SLACK_SECS):
                    self.add("ran while paused", job_id,
                             f"attempt {number} on {worker} started {started - window.start:.2f}s "
                             f"into a pause of queue {queue} that lasted at least "
                             f"{window.end - window.start:.2f}s")

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
            except FileNotFoundError as e:
                # Removed once its import succeeded; kept for a retry otherwise.
                if row.get("status") != "succeeded":
                    problems.append(f"upload gone while its job may still need it: {e}")
            except OSError as e:
                problems.append(f"upload unreadable: {e}")
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
