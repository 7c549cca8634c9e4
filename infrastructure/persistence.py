"""Storage wiring for the eventsourcing library: its SQLAlchemy factory, with our connection settings
applied to every connection before the first one is made."""
from __future__ import annotations

import sqlite3
from typing import Any, Sequence
from uuid import UUID

from eventsourcing.utils import Environment
from eventsourcing_sqlalchemy.factory import SQLAlchemyFactory
from eventsourcing_sqlalchemy.recorders import SQLAlchemyApplicationRecorder
from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import sessionmaker

from application.ledger import KeyLedger
from infrastructure.settings import Settings
from infrastructure.storage import events_locked

POSTGRES_LOCK_TIMEOUT = "5s"
Row = tuple[UUID, int, str, bytes]  # originator_id, originator_version, topic, state: a StoredEvent's fields
SQLITE_BUSY_TIMEOUT_MS = 10000


def _sqlite_pragmas(busy_timeout_ms: int) -> Any:
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        # FULL: a commit is durable when it returns (the audit log promises that). secure_delete: deleted
        # rows (shredded key material) are overwritten with zeros, not left in free pages.
        for pragma in ("journal_mode=WAL", "synchronous=FULL", "secure_delete=ON", f"busy_timeout={busy_timeout_ms}"):
            cursor.execute(f"PRAGMA {pragma}")
        cursor.close()
    return on_connect


def _postgres_on_connect(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute(f"SET lock_timeout = '{POSTGRES_LOCK_TIMEOUT}'")
    cursor.close()
    dbapi_connection.commit()


def _unchanged(value: Any) -> Any:
    return value


POOL_SIZE = 32  # about the request thread pool's size, so connections are reused, not re-opened


class BulkInsertApplicationRecorder(SQLAlchemyApplicationRecorder):
    """Inserts a transaction's events in one statement instead of one ORM object and flush per event.
    Group-committed audit batches are tens to hundreds of events, and the ORM unit of work was the largest
    cost of writing them (docs/performance.md). Same table, same lock, same notification ids.

    PostgreSQL: one multi-row ``INSERT ... RETURNING id``. SQLite: SQLAlchemy cannot keep RETURNING rows in
    parameter order there and falls back to one statement per row, so the rows go in with the driver's
    ``executemany`` and the ids are read back: a transaction that inserts holds SQLite's only write lock,
    and each new rowid is the table's largest plus one, so the n rows got the n ids ending at
    ``last_insert_rowid()``."""

    _sqlite_statement: tuple[str, tuple[Any, ...]] | None = None  # INSERT text, the columns' bind processors

    def _insert_stored_events(self, session: Any, stored_events: Any, **kwargs: Any) -> list[int]:
        return self._insert_rows(session, [(e.originator_id, e.originator_version, e.topic, e.state)
                                           for e in stored_events])

    def insert_rows(self, rows: Sequence[Row]) -> list[int]:
        """``insert_events`` for rows already in stored form, inside the caller's transaction when there is
        one: the audit committer makes its records' rows without building StoredEvent objects."""
        with self.transaction(commit=True) as session:
            return self._insert_rows(session, rows)

    def _insert_rows(self, session: Any, rows: Sequence[Row]) -> list[int]:
        if not rows:
            return []
        table = self.events_record_cls.__table__
        if not events_locked(session):  # the audit committer's and key changes' transactions took it already
            self._lock_table(session)
        if session.get_bind().dialect.name == "sqlite":
            ids = self._sqlite_insert(session, table, rows)
        else:
            values = [{"originator_id": i, "originator_version": v, "topic": t, "state": s} for i, v, t, s in rows]
            result = session.execute(table.insert().returning(table.c.id, sort_by_parameter_order=True), values)
            ids = [row[0] for row in result]
        self._notify_channel(session)
        return ids

    def _sqlite_insert(self, session: Any, table: Any, rows: Sequence[Row]) -> list[int]:
        connection = session.connection()
        if self._sqlite_statement is None:  # the same for every insert: the table and dialect are fixed
            self._sqlite_statement = event_insert_statement(table, connection.dialect)
        # The driver's own connection, as lock_writers uses it: exec_driver_sql's statement and result
        # machinery cost more than the insert of a small batch. Its errors are wrapped as exec_driver_sql
        # would wrap them, so the event store's transaction translates them (IntegrityError...) as before.
        sql, bound = bind_event_rows(self._sqlite_statement, rows)
        try:
            return insert_sqlite_rows(connection.connection.dbapi_connection, sql, bound)
        except sqlite3.Error as error:
            raise DBAPIError.instance(sql, bound, error, sqlite3.Error, dialect=connection.dialect,
                                      ismulti=True) from error


def event_insert_statement(table: Any, dialect: Any, placeholder: str = "?") -> tuple[str, tuple[Any, ...]]:
    """The event store's INSERT for the driver (its ``placeholder``) and its columns' own bind processors: the values
    stored are exactly those the ORM would store."""
    columns = (table.c.originator_id, table.c.originator_version, table.c.topic, table.c.state)
    preparer = dialect.identifier_preparer
    return (f"INSERT INTO {preparer.format_table(table)} ({', '.join(preparer.quote(c.name) for c in columns)}) "
            f"VALUES ({', '.join(placeholder for _ in columns)})", tuple(bind_processor(column, dialect) for column in columns))


def bind_processor(column: Any, dialect: Any) -> Any:
    """What SQLAlchemy applies to ``column``'s values for ``dialect`` before the driver sees them (the type as the
    dialect adapts it: on PostgreSQL a UUID column's values go as text, not as bytes)."""
    return column.type.dialect_impl(dialect).bind_processor(dialect) or _unchanged


def bind_event_rows(statement: tuple[str, tuple[Any, ...]], rows: Sequence[Row]) -> tuple[str, list[tuple[Any, ...]]]:
    sql, (bind_id, bind_version, bind_topic, bind_state) = statement
    # An audit batch's rows share one originator: its id (a Python-level UUID conversion) is bound once.
    last_id: Any = None
    last_bound: Any = None
    bound = []
    for originator_id, version, topic, state in rows:
        if originator_id is not last_id:
            last_id, last_bound = originator_id, bind_id(originator_id)
        bound.append((last_bound, bind_version(version), bind_topic(topic), bind_state(state)))
    return sql, bound


def insert_sqlite_rows(driver: sqlite3.Connection, sql: str, bound: list[tuple[Any, ...]]) -> list[int]:
    """Inserts bound rows in the driver's transaction, which holds SQLite's write lock; returns their ids: each new
    rowid is the table's largest plus one, so the n rows got the n ids ending at ``last_insert_rowid()``."""
    driver.executemany(sql, bound)
    last = driver.execute("SELECT last_insert_rowid()").fetchone()[0]
    return list(range(last - len(bound) + 1, last + 1))


class KeyledgerFactory(SQLAlchemyFactory):
    application_recorder_class = BulkInsertApplicationRecorder

    def __init__(self, env: Environment) -> None:
        super().__init__(env)
        # The library builds its engine with default pool settings (5 + 10 overflow); under load the
        # overflow connections are opened and closed per request. Swap in an engine with a pool sized
        # for the server, before anything has connected.
        default = self.datastore.engine
        assert isinstance(default, Engine)
        engine = create_engine(default.url, pool_size=POOL_SIZE, max_overflow=POOL_SIZE,
                               pool_pre_ping=default.dialect.name == "postgresql")
        default.dispose()
        self.datastore.engine = engine
        self.datastore.session_maker = sessionmaker(bind=engine, autoflush=True)
        if engine.dialect.name == "sqlite":
            busy = int(env.get("SQLITE_BUSY_TIMEOUT_MS") or SQLITE_BUSY_TIMEOUT_MS)
            event.listen(engine, "connect", _sqlite_pragmas(busy))
        elif engine.dialect.name == "postgresql":
            event.listen(engine, "connect", _postgres_on_connect)


def assert_storage_settings(engine: Engine) -> None:
    """Refuse to run on a SQLite connection without the durability and shredding settings."""
    if engine.dialect.name != "sqlite":
        return
    with engine.connect() as conn:
        found = {
            "journal_mode": conn.execute(text("PRAGMA journal_mode")).scalar(),
            "synchronous": conn.execute(text("PRAGMA synchronous")).scalar(),
            "secure_delete": conn.execute(text("PRAGMA secure_delete")).scalar(),
        }
    expected = {"journal_mode": "wal", "synchronous": 2, "secure_delete": 1}
    if found != expected:
        raise RuntimeError(f"SQLite settings are {found}, expected {expected}")


def build_ledger(settings: Settings) -> KeyLedger:
    """The event store and its mapper, as every process of the service opens them."""
    return KeyLedger(env={
        "PERSISTENCE_MODULE": "infrastructure.persistence:KeyledgerFactory",
        "SQLALCHEMY_URL": settings.resolved_database_url,
        "SQLITE_BUSY_TIMEOUT_MS": str(settings.sqlite_busy_timeout_ms),
        # Every state stored from now on is compressed; states stored before are read as they are.
        "COMPRESSOR_TOPIC": "infrastructure.compression:LedgerCompressor",
    })
