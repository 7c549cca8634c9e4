"""Looking at a running test server from outside: its memory, its files, raw calls with a client timeout
that tells a stuck server from a slow one, and another process holding its SQLite database locked."""
from __future__ import annotations

import json
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from tests.hostile.hostile_request import SIGNED, Auth, HostileRequest
from tests.hostile.raw_http import Answer, Connection, request_head
from tests.hostile.signing import sign
from tests.servers import Server

MiB = 1024 * 1024


def server_rss(server: Server) -> int:
    """The server process's resident set size in bytes (VmRSS of /proc/<pid>/status)."""
    assert server.process is not None
    for line in Path(f"/proc/{server.process.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS line")


def data_dir_bytes(server: Server) -> int:
    return sum(path.stat().st_size for path in server.data_dir.rglob("*") if path.is_file())


def connection(server: Server, timeout: float = 60.0) -> Connection:
    return Connection("127.0.0.1", server.port, timeout)


def call(server: Server, operation: str, document: dict[str, Any] | bytes, *, auth: Auth = SIGNED,
         extra: tuple[tuple[bytes, bytes], ...] = (), target: bytes | None = None, timeout: float = 60.0,
         via: Connection | None = None) -> Answer:
    """One KMS call with the raw client: an Answer with ``failure`` "timeout" when none came in time."""
    request = HostileRequest(category="regression", note=operation, auth=auth, extra=extra,
                             target=target if target is not None else b"TrentService." + operation.encode(),
                             body=document if isinstance(document, bytes) else json.dumps(document).encode())
    head, _ = request.assemble(server.endpoint, f"127.0.0.1:{server.port}".encode())
    own = via is None
    conn = via or connection(server, timeout)
    try:
        return conn.exchange(head, request.body)
    finally:
        if own:
            conn.close()


def get(server: Server, path: str, timeout: float = 30.0) -> Answer:
    """An unauthenticated GET (the health endpoints)."""
    conn = connection(server, timeout)
    try:
        return conn.exchange(request_head(b"GET", path.encode(), [(b"Host", f"127.0.0.1:{server.port}".encode())]))
    finally:
        conn.close()


def signed_get(server: Server, path: str, timeout: float = 30.0) -> Answer:
    """A GET of ``path`` exactly as written (percent-encoding kept), SigV4-signed by the administrator."""
    host = f"127.0.0.1:{server.port}".encode()
    headers = [(b"Host", host)]
    headers += sign(server.endpoint, path, headers, b"", method="GET")
    conn = connection(server, timeout)
    try:
        return conn.exchange(request_head(b"GET", path.encode(), headers))
    finally:
        conn.close()


def error_message(answer: Answer) -> str:
    document = answer.document()
    return str(document.get("message", document.get("Message", ""))) if isinstance(document, dict) else ""


_HOLDER = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=60)
conn.execute(sys.argv[2])
print("locked", flush=True)
sys.stdin.read()  # until the test closes our stdin
conn.execute("ROLLBACK")
"""


@contextmanager
def sqlite_locked(database: Path, begin: str) -> Iterator[subprocess.Popen]:
    """Another process holds ``database`` with ``begin`` ("BEGIN EXCLUSIVE" or "BEGIN IMMEDIATE") until the
    block ends."""
    holder = subprocess.Popen([sys.executable, "-c", _HOLDER, str(database), begin], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked", "the lock holder failed"
        yield holder
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        try:
            holder.wait(timeout=30)
        except subprocess.TimeoutExpired:
            holder.kill()
            holder.wait()
