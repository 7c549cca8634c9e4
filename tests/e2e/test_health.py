"""/healthz tells the truth (issue 11, measurement 5): liveness answers while the process serves; readiness
is 503 while the service is sealed, while another process holds the database's write lock, while the
database refuses writes or cannot be reached, and after the audit trail failed to commit; and it turns
200 again by itself once the database takes writes, with no other traffic."""
from __future__ import annotations

import socket
import sqlite3
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from tests.e2e.helpers import error_code
from tests.servers import Server, postgres_url

ATTEMPTS = 120  # health is polled every 0.25 s: 30 s for a probe (cached 1 s here, 0.3 s lock wait) to notice
FAST_PROBE = {"KEYLEDGER_HEALTH_PROBE_TIMEOUT": "0.3", "KEYLEDGER_HEALTH_CACHE_SECONDS": "0.2"}


def health(server: Server, path: str = "/healthz") -> httpx.Response:
    return httpx.get(server.endpoint + path, timeout=30)


def readiness_of(response: httpx.Response) -> dict[str, Any]:
    """The readiness part of a health body (status, reason), without the root key's (and others') state beside it."""
    return {k: v for k, v in response.json().items() if k not in ("root_key", "custom_key_stores", "background")}


def until(server: Server, status: int, path: str = "/healthz") -> dict[str, Any]:
    """Polls (bounded) until ``path`` answers ``status``; returns the body's readiness part."""
    for _ in range(ATTEMPTS):
        response = health(server, path)
        if response.status_code == status:
            return readiness_of(response)
        time.sleep(0.25)
    raise AssertionError(f"{path} never answered {status}; last: {response.status_code} {response.text}")


def test_liveness_and_readiness(shared_server):
    assert (health(shared_server, "/healthz/live").status_code, health(shared_server, "/healthz/live").json()) \
        == (200, {"status": "alive"})
    for path in ("/healthz/ready", "/healthz"):
        response = health(shared_server, path)
        assert (response.status_code, readiness_of(response)) == (200, {"status": "ready"})
        assert response.json()["root_key"] == {"provider": "file", "sealed": False, "current_version": 1,
                                               "rotation": "complete", "retired_versions": []}


def test_sealed_is_alive_but_not_ready(tmp_path):
    server = Server(data_dir=tmp_path / "sealed", env={"KEYLEDGER_ROOT_KEY_PROVIDER": "env"}).start()
    try:
        for path in ("/healthz", "/healthz/ready"):
            response = health(server, path)
            assert response.status_code == 503 and response.json()["status"] == "sealed"
            assert "KEYLEDGER_ROOT_KEY" in response.json()["reason"]
        assert health(server, "/healthz/live").json() == {"status": "alive"}
    finally:
        server.stop()


def test_sqlite_locked_by_another_process_is_not_ready_until_released(tmp_path):
    server = Server(data_dir=tmp_path / "server",
                    env={"KEYLEDGER_SQLITE_BUSY_TIMEOUT_MS": "200", **FAST_PROBE}).start()
    lock = sqlite3.connect(server.sqlite_file, timeout=10, isolation_level=None)
    try:
        kms = server.client()
        key_id = kms.create_key()["KeyMetadata"]["KeyId"]
        until(server, 200)
        lock.execute("BEGIN EXCLUSIVE")  # another process's write transaction, held
        body = until(server, 503)
        assert body["status"] == "not ready" and "locked" in body["reason"], body
        assert until(server, 503, "/healthz/ready") == body
        assert health(server, "/healthz/live").status_code == 200
        # The calls the readiness answer warned about do fail (their audit records cannot be written).
        assert error_code(kms.encrypt, KeyId=key_id, Plaintext=b"x") == "KMSInternalException"
        lock.rollback()
        # No call in between: the probe alone notices, and the audit failure is behind a good write.
        assert until(server, 200) == {"status": "ready"}
        assert kms.encrypt(KeyId=key_id, Plaintext=b"x")["KeyId"].endswith(key_id)
    finally:
        lock.close()
        server.stop()


# -- PostgreSQL ----------------------------------------------------------------------------------------------

@pytest.fixture
def postgres_database() -> Any:
    """A database of its own (it is made read-only below); yields (admin engine, database name, url)."""
    base_url = postgres_url()
    if base_url is None:
        pytest.skip("PostgreSQL tests need KEYLEDGER_TEST_POSTGRES_URL")
    database = f"kl_health_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(base_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f"CREATE DATABASE {database}"))
    url = sa.engine.make_url(base_url).set(database=database)
    try:
        yield admin, database, url
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f"ALTER DATABASE {database} SET default_transaction_read_only = off"))
            conn.execute(sa.text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                 "WHERE datname = :db AND pid <> pg_backend_pid()"), {"db": database})
            conn.execute(sa.text(f"DROP DATABASE IF EXISTS {database}"))
        admin.dispose()


def test_postgres_locked_or_read_only_is_not_ready_until_it_recovers(postgres_database, tmp_path):
    admin, database, url = postgres_database
    server = Server(data_dir=tmp_path / "server", database_url=url.render_as_string(hide_password=False),
                    env=FAST_PROBE).start()
    holder = sa.create_engine(url)
    try:
        until(server, 200)
        with holder.connect() as conn:  # another session holds the writers' lock on the event table
            conn.execute(sa.text("LOCK TABLE keyledger_events IN EXCLUSIVE MODE"))
            body = until(server, 503)
            assert body["status"] == "not ready" and "locked" in body["reason"], body
            conn.rollback()
        until(server, 200)
        with admin.connect() as conn:
            conn.execute(sa.text(f"ALTER DATABASE {database} SET default_transaction_read_only = on"))
        body = until(server, 503)
        assert "read-only" in body["reason"], body
        with admin.connect() as conn:
            conn.execute(sa.text(f"ALTER DATABASE {database} SET default_transaction_read_only = off"))
        until(server, 200)
    finally:
        holder.dispose()
        server.stop()


class Proxy:
    """A TCP forwarder to PostgreSQL that can be cut (listener and every connection closed) and restored
    on the same port: the database becomes unreachable for the server and then reachable again."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self._listener: socket.socket | None = None
        self._open: list[socket.socket] = []
        self._lock = threading.Lock()

    def start(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                self._open += [client, upstream]
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                try:
                    end.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def cut(self) -> None:
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        with self._lock:
            for connection in self._open:
                try:
                    connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                connection.close()
            self._open.clear()


def test_postgres_unreachable_is_not_ready_until_it_is_back(postgres_database, tmp_path):
    _, _, url = postgres_database
    proxy = Proxy((url.host or "127.0.0.1", url.port or 5432))
    proxy.start()
    through = url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    server = Server(data_dir=tmp_path / "server", database_url=through, env=FAST_PROBE).start()
    try:
        until(server, 200)
        proxy.cut()
        body = until(server, 503)
        assert body == {"status": "not ready", "reason": "the database cannot be reached"}, body
        assert health(server, "/healthz/live").status_code == 200
        proxy.start()
        until(server, 200)
        assert server.client().list_keys()["Keys"] is not None
    finally:
        proxy.cut()
        server.stop()


def test_health_requests_share_one_probe_per_cache_period(tmp_path: Path):
    """Health requests do not each write to the database: with a cache period longer than the test, the
    probe that answered the start-up poll answers all twenty requests, and the probe row was written once."""
    server = Server(data_dir=tmp_path / "server", env={"KEYLEDGER_HEALTH_CACHE_SECONDS": "3600"}).start()
    try:
        marks = set()
        reader = sqlite3.connect(server.sqlite_file, timeout=10)
        try:
            for _ in range(20):
                assert health(server).status_code == 200
                marks.add(reader.execute("SELECT checked_at FROM health_probe").fetchone())
        finally:
            reader.close()
        assert len(marks) == 1, marks
    finally:
        server.stop()
