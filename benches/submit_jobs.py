#!/usr/bin/env python3
"""Submits jobs one at a time, for benches/run.sh (enqueue -> start latency).

    submit_jobs.py BASE_URL BODY N GAP_MS

POSTs BODY to BASE_URL/api/exports N times on one kept-alive connection, each with an
Idempotency-Key of its own, waiting GAP_MS after each answer (nothing else is asked of
roster meanwhile: the system is idle when the next job arrives); then reads every job back
until it has ended. Exits 1 if a POST is refused or a job does not succeed.
"""

import http.client
import json
import os
import sys
import time
from urllib.parse import urlparse

ENDED = {"succeeded", "failed", "cancelled"}


def main():
    base, body, n, gap_ms = sys.argv[1:5]
    n, gap = int(n), float(gap_ms) / 1000
    url = urlparse(base)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
    ids = []
    for i in range(n):
        conn.request(
            "POST",
            "/api/exports",
            body=body,
            headers={
                "Content-Type": "application/json",
                "Idempotency-Key": f"latency-{os.getpid()}-{i}",
            },
        )
        res = conn.getresponse()
        answer = res.read()
        if res.status != 202:
            sys.exit(f"POST {i}: {res.status} {answer[:300]!r}")
        ids.append(json.loads(answer)["id"])
        time.sleep(gap)
    deadline = time.monotonic() + 120
    for job_id in ids:
        while True:
            conn.request("GET", f"/api/jobs/{job_id}")
            res = conn.getresponse()
            job = json.loads(res.read())
            if job.get("status") in ENDED:
                break
            if time.monotonic() > deadline:
                sys.exit(f"job {job_id} still {job.get('status')} after 120 s")
            time.sleep(0.05)
        if job["status"] != "succeeded":
            sys.exit(f"job {job_id} ended {job['status']}: {job.get('error')}")
    print(f"{n} jobs submitted {gap_ms} ms apart, all succeeded", file=sys.stderr)


if __name__ == "__main__":
    main()
