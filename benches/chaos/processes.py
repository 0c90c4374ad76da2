"""The processes the harness starts and owns: a private PostgreSQL cluster, a private
Redis, and the roster processes (one `serve --no-workers`, the workers) in a temporary
directory; their start, restart, supervision (a process that exits by itself is
restarted and reported) and teardown. Each worker process serves the queues its
`Proc.queues` names (given it as ROSTER_QUEUES, or ROSTER_QUEUE + ROSTER_CONCURRENCY for
one queue); the Stack remembers which queues every pid it started was given."""

import asyncio
import contextlib
import datetime
import http.client
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from .common import free_port, run, say
from .settings import (HARNESS_PGOPTIONS, IMPORT_BATCH_ROWS, PG_BIN, SETTINGS,
                       STUDENTS_PER_BATCH_ROW, WORKER_QUEUES)


def queue_env(queues):
    """The environment that makes a worker serve `queues` (name -> workers): the one-queue
    spelling for one queue, ROSTER_QUEUES for several."""
    if len(queues) == 1:
        (name, n), = queues.items()
        return {"ROSTER_QUEUE": name, "ROSTER_CONCURRENCY": str(n)}
    return {"ROSTER_QUEUES": ",".join(f"{name}:{n}" for name, n in queues.items())}


def queue_spec(queues):
    return ",".join(f"{name}:{n}" for name, n in queues.items())


class Proc:
    """A child in its own process group, its output appended to a log file.

    `wanted` says whether the supervisor should keep it running."""

    def __init__(self, name, argv, log, env=None, queues=None, started=None):
        self.name, self.argv, self.log, self.env = name, argv, log, env
        # A worker's queues (name -> its workers there), as its environment gives them;
        # None for a process that runs no workers.
        self.queues = queues
        # Called with this Proc at each start (the Stack records the pid's queues).
        self.on_start = started
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
        if self.on_start:
            self.on_start(self)

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
        # The web process's and the CLI's environment: no queue variable, so a job that
        # names no queue goes to `default` (HOME_QUEUE).
        self.env = {
            **{k: v for k, v in os.environ.items()
               if k not in ("ROSTER_QUEUE", "ROSTER_QUEUES", "ROSTER_CONCURRENCY")},
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
        # Every pid a worker had -> [(its Proc's name, the queues it was given)]: a list,
        # should the system hand one pid to two of them in turn.
        self.pid_queues = {}
        self.workers = [Proc(f"worker-{i}", [roster, "worker"], self.logs / f"worker-{i}.log",
                             {**self.env, **queue_env(queues)}, dict(queues), self.started)
                        for i, queues in enumerate(WORKER_QUEUES, 1)]
        self.unexpected_exits = []
        self._torn_down = False

    def started(self, proc):
        self.pid_queues.setdefault(proc.pid, []).append((proc.name, dict(proc.queues)))

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
