"""Reading the key event index (projections/tables.py key_event_index, written with each key event) for
point-in-time questions."""
from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa

from application.history.point_in_time import IndexedEvent
from application.ports import UnitOfWork
from projections import tables


class SqlKeyEventIndex:
    """application.history.point_in_time.KeyEventIndex over the live key_event_index table."""

    def __init__(self, uow: UnitOfWork) -> None:
        self._uow = uow

    def _rows(self, query: Any) -> list[Any]:
        with self._uow.read() as session:
            return session.execute(query).all()

    def version_at(self, key_id: str, at: datetime) -> int | None:
        c = tables.key_event_index.c
        return self._rows(sa.select(sa.func.max(c.version)).where(c.key_id == key_id, c.timestamp <= at.timestamp()))[0][0]

    def versions_at(self, at: datetime) -> list[tuple[str, int]]:
        c = tables.key_event_index.c
        return [(r[0], r[1]) for r in self._rows(sa.select(c.key_id, sa.func.max(c.version)).where(
            c.timestamp <= at.timestamp()).group_by(c.key_id).order_by(c.key_id))]

    def events_of(self, key_id: str) -> list[IndexedEvent]:
        c = tables.key_event_index.c
        return [IndexedEvent(r.version, r.event_type, r.timestamp, r.notification_id) for r in self._rows(
            sa.select(tables.key_event_index).where(c.key_id == key_id).order_by(c.version))]
