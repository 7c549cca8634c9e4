"""Which process runs the background work (checkpoint signing, maintenance, the key-usage index): one at a time.

On PostgreSQL every node takes part: a session-level advisory lock (``pg_try_advisory_lock``) held on a connection
of the node's own for as long as it leads. A node that stops, crashes or loses that connection loses the lock with
it (the server ends the session), and another node takes it at its next try, a second later. On SQLite the
processes of one data directory share an exclusive ``flock`` on ``<data dir>/background.lock``.

The election saves work; it is not what makes the work safe. Two signers or two maintenance passes at once (a
leader that has not yet noticed that its connection died) still act once: checkpoints and key changes commit
under the event store's optimistic concurrency (docs/decisions.md, 43 and 150).
"""
from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import socket
import threading
import time
from pathlib import Path
from typing import Any, Callable, Protocol

import sqlalchemy as sa
from sqlalchemy.pool import NullPool

from infrastructure.settings import Settings

BACKGROUND_LOCK = "background.lock"
RETRY_SECONDS = 1.0  # how often a follower tries to take the lock, and a leader checks it still holds it
_log = logging.getLogger("keyledger.leadership")


class Leadership(Protocol):
    kind: str  # "postgresql advisory lock" | "file lock"

    def held(self) -> bool:
        """Whether this process leads now: takes the lock when it is free, at most every RETRY_SECONDS."""

    @property
    def holding(self) -> bool:
        """What the last ``held()`` found, without asking again (for /healthz and /metrics)."""

    def release(self) -> None: ...


def only_leader(leadership: Leadership, fn: Callable[[], Any]) -> Callable[[], Any]:
    return lambda: fn() if leadership.held() else None


def node_name(settings: Settings) -> str:
    """How a leading process names itself to the others (PostgreSQL's application_name: 63 bytes at most)."""
    return f"keyledger {socket.gethostname()}:{settings.port} pid {os.getpid()}"[:63]


class FileLeadership:
    """An exclusive lock on ``path``, taken at the first ``held()`` that finds it free, kept for the life of the
    process, released by the OS when the process ends. One instance per process: flock belongs to the open file,
    so a second open of the same file in the same process would be refused too."""

    kind = "file lock"

    def __init__(self, path: Path) -> None:
        self._path = path
        self._fd: int | None = None
        self._mutex = threading.Lock()

    @property
    def holding(self) -> bool:
        return self._fd is not None

    def held(self) -> bool:
        with self._mutex:
            if self._fd is None:
                fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o600)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    os.close(fd)
                    return False
                self._fd = fd
                # Who holds it, for `keyledger status` (the lock itself is the flock, not this text).
                os.ftruncate(fd, 0)
                os.pwrite(fd, f"{os.getpid()} {socket.gethostname()}\n".encode(), 0)
            return True

    def release(self) -> None:
        with self._mutex:
            if self._fd is not None:
                os.close(self._fd)  # closing the descriptor releases the lock
                self._fd = None


def advisory_key(database: str, schema: str) -> int:
    """The lock's 64-bit key: one per keyledger schema (advisory locks are per database, not per schema)."""
    digest = hashlib.sha256(f"keyledger background work\0{database}\0{schema}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def _key_of(connection: sa.Connection) -> int:
    database, schema = connection.execute(sa.text("SELECT current_database(), current_schema()")).one()
    return advisory_key(database, schema)


# libpq: give up on a connection that stopped answering within seconds, not the kernel's two hours.
_CONNECT_ARGS = {"connect_timeout": 5, "keepalives": 1, "keepalives_idle": 5, "keepalives_interval": 2,
                 "keepalives_count": 3, "tcp_user_timeout": 10000}
# The server side of the same: a leader whose host vanished loses the lock once these run out (about 20 s).
_SESSION_KEEPALIVES = ("SET tcp_keepalives_idle = 10", "SET tcp_keepalives_interval = 5",
                       "SET tcp_keepalives_count = 2", "SET tcp_user_timeout = 20000")


class AdvisoryLeadership:
    """``pg_try_advisory_lock`` on a connection of its own (autocommit, outside every pool), held while this
    process leads. ``held()`` asks at most every ``retry_seconds``: a follower tries to take the lock; a leader
    pings its connection, and a connection that fails ends its leadership at once (the server has released, or
    will release, the lock with the session)."""

    kind = "postgresql advisory lock"

    def __init__(self, url: str, name: str, retry_seconds: float = RETRY_SECONDS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._engine = sa.create_engine(url, poolclass=NullPool, isolation_level="AUTOCOMMIT",
                                        connect_args={**_CONNECT_ARGS, "application_name": name})
        self._retry, self._clock = retry_seconds, clock
        self._connection: sa.Connection | None = None
        self._key = 0  # known once connected: it depends on the connection's database and schema
        self._holding = False
        self._asked_at: float | None = None
        self._mutex = threading.Lock()

    @property
    def holding(self) -> bool:
        return self._holding

    def held(self) -> bool:
        with self._mutex:
            now = self._clock()
            if self._asked_at is not None and now - self._asked_at < self._retry:
                return self._holding
            self._asked_at = now
            try:
                self._holding = self._ask()
            except sa.exc.SQLAlchemyError as exc:
                if self._holding:
                    _log.warning("background work: lost the leadership connection (%s)", type(exc).__name__)
                self._drop()
            return self._holding

    def _ask(self) -> bool:
        if self._connection is None:
            self._connection = self._engine.connect()
            for statement in _SESSION_KEEPALIVES:
                try:
                    self._connection.execute(sa.text(statement))
                except sa.exc.DBAPIError:  # an older server without tcp_user_timeout: keepalives still apply
                    pass
            self._key = _key_of(self._connection)
        if self._holding:
            self._connection.execute(sa.text("SELECT 1"))
            return True
        return bool(self._connection.execute(sa.text("SELECT pg_try_advisory_lock(:key)"), {"key": self._key}).scalar())

    def _drop(self) -> None:
        self._holding = False
        connection, self._connection = self._connection, None
        if connection is not None:
            try:
                connection.invalidate()  # a dead connection: never handed back, never reused
            except sa.exc.SQLAlchemyError:
                pass

    def release(self) -> None:
        """Graceful shutdown: closing the session releases the lock now, so a follower leads within a second."""
        with self._mutex:
            if self._connection is not None:
                try:
                    if self._holding:
                        self._connection.execute(sa.text("SELECT pg_advisory_unlock(:key)"), {"key": self._key})
                    self._connection.close()
                except sa.exc.SQLAlchemyError:
                    pass
                self._connection = None
            self._holding = False
            self._engine.dispose()


def background_leadership(settings: Settings) -> Leadership:
    if settings.uses_postgres:
        return AdvisoryLeadership(settings.resolved_database_url, node_name(settings))
    return FileLeadership(settings.node_dir / BACKGROUND_LOCK)


def background_holder(settings: Settings, engine: sa.Engine) -> str:
    """Who runs the background work now, for `keyledger status` (asks; takes nothing)."""
    if settings.uses_postgres:
        return _advisory_holder(settings, engine)
    return _file_holder(settings.node_dir / BACKGROUND_LOCK)


def _advisory_holder(settings: Settings, engine: sa.Engine) -> str:
    with engine.connect() as connection:
        key = _key_of(connection)
        # A bigint key shows in pg_locks as classid (high 32 bits), objid (low 32 bits) and objsubid 1.
        row = connection.execute(sa.text(
            "SELECT a.application_name, a.pid FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
            "WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1 "
            "AND l.classid = CAST(:high AS oid) AND l.objid = CAST(:low AS oid)"),
            {"high": (key >> 32) & 0xFFFFFFFF, "low": key & 0xFFFFFFFF}).first()
    if row is None:
        return "none (no node holds the PostgreSQL advisory lock; a running node takes it within a second)"
    mine = row.application_name.startswith(f"keyledger {socket.gethostname()}:{settings.port} ")
    return f"{row.application_name or 'an unnamed session'} (PostgreSQL advisory lock, " \
           f"{'this node' if mine else 'another node'})"


def _file_holder(path: Path) -> str:
    if not path.exists():
        return "none (no server has run background work from this data directory)"
    fd = os.open(path, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").split()
            return f"process {holder[0]} on {holder[1]}" if len(holder) >= 2 else "a process (unnamed)"
        fcntl.flock(fd, fcntl.LOCK_UN)
        return "none (no running server holds the background lock)"
    finally:
        os.close(fd)
