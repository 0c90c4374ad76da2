#!/usr/bin/env python3
"""Times one roster export, for benches/run.sh.

    export_job.py BASE_URL BODY PID TIMEOUT_SECONDS

POSTs BODY to BASE_URL/api/exports, then polls GET /api/jobs/{id} every ~20 ms (on one
kept-alive connection, so the poller costs the 2-core machine next to nothing) until the
job has succeeded, while sampling VmRSS of PID every ~10 ms. Prints one JSON line:
{"seconds": wall time from the POST to the `succeeded` read, "peak_rss_kib": the largest
VmRSS sampled, "job": the job}. Exits 1 if the job fails, is cancelled or runs out of time.
"""

import http.client
import json
import sys
import time
from urllib.parse import urlparse

POLL_EVERY = 0.020
SAMPLE_EVERY = 0.010


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def main():
    base, body, pid, limit = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
    url = urlparse(base)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
    peak = rss_kib(pid)

    started = time.perf_counter()
    conn.request("POST", "/api/exports", body, {"Content-Type": "application/json"})
    reply = conn.getresponse()
    job = json.loads(reply.read())
    if reply.status != 202:
        sys.exit(f"POST /api/exports answered {reply.status}: {job}")
    path = f"/api/jobs/{job['id']}"
    next_poll = started + POLL_EVERY
    while True:
        now = time.perf_counter()
        peak = max(peak, rss_kib(pid))
        if now >= next_poll:
            conn.request("GET", path)
            job = json.loads(conn.getresponse().read())
            if job["status"] == "succeeded":
                break
            if job["status"] in ("failed", "cancelled"):
                sys.exit(f"the job ended {job['status']}: {job.get('error')}")
            next_poll = now + POLL_EVERY
        if now - started > limit:
            sys.exit(f"the job is still {job['status']} after {limit} s")
        time.sleep(SAMPLE_EVERY)
    seconds = time.perf_counter() - started
    peak = max(peak, rss_kib(pid))
    print(json.dumps({"seconds": seconds, "peak_rss_kib": peak, "job": job}))


if __name__ == "__main__":
    main()
