"""The watchers: a WebSocket follower of each job (`/ws/jobs/{id}`, reconnecting until
it sees an ending) and one dashboard session on `/ws` subscribed to "*"; each one's
`Watch` keeps what it was told (every frame's seq and what it said, the last status,
seq going backwards, error frames)."""

import asyncio
import collections
import contextlib
import json
import time

from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import WebSocketException

from .settings import TERMINAL


def meaning(msg, kind=None):
    """What a frame (or a job's view, given `kind`) says the job was at its seq:
    (type, status, done, total, cancel_requested), None where it does not say. A progress
    event is written only while the job runs."""
    kind = kind or msg.get("type")
    if kind == "progress":
        return ("progress", "running", msg.get("done"), msg.get("total"), None)
    job = (msg.get("job") or {}) if kind in ("status", "snapshot") else msg
    progress = job.get("progress") or {}
    status = job.get("status")
    if kind == "status" and msg.get("status") != status:
        status = f"{msg.get('status')} (its job says {status})"
    return (kind, status, progress.get("done"), progress.get("total"),
            job.get("cancel_requested"))


class Watch:
    """What one subscriber knows: each job's status with the highest seq seen, what each
    (job, seq) was said to be, the progress it last saw, any seq lower than an earlier one
    on the same connection, and the error frames it got."""

    def __init__(self):
        self.known = {}  # job id -> (seq, status)
        self.said = collections.defaultdict(set)  # (job id, seq) -> {meaning(frame)}
        self.progress = {}  # job id -> (seq, done) of the latest frame that told it
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
        said = meaning(msg)
        self.said[(job_id, seq)].add(said)
        if isinstance(said[2], int) and seq >= self.progress.get(job_id, (-1, 0))[0]:
            self.progress[job_id] = (seq, said[2])
        last = self._connection.get(job_id)
        if last is not None and seq < last:
            self.backwards.append((job_id, last, seq))
        self._connection[job_id] = max(seq, last if last is not None else seq)
        known = self.known.get(job_id)
        if status and (known is None or seq >= known[0]):
            self.known[job_id] = (seq, status)

    def status(self, job_id):
        return self.known.get(job_id, (None, None))[1]

    def done(self, job_id):
        """The rows or items done by the latest progress this subscriber saw (0: none)."""
        return self.progress.get(job_id, (None, 0))[1]


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
