"""Storage wiring for the eventsourcing library: its SQLAlchemy factory, with our connection settings
applied to every connection before the first one is made."""
from __future__ import annotations

from typing import Any

from eventsourcing.utils import Environment
from eventsourcing_sqlalchemy.factory import SQLAlchemyFactory
from eventsourcing_sqlalchemy.recorders import SQLAlchemyApplicationRecorder
from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import Engine
from sqlalchemy.orm import sessionmaker

POSTGRES_LOCK_TIMEOUT = "5s"
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

    def _insert_stored_events(self, session: Any, stored_events: Any, **kwargs: Any) -> list[int]:
        if not stored_events:
            return []
        table = self.events_record_cls.__table__
        self._lock_table(session)
        if session.get_bind().dialect.name == "sqlite":
            ids = self._sqlite_insert(session, table, stored_events)
        else:
            rows = [{"originator_id": e.originator_id, "originator_version": e.originator_version,
                     "topic": e.topic, "state": e.state} for e in stored_events]
            result = session.execute(table.insert().returning(table.c.id, sort_by_parameter_order=True), rows)
            ids = [row[0] for row in result]
        self._notify_channel(session)
        return ids

    @staticmethod
    def _sqlite_insert(session: Any, table: Any, stored_events: Any) -> list[int]:
        connection = session.connection()
        dialect = connection.dialect
        columns = (table.c.originator_id, table.c.originator_version, table.c.topic, table.c.state)
        # The columns' own bind processors: the values stored are exactly those the ORM would store.
        processors = [column.type.bind_processor(dialect) for column in columns]
        rows = [tuple(p(v) if p else v for p, v in zip(processors, (e.originator_id, e.originator_version, e.topic,
                                                                     e.state)))
                for e in stored_events]
        preparer = dialect.identifier_preparer
        connection.exec_driver_sql(
            f"INSERT INTO {preparer.format_table(table)} ({', '.join(preparer.quote(c.name) for c in columns)}) "
            f"VALUES (?, ?, ?, ?)", rows)
        last = connection.exec_driver_sql("SELECT last_insert_rowid()").scalar_one()
        return list(range(last - len(rows) + 1, last + 1))


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
