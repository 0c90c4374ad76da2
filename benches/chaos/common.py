"""Small helpers every part of the harness uses: the run's clock and its log line
(`say`), free ports, the pid in a lease owner, RFC 3339 times as epoch seconds, and
running a command asynchronously."""

import asyncio
import datetime
import re
import socket
import subprocess
import time


T0 = time.monotonic()


def say(message):
    print(f"[{time.monotonic() - T0:7.1f}s] {message}", flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def owner_pid(owner):
    """The pid in a lease owner `{hostname}-{pid}-{tag}/{tag}`."""
    parts = (owner or "").rsplit("/", 1)[0].rsplit("-", 2)
    return int(parts[1]) if len(parts) == 3 and parts[1].isdigit() else None


def epoch(text):
    """Epoch seconds of an RFC 3339 time as roster writes it (`2026-12-08T00:41:09.123456Z`,
    any number of fractional digits), or None."""
    if not isinstance(text, str):
        return None
    m = re.fullmatch(r"(.+?T\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)", text.strip())
    if not m:
        return None
    zone = "+00:00" if m.group(3) == "Z" else m.group(3)
    try:
        whole = datetime.datetime.fromisoformat(m.group(1) + zone)
    except ValueError:
        return None
    fraction = float("0." + m.group(2)) if m.group(2) else 0.0
    return whole.timestamp() + fraction


def rfc3339(seconds):
    """An epoch time as RFC 3339 in UTC, to the microsecond."""
    return (datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc)
            .isoformat(timespec="microseconds").replace("+00:00", "Z"))


async def run(argv, timeout=60, env=None):
    """Runs a command; returns (exit status or None on timeout, stdout, stderr)."""
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        return None, "", "timed out"
    return proc.returncode, out.decode(errors="replace"), err.decode(errors="replace")
