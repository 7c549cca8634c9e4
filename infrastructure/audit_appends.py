"""The audit committer's own transactions on SQLite (decision 269): one driver connection it keeps for its life.

Every batch the committer process commits is one transaction that takes the writers' lock, reads the log's last
version, inserts the records' rows and their index rows, and commits. Through SQLAlchemy's session and the event
library's datastore, opening and ending that transaction cost about as much CPU as the statements themselves (a
session, a pooled connection checked out and reset, the library's context variable), on every batch whatever it
holds; measured in docs/performance.md, "Session 11". Here the same statements run on the driver's connection:

* the same writers' gate and ``BEGIN IMMEDIATE`` as ``SqlUnitOfWork.lock_writers`` (infrastructure/storage.py);
* the same INSERT and bind processors as the event store's recorder (infrastructure/persistence.py), so the rows
  are the rows the library would store (``RecordRows.exact`` still decides whether rows are made directly at all);
* the same index rows (projections/audit_index.py), through ``executemany``;
* errors as the event library names them: a unique-constraint failure is its ``IntegrityError``, which the trail
  retries after reading the head again; anything else fails the batch closed, as before.

The connection comes from the engine's pool, so it was opened with the service's SQLite settings (WAL,
synchronous=FULL, secure_delete, busy timeout). PostgreSQL keeps the library's transactions: there the commit's
round trip, not the session, is what a batch waits on.
"""
from __future__ import annotations

import sqlite3
from contextlib import contextmanager
from typing import Any, Iterator, Sequence

import sqlalchemy as sa
from eventsourcing.persistence import IntegrityError, OperationalError

from infrastructure.persistence import Row, bind_sqlite_rows, insert_sqlite_rows, sqlite_insert_statement
from infrastructure.storage import WriterGate


@contextmanager
def _as_library_errors() -> Iterator[None]:
    try:
        yield
    except sqlite3.IntegrityError as error:
        raise IntegrityError(str(error)) from error
    except sqlite3.Error as error:
        raise OperationalError(str(error)) from error


class DriverTransaction:
    """One transaction on the committer's driver connection, holding SQLite's write lock."""

    def __init__(self, appends: SqliteRecordAppends, driver: sqlite3.Connection) -> None:
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
        sql, bound = bind_sqlite_rows(self._appends.insert_statement, rows)
        with _as_library_errors():
            insert_sqlite_rows(self._driver, sql, bound)

    def executemany(self, sql: str, values: Sequence[tuple[Any, ...]]) -> None:
        """Another table's rows in this transaction (the audit index's, projections/audit_index.py)."""
        with _as_library_errors():
            self._driver.executemany(sql, values)


class SqliteRecordAppends:
    def __init__(self, engine: Any, events: sa.Table, gate: WriterGate | None) -> None:
        self._engine, self._gate = engine, gate
        self._connection: Any = None  # the pool's proxy: closing it gives the driver connection back
        dialect = engine.dialect
        self.insert_statement = sqlite_insert_statement(events, dialect)
        self.bind_id = events.c.originator_id.type.bind_processor(dialect) or (lambda value: value)
        self.last_version_sql = f"SELECT max(originator_version) FROM {events.name} WHERE originator_id = ?"
        self.state_sql = f"SELECT topic, state FROM {events.name} WHERE originator_id = ? AND originator_version = ?"

    @classmethod
    def for_engine(cls, engine: Any, events: sa.Table, gate: WriterGate | None) -> SqliteRecordAppends | None:
        """For a SQLite database; None for any other (its transactions stay the library's)."""
        return cls(engine, events, gate) if engine.dialect.name == "sqlite" else None

    def _driver(self) -> sqlite3.Connection:
        if self._connection is None:
            self._connection = self._engine.raw_connection()
        driver = self._connection.dbapi_connection
        if driver.in_transaction:  # never left so by us; a transaction must start here to hold the lock
            driver.rollback()
        return driver

    @contextmanager
    def transaction(self) -> Iterator[DriverTransaction]:
        """The writers' gate and SQLite's write lock, held until the transaction has committed or rolled back."""
        if self._gate is not None:
            self._gate.acquire()
        try:
            with _as_library_errors():
                driver = self._driver()
                driver.execute("BEGIN IMMEDIATE")
            try:
                yield DriverTransaction(self, driver)
                with _as_library_errors():
                    driver.commit()
            except BaseException:
                try:
                    driver.rollback()
                except sqlite3.Error:  # a connection that broke: what was raised says why
                    pass
                raise
        finally:
            if self._gate is not None:
                self._gate.release()

    def close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.close()
