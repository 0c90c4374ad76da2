"""The watchers: a WebSocket follower of each job (`/ws/jobs/{id}`, reconnecting until
it sees an ending) and one dashboard session on `/ws` subscribed to "*"; each one's
`Watch` keeps what it was told (every frame's seq and what it said, the last status,
seq going backwards, error frames)."""

import asyncio
import contextlib
import json
import time

from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import WebSocketException

from .settings import TERMINAL


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
