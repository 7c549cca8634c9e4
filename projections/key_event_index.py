"""Reading the key and alias event indexes (projections/tables.py key_event_index and alias_event_index, written
with each event) for point-in-time questions. Every query is answered from an index on the key, the alias name or
the time: its cost is the history it returns, not the log's length."""
from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa

from application.history.point_in_time import AliasKey, IndexedEvent
from application.ports import UnitOfWork
from projections import tables


class SqlKeyEventIndex:
    """application.history.point_in_time.KeyEventIndex over the live index tables."""

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

    def events_of(self, key_id: str, after_version: int = 0, limit: int | None = None) -> list[IndexedEvent]:
        c = tables.key_event_index.c
        query = sa.select(tables.key_event_index).where(c.key_id == key_id, c.version > after_version).order_by(c.version)
        return [IndexedEvent(r.version, r.event_type, r.timestamp, r.notification_id, r.audit_seq)
                for r in self._rows(query.limit(limit) if limit is not None else query)]

    # -- aliases ---------------------------------------------------------------------------------------------

    def alias_target_at(self, alias: AliasKey, at: datetime) -> str | None:
        """The key the alias named at ``at`` (None: it did not exist, or was deleted)."""
        c = tables.alias_event_index.c
        rows = self._rows(sa.select(c.target_key_id).where(
            c.account_id == alias[0], c.region == alias[1], c.alias_name == alias[2], c.timestamp <= at.timestamp(),
        ).order_by(c.timestamp.desc(), c.version.desc()).limit(1))
        return rows[0][0] if rows else None

    def aliases_of_key_at(self, key_id: str, at: datetime) -> list[AliasKey]:
        """The aliases that named the key at ``at``: of the aliases that ever named it by then, those whose last
        event by then still does."""
        c = tables.alias_event_index.c
        moment = at.timestamp()
        ever = sa.select(c.alias_id).where(c.target_key_id == key_id, c.timestamp <= moment).distinct()
        return [(r.account_id, r.region, r.alias_name) for r in self._latest(ever, moment) if r.target_key_id == key_id]

    def alias_targets_at(self, at: datetime, alias_name: str | None = None) -> dict[AliasKey, str]:
        """Every alias that existed at ``at`` (of that name, if given) and the key it named."""
        c = tables.alias_event_index.c
        candidates = sa.select(c.alias_id).where(c.timestamp <= at.timestamp())
        if alias_name is not None:
            candidates = candidates.where(c.alias_name == alias_name)
        return {(r.account_id, r.region, r.alias_name): r.target_key_id
                for r in self._latest(candidates.distinct(), at.timestamp()) if r.target_key_id is not None}

    def alias_events(self, alias_name: str, account_id: str | None = None) -> list[Any]:
        c = tables.alias_event_index.c
        query = sa.select(c.alias_id, c.version, c.account_id, c.region, c.target_key_id, c.timestamp).where(
            c.alias_name == alias_name)
        if account_id is not None:
            query = query.where(c.account_id == account_id)
        return self._rows(query.order_by(c.alias_id, c.version))

    def _latest(self, alias_ids: Any, moment: float) -> list[Any]:
        t = tables.alias_event_index
        c = t.c
        last = (sa.select(c.alias_id, sa.func.max(c.version).label("version"))
                .where(c.alias_id.in_(alias_ids.scalar_subquery()), c.timestamp <= moment)
                .group_by(c.alias_id).subquery())
        return self._rows(sa.select(t).join(last, sa.and_(c.alias_id == last.c.alias_id, c.version == last.c.version)))
