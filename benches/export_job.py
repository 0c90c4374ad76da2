#!/usr/bin/env python3
"""Times one roster export, for benches/run.sh.

    export_job.py BASE_URL BODY PID TIMEOUT_SECONDS

POSTs BODY to BASE_URL/api/exports, then follows the job's event stream
(GET /api/jobs/{id}/events, Server-Sent Events) until its terminal status arrives, while
a thread samples VmRSS of PID every ~10 ms. Following the stream rather than polling
means the clock stops when roster announces the ending, not up to a polling interval
later. Prints one JSON line: {"seconds": wall time from the POST to the terminal event,
"peak_rss_kib": the largest VmRSS sampled, "job": the job read afterwards}. Exits 1 if
the job fails, is cancelled or runs out of time.
"""

import http.client
import json
import sys
import threading
import time
from urllib.parse import urlparse

SAMPLE_EVERY = 0.010
TERMINAL = ("succeeded", "failed", "cancelled")


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


class Sampler(threading.Thread):
    """The largest VmRSS of a process, sampled until stopped."""

    def __init__(self, pid):
        super().__init__(daemon=True)
        self.pid, self.peak, self.done = pid, rss_kib(pid), threading.Event()

    def run(self):
        while not self.done.wait(SAMPLE_EVERY):
            self.peak = max(self.peak, rss_kib(self.pid))


def ending(conn, path):
    """Reads the event stream at `path` until a terminal status; returns that status."""
    conn.request("GET", path, headers={"Accept": "text/event-stream"})
    reply = conn.getresponse()
    if reply.status != 200:
        sys.exit(f"GET {path} answered {reply.status}")
    while True:
        line = reply.readline()
        if not line:
            sys.exit("the event stream ended before the job did")
        if line.startswith(b"data:"):
            event = json.loads(line[5:])
            status = event.get("status") or event.get("job", {}).get("status")
            if status in TERMINAL:
                return status


def main():
    base, body, pid, limit = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
    url = urlparse(base)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=limit)
    sampler = Sampler(pid)
    sampler.start()

    started = time.perf_counter()
    conn.request("POST", "/api/exports", body, {"Content-Type": "application/json"})
    reply = conn.getresponse()
    job = json.loads(reply.read())
    if reply.status != 202:
        sys.exit(f"POST /api/exports answered {reply.status}: {job}")
    status = ending(conn, f"/api/jobs/{job['id']}/events")
    seconds = time.perf_counter() - started
    sampler.done.set()
    sampler.join()
    peak = max(sampler.peak, rss_kib(pid))

    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
    conn.request("GET", f"/api/jobs/{job['id']}")
    job = json.loads(conn.getresponse().read())
    if status != "succeeded":
        sys.exit(f"the job ended {status}: {job.get('error')}")
    print(json.dumps({"seconds": seconds, "peak_rss_kib": peak, "job": job}))


if __name__ == "__main__":
    main()
