"""The SQL side of the unit of work and the stores that live beside the event store."""
from __future__ import annotations

import fcntl
import os
import threading
import time
from contextlib import AbstractContextManager, contextmanager
from datetime import datetime
from typing import Any, Iterator, Sequence

import sqlalchemy as sa
from sqlalchemy.orm import Session

from infrastructure.tables import backing_keys, import_keys

EVENTS_TABLE = "keyledger_events"  # the event store's table (eventsourcing names it <app name>_events)


class WriterGate:
    """Writers of one SQLite database take its write lock in turn, each woken the moment the one before
    it has committed. SQLite alone makes a writer that finds the lock taken sleep and retry (1, 2, 5, 10 ...
    ms, its busy handler), so with several server processes (``KEYLEDGER_WORKERS``) a waiting audit batch
    slept long after the lock was free: p99 rose to 350-970 ms (docs/performance.md). An exclusive flock on
    a file beside the database queues writers in the kernel instead, across processes and threads alike
    (each thread locks through its own descriptor), and the kernel drops it if a process dies."""

    def __init__(self, path: str) -> None:
        self._path = path
        self._local = threading.local()

    def acquire(self, timeout: float | None = None) -> bool:
        """Waits for the gate (at most ``timeout`` seconds if given); whether this thread now holds it."""
        local = self._local
        if getattr(local, "held", False):
            return True
        if getattr(local, "fd", None) is None:
            local.fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o600)
        if timeout is None:
            fcntl.flock(local.fd, fcntl.LOCK_EX)  # blocks without the GIL until the holder lets go
        else:  # flock has no timeout: the health probe polls
            deadline = time.monotonic() + timeout
            while True:
                try:
                    fcntl.flock(local.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        return False
                    time.sleep(0.005)
        local.held = True
        return True

    def release(self) -> None:
        local = self._local
        if getattr(local, "held", False):
            local.held = False
            fcntl.flock(local.fd, fcntl.LOCK_UN)


_EVENTS_LOCKED = "keyledger.events_locked"


def mark_events_locked(session: Session) -> None:
    """Notes that ``session``'s current transaction holds the events table's EXCLUSIVE lock (PostgreSQL): the
    event store's insert then skips taking it a second time, a round trip per audit batch (issue #18)."""
    session.info[_EVENTS_LOCKED] = session.get_transaction()


def events_locked(session: Session) -> bool:
    """Whether ``session``'s current transaction (this one, not an earlier one of the session) took the lock."""
    transaction = session.get_transaction()
    return transaction is not None and session.info.get(_EVENTS_LOCKED) is transaction


def writer_gate_for(engine: Any) -> WriterGate | None:
    """A file-backed SQLite database's gate; None for PostgreSQL (LOCK TABLE queues waiters itself)."""
    database = engine.url.database if engine.dialect.name == "sqlite" else None
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return WriterGate(database + ".writers")


@contextmanager
def one_snapshot(engine: Any) -> Iterator[sa.Connection]:
    """A connection whose reads all see the same committed state, for a reader that compares tables with each other
    (``keyledger audit verify``): without it a change committing between two of its statements looks like a
    row that disagrees with its events. PostgreSQL reads committed by default, a new snapshot per statement;
    SQLite's driver opens no transaction for a SELECT, and a deferred ``BEGIN`` keeps the first read's WAL
    snapshot until the end. Read only: a deferred read transaction cannot always become a write."""
    if engine.dialect.name == "postgresql":
        with engine.connect().execution_options(isolation_level="REPEATABLE READ") as conn:
            yield conn
        return
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            conn.exec_driver_sql("BEGIN")
        try:
            yield conn
        finally:
            conn.rollback()


class SqlUnitOfWork:
    """A transaction of eventsourcing_sqlalchemy's datastore. The library's own writes join it (its
    transactions nest through a context variable), so events, snapshots and our rows commit as one."""

    def __init__(self, datastore: Any, events: sa.Table | None = None, gate: WriterGate | None = None) -> None:
        self._datastore = datastore
        self._events = events  # the event store's table, for last_version
        self._last_version_sql: str | None = None
        self._bind_id: Any = None
        self._gate = gate
        self._depth = threading.local()  # our transactions open on this thread (they nest)

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        depth = getattr(self._depth, "value", 0)
        self._depth.value = depth + 1
        try:
            with self._datastore.transaction(commit=True) as tx:
                yield tx
        finally:
            self._depth.value = depth
            if depth == 0 and self._gate is not None:
                self._gate.release()  # after the commit (or rollback) has returned: the next writer goes

    def read(self) -> AbstractContextManager[Session]:
        return self._datastore.transaction(commit=False)

    def lock_writers(self, tx: Session) -> None:
        """SQLite: BEGIN IMMEDIATE (its one write lock, across processes), unless this transaction already
        wrote and so holds it; through the writer gate when the transaction is one of ours, which lets the
        gate go once it has ended. PostgreSQL: the events table lock the event store takes before inserting."""
        connection = tx.connection()
        if connection.dialect.name == "sqlite":
            dbapi = connection.connection.dbapi_connection
            if not dbapi.in_transaction:
                if self._gate is not None and getattr(self._depth, "value", 0):
                    self._gate.acquire()
                dbapi.execute("BEGIN IMMEDIATE")  # the driver's own cursor: this runs once per audit batch
        elif connection.dialect.name == "postgresql":
            connection.exec_driver_sql(f"LOCK TABLE {EVENTS_TABLE} IN EXCLUSIVE MODE")
            mark_events_locked(tx)

    def last_version(self, tx: Session, originator_id: Any) -> int | None:
        """The highest stored version of one aggregate (one lookup in the (id, version) index)."""
        assert self._events is not None, "built without the event store's table"
        events = self._events
        connection = tx.connection()
        if connection.dialect.name == "sqlite":  # once per audit batch: skip SQLAlchemy's statement machinery
            if self._last_version_sql is None:
                column = events.c.originator_id
                self._bind_id = column.type.bind_processor(connection.dialect) or (lambda v: v)
                self._last_version_sql = (f"SELECT max(originator_version) FROM {events.name} "
                                          f"WHERE originator_id = ?")
            row = connection.connection.dbapi_connection.execute(
                self._last_version_sql, (self._bind_id(originator_id),)).fetchone()
            return row[0] if row else None
        if connection.dialect.name == "postgresql":  # once per audit batch: the driver's cursor, as on SQLite
            row = connection.connection.dbapi_connection.execute(
                f"SELECT max(originator_version) FROM {events.name} WHERE originator_id = %s",
                (originator_id,)).fetchone()
            return row[0] if row else None
        return tx.execute(sa.select(sa.func.max(events.c.originator_version))
                          .where(events.c.originator_id == originator_id)).scalar()


    def last_versions(self, tx: Session, originator_ids: Sequence[Any]) -> dict[Any, int]:
        """The highest stored version of each of several aggregates (those with none are left out), in one query:
        what a list of read-model rows is compared with (projections/key_state_view.py: rows_at_head)."""
        assert self._events is not None, "built without the event store's table"
        events = self._events
        wanted, heads = list(set(originator_ids)), {}
        for start in range(0, len(wanted), 500):  # under SQLite's oldest bound on parameters (999)
            heads.update(tx.execute(sa.select(events.c.originator_id, sa.func.max(events.c.originator_version))
                                    .where(events.c.originator_id.in_(wanted[start:start + 500]))
                                    .group_by(events.c.originator_id)).all())
        return heads

    def last_topic(self, tx: Session, originator_id: Any) -> str | None:
        """The topic of one aggregate's newest stored event (None: it has none)."""
        assert self._events is not None, "built without the event store's table"
        events = self._events
        return tx.execute(sa.select(events.c.topic).where(events.c.originator_id == originator_id)
                          .order_by(events.c.originator_version.desc()).limit(1)).scalar()

    def position_of(self, originator_id: Any, version: int) -> int | None:
        """The event store position (notification id) of one stored event."""
        assert self._events is not None, "built without the event store's table"
        events = self._events
        with self.read() as session:
            return session.execute(sa.select(events.c.id).where(
                events.c.originator_id == originator_id, events.c.originator_version == version)).scalar()


class SqlBackingKeyStore:
    def __init__(self, uow: SqlUnitOfWork, engine: Any) -> None:
        self._uow = uow
        self._engine = engine

    def compact(self) -> None:
        """Crypto-shredding is only as good as the files: with secure_delete the SQLite pages are zeroed,
        but the WAL still holds the old page images until a checkpoint truncates it; on PostgreSQL dead
        tuples stay in the heap until VACUUM FULL rewrites the table."""
        if self._engine.dialect.name == "sqlite":
            for _ in range(50):
                with self._engine.connect() as conn:
                    busy = conn.execute(sa.text("PRAGMA wal_checkpoint(TRUNCATE)")).first()[0]
                if not busy:
                    return
                time.sleep(0.1)  # a reader holds an old snapshot; the next pass retries
        elif self._engine.dialect.name == "postgresql":
            with self._engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.execute(sa.text(f"VACUUM FULL {backing_keys.name}"))

    def put(self, tx: Session, key_id: str, material_id: str, wrapped: bytes) -> None:
        tx.execute(backing_keys.insert().values(key_id=key_id, material_id=material_id, wrapped=wrapped))

    def get(self, key_id: str, material_id: str) -> bytes | None:
        with self._uow.read() as session:
            row = session.execute(sa.select(backing_keys.c.wrapped).where(
                backing_keys.c.key_id == key_id, backing_keys.c.material_id == material_id)).first()
        return bytes(row[0]) if row else None

    def delete_key(self, tx: Session, key_id: str) -> None:
        tx.execute(backing_keys.delete().where(backing_keys.c.key_id == key_id))

    def delete_material(self, tx: Session, key_id: str, material_id: str) -> None:
        tx.execute(backing_keys.delete().where(backing_keys.c.key_id == key_id,
                                               backing_keys.c.material_id == material_id))


class SqlImportKeyStore:
    def __init__(self, uow: SqlUnitOfWork) -> None:
        self._uow = uow

    def put(self, tx: Session, import_id: str, key_id: str, wrapped: bytes, expires_at: datetime) -> None:
        tx.execute(import_keys.insert().values(import_id=import_id, key_id=key_id, wrapped=wrapped,
                                               expires_at=expires_at.timestamp()))

    def get(self, import_id: str) -> bytes | None:
        with self._uow.read() as session:
            row = session.execute(sa.select(import_keys.c.wrapped).where(import_keys.c.import_id == import_id)).first()
        return bytes(row[0]) if row else None

    def delete(self, tx: Session, import_id: str) -> None:
        tx.execute(import_keys.delete().where(import_keys.c.import_id == import_id))

    def delete_expired(self, tx: Session, now: datetime) -> int:
        return tx.execute(import_keys.delete().where(import_keys.c.expires_at <= now.timestamp())).rowcount
