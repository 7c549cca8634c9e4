"""Helpers for the limit, quota and bounded-audit tests (test_request_limits.py, test_audit_bounds.py,
test_quotas.py); this module holds no tests. Everything talks to a real server: raw sockets where a client
library would refuse to send what we need (a body that never ends), httpx for the rest."""
from __future__ import annotations

import json
import select
import socket
import time
from datetime import UTC, datetime
from typing import Any

import httpx
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from tests.e2e.test_audit_support import AuditTable
from tests.servers import ADMIN_KEY_ID, ADMIN_SECRET, Server

MADE_UP_KEY = "AKIAMADEUPMADEUP0000"
MiB = 1024 * 1024


def forged_headers(target: str = "TrentService.ListKeys", **extra: str) -> dict[str, str]:
    """Headers of a request that claims a made-up access key and carries the signature "00"."""
    now = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    headers = {"Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": target, "X-Amz-Date": now,
               "Authorization": f"AWS4-HMAC-SHA256 Credential={MADE_UP_KEY}/{now[:8]}/us-east-1/kms/aws4_request, "
                                "SignedHeaders=host;x-amz-date, Signature=00"}
    headers.update(extra)
    return headers


def signed_headers(server: Server, target: str, body: bytes, **extra: str) -> dict[str, str]:
    """SigV4 headers of the administrator for ``body`` sent as is to ``target`` (e.g. "ListKeys")."""
    request = AWSRequest(method="POST", url=server.endpoint + "/", data=body, headers={
        "Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": f"TrentService.{target}", **extra})
    SigV4Auth(Credentials(ADMIN_KEY_ID, ADMIN_SECRET), "kms", "us-east-1").add_auth(request)
    return dict(request.headers.items())


def post(server: Server, body: bytes, headers: dict[str, str]) -> httpx.Response:
    return httpx.post(server.endpoint + "/", content=body, headers=headers, timeout=60)


def error_of(response: httpx.Response) -> tuple[int, str, str]:
    body = response.json()
    return response.status_code, body["__type"], body["message"]


def stream_until_answered(server: Server, headers: dict[str, str], declared: int | None,
                          limit: int = 200 * MiB) -> tuple[bytes, int]:
    """Sends a request head, then body bytes (up to ``limit``) while watching for an answer; returns the
    answer's first bytes and how many body bytes had been sent when it came. ``declared``: the
    Content-Length to announce; None sends the body chunked (it then never ends)."""
    head = [b"POST / HTTP/1.1", f"Host: 127.0.0.1:{server.port}".encode()]
    head += [f"{k}: {v}".encode() for k, v in headers.items()]
    head.append(f"Content-Length: {declared}".encode() if declared is not None else b"Transfer-Encoding: chunked")
    chunk = b" " * 65536
    piece = chunk if declared is not None else b"%x\r\n" % len(chunk) + chunk + b"\r\n"
    sent, answer = 0, b""
    with socket.create_connection(("127.0.0.1", server.port), timeout=60) as sock:
        sock.sendall(b"\r\n".join(head) + b"\r\n\r\n")
        sock.setblocking(False)
        while sent < limit and b"\r\n\r\n" not in answer:
            readable, writable, _ = select.select([sock], [sock], [], 30)
            if not readable and not writable:
                break  # neither side moves: the test fails on the answer below
            if readable:
                data = _recv(sock)
                if data == b"":
                    break  # closed
                answer += data or b""
            elif writable:
                try:
                    sent += sock.send(piece)
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError:
                    break  # the server closed its side; what it answered is read below
        sock.setblocking(True)
        sock.settimeout(10)
        try:
            while b"\r\n\r\n" not in answer or len(answer) < 512:
                data = sock.recv(65536)
                if not data:
                    break
                answer += data
        except OSError:
            pass
    return answer, sent


def _recv(sock: socket.socket) -> bytes | None:
    """What arrived; b"" once the server closed; None if nothing after all."""
    try:
        return sock.recv(65536)
    except (BlockingIOError, InterruptedError):
        return None
    except OSError:
        return b""


def status_of(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/1.1 ") else 0


def memory_kib(server: Server) -> dict[str, int]:
    """VmRSS (now) and VmHWM (the peak so far) of the server process, in KiB."""
    assert server.process is not None
    out = {}
    with open(f"/proc/{server.process.pid}/status") as status:
        for line in status:
            name, _, value = line.partition(":")
            if name in ("VmRSS", "VmHWM"):
                out[name] = int(value.split()[0])
    return out


def audit_states(server: Server) -> dict[int, bytes]:
    """seq -> the stored bytes of every audit record (the table itself, either backend)."""
    try:
        return AuditTable(server).states()
    except AssertionError as missing:  # a fresh server on SQLite: no record yet
        assert "no audit record" in str(missing)
        return {}


def records(server: Server) -> list[dict[str, Any]]:
    return [json.loads(state)["record"] for _, state in sorted(audit_states(server).items())]


def wait_for(condition: Any, what: str, attempts: int = 300) -> Any:
    """Polls ``condition`` (at most ``attempts`` times, a tenth of a second apart) until it returns a true
    value; for what a background pass writes. No assertion depends on how long it took."""
    for _ in range(attempts):
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"never happened: {what}")
