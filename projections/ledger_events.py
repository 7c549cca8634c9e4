"""The events a replay reads, by index (issue 13): every stored event but the audit log's and the checkpoints'.

Audit records are most of the event store (one per API call) and project to nothing. Replay used to ask the event
library for notifications filtered by topic, which SQLite and PostgreSQL answer by reading every row, records
included, since no index covers the topic. A partial index on the position of every other event
(``keyledger_events_ledger_idx``) lets replay read only the events it replays, a page at a time in store order. It
costs nothing on the crypto path: an audit record is not in it, so appending one does not touch it.

The index's condition names the two audit aggregates by literal id; a query uses a partial index only when its
own WHERE clause holds the same terms, so ``CONDITION`` is the one spelling of both."""
from __future__ import annotations

import uuid
from typing import Any, Sequence

import sqlalchemy as sa
from eventsourcing.persistence import Notification

from domain.audit.log import AUDIT_CHECKPOINTS_ID, AUDIT_LOG_ID

INDEX = "keyledger_events_ledger_idx"


def _condition(dialect: str) -> str:
    if dialect == "sqlite":  # the library stores the id as 16 bytes
        ids = ", ".join(f"X'{a.hex}'" for a in (AUDIT_LOG_ID, AUDIT_CHECKPOINTS_ID))
    else:
        ids = ", ".join(f"'{a}'::uuid" for a in (AUDIT_LOG_ID, AUDIT_CHECKPOINTS_ID))
    return f"originator_id NOT IN ({ids})"


def ensure_index(engine: sa.Engine, events_table: str) -> None:
    """Creates the partial index once (a database from before it gets it at its next start)."""
    with engine.begin() as conn:
        conn.exec_driver_sql(f"CREATE INDEX IF NOT EXISTS {INDEX} ON {events_table} (id) "
                             f"WHERE {_condition(engine.dialect.name)}")


def ledger_event_rows(ledger: Any, start: int, limit: int) -> list[tuple[int, Any, int, str, bytes]]:
    """The rows of ``ledger_events_page`` as the driver returns them: (position, aggregate id as stored, version,
    topic, state). Replay decodes only some of a page's rows in each process (projections/replay.py), so it builds
    notifications for those alone."""
    recorder = ledger.recorder
    table = recorder.events_record_cls.__table__
    with recorder.datastore.transaction(commit=False) as session:
        connection = session.connection()
        dialect = connection.dialect.name
        marker = "?" if dialect == "sqlite" else "%s"
        sql = (f"SELECT id, originator_id, originator_version, topic, state FROM {table.name} "
               f"WHERE {_condition(dialect)} AND id >= {marker} ORDER BY id LIMIT {int(limit)}")
        # The driver's cursor in the session's transaction: plain tuples, without a SQLAlchemy Row around each.
        cursor = connection.connection.dbapi_connection.cursor()
        try:
            cursor.execute(sql, (start,))
            return cursor.fetchall()
        finally:
            cursor.close()


def stored_uuid(aggregate: Any) -> uuid.UUID:
    """An aggregate id as the driver returned it (16 bytes on SQLite, a UUID or its text elsewhere), or as replay
    keys it (the UUID's integer), as a UUID."""
    if isinstance(aggregate, uuid.UUID):
        return aggregate
    if isinstance(aggregate, int):  # replay's key for a UUID the driver gave (projections/replay.py, _keyed)
        return uuid.UUID(int=aggregate)
    if isinstance(aggregate, (bytes, bytearray, memoryview)):
        return uuid.UUID(bytes=bytes(aggregate))
    return uuid.UUID(str(aggregate))


def ledger_events_page(ledger: Any, start: int, limit: int) -> Sequence[Notification]:
    """The events after the audit aggregates' at positions from ``start`` on, in store order, at most ``limit``."""
    ids: dict[Any, uuid.UUID] = {}  # a page holds a few aggregates' runs of events
    out = []
    for position, aggregate, version, topic, state in ledger_event_rows(ledger, start, limit):
        known = ids.get(aggregate)
        if known is None:
            known = ids[aggregate] = stored_uuid(aggregate)
        out.append(Notification(id=position, originator_id=known, originator_version=version, topic=topic,
                                state=bytes(state)))
    return out
