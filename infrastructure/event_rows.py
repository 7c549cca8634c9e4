"""The event store's rows as stored, a page at a time: what `keyledger audit verify` reads
(application/audit/ledger_rows.py, ``EventRows``). One plain SELECT of the five columns, through the driver's
cursor, instead of the event library's notification reader, which builds an ORM object and a Notification per
row (about a third of verify's time, docs/performance.md "Session 6: verify")."""
from __future__ import annotations

import uuid
from typing import Any, Sequence

from infrastructure.storage import EVENTS_TABLE, SqlUnitOfWork

_COLUMNS = f"SELECT id, originator_id, originator_version, topic, state FROM {EVENTS_TABLE} WHERE id >= {{}} " \
           "ORDER BY id LIMIT {}"


class SqlEventRows:
    def __init__(self, uow: SqlUnitOfWork) -> None:
        self._uow = uow
        self._ids: dict[Any, uuid.UUID] = {}  # stored aggregate id -> UUID: a handful of aggregates fill most pages
        self.read = 0  # rows returned so far (what the incremental verify's cost is counted in)

    def page(self, start: int, limit: int) -> Sequence[tuple[int, uuid.UUID, int, str, bytes]]:
        with self._uow.read() as session:
            connection = session.connection()
            if connection.dialect.name == "sqlite":
                cursor = connection.connection.dbapi_connection.execute(_COLUMNS.format("?", "?"), (start, limit))
            else:  # psycopg: the id column is a native uuid, the state bytea
                cursor = connection.exec_driver_sql(_COLUMNS.format("%s", "%s"), (start, limit))
            rows = cursor.fetchall()
        self.read += len(rows)
        ids, uuid_of = self._ids, self._uuid  # the known id by one dict lookup; a UUID is never falsy
        return [(position, ids.get(aggregate) or uuid_of(aggregate), version, topic,
                 state if type(state) is bytes else bytes(state))
                for position, aggregate, version, topic, state in rows]

    def end(self) -> int:
        """The store's last position (0 when it is empty)."""
        with self._uow.read() as session:
            return session.connection().exec_driver_sql(f"SELECT MAX(id) FROM {EVENTS_TABLE}").scalar() or 0

    def _uuid(self, stored: Any) -> uuid.UUID:
        known = self._ids.get(stored)
        if known is None:
            if isinstance(stored, uuid.UUID):
                known = stored
            elif isinstance(stored, (bytes, bytearray, memoryview)):
                known = uuid.UUID(bytes=bytes(stored))
            else:
                known = uuid.UUID(str(stored))
            if len(self._ids) > 100_000:
                self._ids.clear()
            self._ids[stored] = known
        return known
