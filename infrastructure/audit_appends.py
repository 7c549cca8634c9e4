"""The audit committer's own transactions (decision 269): one driver connection it keeps for its life.

Every batch the committer process commits is one transaction that takes the writers' lock, reads the log's last
version, inserts the records' rows and their index rows, and commits. Through SQLAlchemy's session and the event
library's datastore, opening and ending that transaction cost about as much CPU as the statements themselves (a
session, a pooled connection checked out and reset, the library's context variable), on every batch whatever it
holds; and on PostgreSQL the library's multi-row ``INSERT ... RETURNING`` is a new statement text for every batch
size, which the driver parses again each time. Measured in docs/performance.md, "Session 11". Here the same
statements run on the driver's connection, each with one fixed text:

* the same writers' lock as ``SqlUnitOfWork.lock_writers`` (infrastructure/storage.py): on SQLite the writers'
  gate and ``BEGIN IMMEDIATE``, on PostgreSQL the events table's ``EXCLUSIVE`` lock, which the event library's own
  insert takes too (so notification ids stay in commit order);
* the event store's columns with their own bind processors (infrastructure/persistence.py), so the rows are the
  rows the library would store (``RecordRows.exact`` still decides whether rows are made directly at all), and on
  PostgreSQL the library's ``NOTIFY`` on its channel after inserting;
* the same index rows (projections/audit_index.py);
* errors as the event library names them: a unique-constraint failure is its ``IntegrityError``, which the trail
  retries after reading the head again; anything else fails the batch closed, as before. A failure rolls back.

The connection comes from the engine's pool, so it was opened with the service's settings (SQLite: WAL,
synchronous=FULL, secure_delete, busy timeout; PostgreSQL: lock_timeout).
"""
from __future__ import annotations

import sqlite3
from contextlib import contextmanager, nullcontext
from typing import Any, Iterator, Sequence

import sqlalchemy as sa
from eventsourcing.persistence import IntegrityError, OperationalError

from infrastructure.persistence import Row, bind_event_rows, bind_processor, event_insert_statement
from infrastructure.storage import WriterGate

try:
    import psycopg
except ImportError:  # pragma: no cover - psycopg is a dependency; SQLite works without it
    psycopg = None  # type: ignore[assignment]

_INTEGRITY = (sqlite3.IntegrityError,) + ((psycopg.IntegrityError,) if psycopg is not None else ())
_DRIVER = (sqlite3.Error,) + ((psycopg.Error,) if psycopg is not None else ())


@contextmanager
def _as_library_errors() -> Iterator[None]:
    try:
        yield
    except _INTEGRITY as error:
        raise IntegrityError(str(error)) from error
    except _DRIVER as error:
        raise OperationalError(str(error)) from error


class DriverTransaction:
    """One transaction on the committer's driver connection, holding the writers' lock."""

    def __init__(self, appends: DriverRecordAppends, driver: Any) -> None:
        self._appends, self._driver = appends, driver

    def last_version(self, originator_id: Any) -> int | None:
        with _as_library_errors():
            row = self._driver.execute(self._appends.last_version_sql, (self._appends.bind_id(originator_id),)).fetchone()
        return row[0] if row else None

    def stored_state(self, originator_id: Any, version: int) -> tuple[str, bytes] | None:
        """(topic, state) of one stored event, as stored."""
        with _as_library_errors():
            row = self._driver.execute(self._appends.state_sql, (self._appends.bind_id(originator_id), version)).fetchone()
        return (row[0], bytes(row[1])) if row else None

    def insert_rows(self, rows: Sequence[Row]) -> None:
        if not rows:
            return
        sql, bound = bind_event_rows(self._appends.insert_statement, rows)
        with _as_library_errors():
            self._executemany(sql, bound)
            if self._appends.notify_sql is not None:
                self._driver.execute(self._appends.notify_sql)

    def insert(self, table: str, columns: Sequence[str], values: Sequence[tuple[Any, ...]]) -> None:
        """Another table's rows in this transaction (the audit index's, projections/audit_index.py)."""
        marks = ", ".join(self._appends.placeholder for _ in columns)
        with _as_library_errors():
            self._executemany(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})", values)

    def _executemany(self, sql: str, values: Sequence[tuple[Any, ...]]) -> None:
        if isinstance(self._driver, sqlite3.Connection):
            self._driver.executemany(sql, values)
        else:  # psycopg: a cursor's executemany, pipelined, one statement text whatever the batch's size
            with self._driver.cursor() as cursor:
                cursor.executemany(sql, values)


class DriverRecordAppends:
    def __init__(self, engine: Any, events: sa.Table, gate: WriterGate | None, channel: str | None = None) -> None:
        self._engine, self._gate = engine, gate
        self._connection: Any = None  # the pool's proxy: closing it gives the driver connection back
        dialect = engine.dialect
        self._sqlite = dialect.name == "sqlite"
        self.placeholder = "?" if self._sqlite else "%s"
        self.insert_statement = event_insert_statement(events, dialect, self.placeholder)
        self.bind_id = bind_processor(events.c.originator_id, dialect)
        mark = self.placeholder
        self.last_version_sql = f"SELECT max(originator_version) FROM {events.name} WHERE originator_id = {mark}"
        self.state_sql = (f"SELECT topic, state FROM {events.name} WHERE originator_id = {mark} "
                          f"AND originator_version = {mark}")
        self.notify_sql = None if self._sqlite or not channel else f"NOTIFY {channel}"
        self._lock_sql = f"LOCK TABLE {events.name} IN EXCLUSIVE MODE"  # the event library's own insert takes it too

    @classmethod
    def for_engine(cls, engine: Any, events: sa.Table, gate: WriterGate | None,
                   channel: str | None = None) -> DriverRecordAppends | None:
        """For SQLite and PostgreSQL; None for any other database (its transactions stay the library's)."""
        return cls(engine, events, gate, channel) if engine.dialect.name in ("sqlite", "postgresql") else None

    def _driver(self) -> Any:
        if self._connection is not None:
            driver = self._connection.dbapi_connection
            if driver is None or getattr(driver, "broken", False) or getattr(driver, "closed", False):
                self._let_go(broken=True)  # lost (PostgreSQL restarted, the network): another from the pool
        if self._connection is None:
            self._connection = self._engine.raw_connection()
        return self._connection.dbapi_connection

    def _begin(self, driver: Any) -> None:
        if self._sqlite:
            if driver.in_transaction:  # never left so by us; a transaction must start here to hold the lock
                driver.rollback()
            driver.execute("BEGIN IMMEDIATE")
        else:
            driver.execute(self._lock_sql)  # which starts the transaction

    @contextmanager
    def transaction(self) -> Iterator[DriverTransaction]:
        """The writers' lock, held until the transaction has committed or rolled back."""
        if self._gate is not None:
            self._gate.acquire()
        try:
            with _as_library_errors():
                driver = self._driver()
            # PostgreSQL: in pipeline mode statements go out without waiting for each answer; the transaction then
            # costs two round trips (the lock and the log's last version; the inserts, NOTIFY and COMMIT), not six.
            # An error queued in the pipeline is raised at the commit, which then rolls back like any other.
            with nullcontext() if self._sqlite else driver.pipeline():
                try:
                    with _as_library_errors():
                        self._begin(driver)
                    yield DriverTransaction(self, driver)
                    with _as_library_errors():
                        driver.commit()
                except BaseException:
                    self._roll_back(driver)
                    raise
        finally:
            if self._gate is not None:
                self._gate.release()

    def _roll_back(self, driver: Any) -> None:
        try:
            if driver is not None:
                driver.rollback()
        except _DRIVER:  # a connection that broke: what was raised says why; the next batch opens another
            self._let_go(broken=True)
            return
        if getattr(driver, "broken", False) or getattr(driver, "closed", False):  # psycopg's lost connection
            self._let_go(broken=True)

    def _let_go(self, broken: bool) -> None:
        connection, self._connection = self._connection, None
        if connection is None:
            return
        try:
            if broken:
                connection.invalidate()  # not back into the pool
            else:
                connection.close()
        except _DRIVER:
            pass

    def close(self) -> None:
        self._let_go(broken=False)
