"""The readiness probe's storage side (application/health.py StorageProbe): one small write, committed in a
transaction of its own on a connection of its own, under the same lock the audit trail's writers take.

* SQLite: the writer gate, then ``BEGIN IMMEDIATE`` with a busy timeout of ``timeout`` seconds (another
  process holding a write transaction makes it fail with SQLITE_BUSY), the probe row, ``COMMIT`` with
  ``synchronous=FULL`` (a full disk or a read-only file fails here). The file is opened ``mode=rw``: a
  database that has gone missing is reported, not silently re-created empty.
* PostgreSQL: a new connection (a server that cannot be reached fails here), ``lock_timeout`` and
  ``statement_timeout`` for this transaction only, the writers' ``LOCK TABLE`` on the events table, the
  probe row, ``COMMIT`` (a read-only database or a full disk fails here).

The answer names the kind of failure only: /healthz is unauthenticated, so no host, path or driver text
goes into it; the driver's message is logged (once per change) for the operator.
"""
from __future__ import annotations

import logging
import math
import sqlite3
import time
import urllib.parse
from typing import Any

import sqlalchemy as sa
from sqlalchemy.pool import NullPool

from infrastructure.storage import EVENTS_TABLE, WriterGate, writer_gate_for
from infrastructure.tables import health_probe

log = logging.getLogger("keyledger.health")
_UPSERT = (f"INSERT INTO {health_probe.name} (id, checked_at) VALUES (1, {{mark}}) "
           f"ON CONFLICT (id) DO UPDATE SET checked_at = excluded.checked_at")
_READ_ONLY = "the database refuses writes (read-only)"
_FULL = "the database's disk is full"
_IO_ERROR = "the database could not write to its disk (I/O error)"
_UNREACHABLE = "the database cannot be reached"
# SQLite's primary result codes (sqlite3.Error.sqlite_errorcode & 0xff) and PostgreSQL's SQLSTATEs.
_SQLITE_REASONS = {5: "locked", 6: "locked", 8: _READ_ONLY, 10: _IO_ERROR, 13: _FULL, 14: _UNREACHABLE}
_POSTGRES_REASONS = {"55P03": "locked", "57014": "locked", "25006": _READ_ONLY, "53100": _FULL}


class SqlStorageProbe:
    def __init__(self, engine: sa.engine.Engine, timeout: float) -> None:
        """``engine``: the service's engine, for its URL and dialect (the probe never uses its pool)."""
        self._timeout = timeout
        self._dialect = engine.dialect.name
        self._last_logged: str | None = None
        if self._dialect == "sqlite":
            self._path = engine.url.database or ""
            self._gate: WriterGate | None = writer_gate_for(engine)
        else:
            self._engine = sa.create_engine(
                engine.url, poolclass=NullPool,
                connect_args={"connect_timeout": max(2, math.ceil(timeout))})  # libpq's least is 2 s

    def check(self) -> str | None:
        try:
            if self._dialect == "sqlite":
                self._write_sqlite()
            else:
                self._write_postgres()
        except Exception as exc:
            reason = self._reason(exc)
            if reason != self._last_logged:
                log.warning("health probe: %s: %s", reason, str(exc).splitlines()[0][:300] if str(exc) else exc)
            self._last_logged = reason
            return reason
        if self._last_logged is not None:
            log.warning("health probe: the database takes writes again")
        self._last_logged = None
        return None

    def _write_sqlite(self) -> None:
        if self._gate is not None and not self._gate.acquire(self._timeout):
            raise TimeoutError("the writer gate was not free")
        try:
            uri = f"file:{urllib.parse.quote(self._path)}?mode=rw"
            connection = sqlite3.connect(uri, uri=True, timeout=self._timeout, isolation_level=None)
            try:
                connection.execute("PRAGMA synchronous=FULL")
                connection.execute("BEGIN IMMEDIATE")
                connection.execute(_UPSERT.format(mark="?"), (time.time(),))
                connection.execute("COMMIT")
            finally:
                connection.close()  # rolls back whatever did not commit
        finally:
            if self._gate is not None:
                self._gate.release()

    def _write_postgres(self) -> None:
        milliseconds = max(1, int(self._timeout * 1000))
        with self._engine.begin() as connection:
            connection.exec_driver_sql(f"SET LOCAL lock_timeout = {milliseconds}")
            connection.exec_driver_sql(f"SET LOCAL statement_timeout = {2 * milliseconds}")
            connection.exec_driver_sql(f"LOCK TABLE {EVENTS_TABLE} IN EXCLUSIVE MODE")
            connection.execute(sa.text(_UPSERT.format(mark=":at")), {"at": time.time()})

    def _reason(self, exc: Exception) -> str:
        cause: Any = getattr(exc, "orig", None) or exc
        if isinstance(exc, TimeoutError):
            kind: str | None = "locked"
        elif isinstance(cause, sqlite3.Error):
            kind = _SQLITE_REASONS.get((getattr(cause, "sqlite_errorcode", 0) or 0) & 0xFF)
        else:
            state = getattr(cause, "sqlstate", None)
            kind = _POSTGRES_REASONS.get(state or "")
            if kind is None and state is None and isinstance(exc, sa.exc.OperationalError):
                kind = _UNREACHABLE  # no SQLSTATE: the connection itself failed
        if kind == "locked":
            return f"the database is locked: no write transaction could start within {self._timeout:g} s"
        return kind or f"the database write probe failed ({type(cause).__name__})"

    def close(self) -> None:
        if self._dialect != "sqlite":
            self._engine.dispose()
