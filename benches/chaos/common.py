"""Small helpers every part of the harness uses: the run's clock and its log line
(`say`), free ports, the pid in a lease owner, and running a command asynchronously."""

import asyncio
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
