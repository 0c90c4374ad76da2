"""roster's HTTP API as the harness calls it: blocking http.client requests on a thread
pool of their own, each answered by a `Reply` (or none: the process was down)."""

import asyncio
import concurrent.futures
import dataclasses
import hashlib
import http.client
import json


@dataclasses.dataclass
class Reply:
    status: int | None  # None: no answer
    body: bytes = b""
    refused: bool = False  # the request certainly never arrived

    def json(self):
        try:
            return json.loads(self.body)
        except ValueError:
            return None


class Api:
    """Blocking http.client calls on a thread pool of their own."""

    def __init__(self, port):
        self.port = port
        self.pool = concurrent.futures.ThreadPoolExecutor(max_workers=160)

    def _call(self, method, path, body, timeout, extra=None):
        """`body`: JSON to send, or bytes sent as they are (`extra` names their type)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        headers, data = dict(extra or {}), body
        if body is not None and not isinstance(body, bytes):
            headers["Content-Type"] = "application/json"
            data = json.dumps(body).encode()
        try:
            conn.request(method, path, data, headers)
            response = conn.getresponse()
            return Reply(response.status, response.read())
        except ConnectionRefusedError:
            return Reply(None, refused=True)
        except (OSError, http.client.HTTPException):
            return Reply(None)
        finally:
            conn.close()

    def _sha256(self, path):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        try:
            conn.request("GET", path)
            response = conn.getresponse()
            digest = hashlib.sha256()
            while chunk := response.read(1 << 16):
                digest.update(chunk)
            return response.status, digest.hexdigest()
        except (OSError, http.client.HTTPException) as e:
            return None, str(e)
        finally:
            conn.close()

    async def call(self, method, path, body=None, timeout=30, headers=None):
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self.pool, self._call, method, path, body, timeout, headers
        )

    async def download_sha256(self, path):
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.pool, self._sha256, path)
