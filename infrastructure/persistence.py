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
    """Inserts a transaction's events with one multi-row INSERT ... RETURNING instead of one ORM object
    and flush per event. Group-committed audit batches are hundreds of events, and the ORM unit of work
    was the largest cost of writing them (docs/performance.md). Same table, same lock, same ids."""

    def _insert_stored_events(self, session: Any, stored_events: Any, **kwargs: Any) -> list[int]:
        if not stored_events:
            return []
        table = self.events_record_cls.__table__
        self._lock_table(session)
        rows = [{"originator_id": e.originator_id, "originator_version": e.originator_version,
                 "topic": e.topic, "state": e.state} for e in stored_events]
        result = session.execute(table.insert().returning(table.c.id, sort_by_parameter_order=True), rows)
        ids = [row[0] for row in result]
        self._notify_channel(session)
        return ids


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
