"""The principals read model: who exists now (with their identity policies and access key ids), and an
index of every Principal event for point-in-time questions. Rows are written inside the change's own
transaction, from the aggregate and its pending events, so reads see their own writes."""
from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any, Sequence

import sqlalchemy as sa

from application.ports import UnitOfWork
from application.principals.ports import PrincipalRow
from domain.audit.seals import RowSeal
from domain.errors import TamperedStateError
from domain.principals.principal import Principal
from projections.principal_tables import principal_event_index, principals
from projections.row_checks import aggregate_uuid, at_head


class SqlPrincipalView:
    def __init__(self, uow: UnitOfWork, seal: RowSeal | None = None) -> None:
        self._uow = uow
        self._seal = seal

    # -- writing (inside the change's transaction, before its events are saved) ----------------------

    def project(self, tx: Any, principal: Principal, events: Sequence[Any] | None = None) -> None:
        """``events``: the events that brought the principal here (default: its pending ones; a replay
        passes the ones it applied)."""
        pid = str(principal.id)
        events = principal.pending_events if events is None else events
        if events:
            tx.execute(principal_event_index.insert(), [
                {"principal_id": pid, "version": e.originator_version, "account_id": principal.account_id,
                 "arn": getattr(e, "arn", principal.arn), "event_type": type(e).__name__,
                 "timestamp": e.timestamp.timestamp()} for e in events])
        tx.execute(principals.delete().where(principals.c.principal_id == pid))
        if principal.deleted:
            return
        values = dict(
            principal_id=pid, arn=principal.arn, account_id=principal.account_id, kind=principal.kind,
            name=principal.name, path=principal.path, unique_id=principal.unique_id,
            created_at=principal.creation_date.timestamp(), version=principal.version,
            policies_json=json.dumps(principal.policies, sort_keys=True),
            access_keys_json=json.dumps(principal.access_keys, sort_keys=True))
        tx.execute(principals.insert().values(self._seal.sealed(principals.name, values) if self._seal else values))

    # -- reading ---------------------------------------------------------------------------------

    def _all(self, query: Any) -> list[Any]:
        with self._uow.read() as session:  # type: ignore[attr-defined]
            return session.execute(query).all()

    def _row(self, r: Any) -> PrincipalRow:
        if self._seal is not None and not self._seal.matches(principals.name, r._mapping):
            raise TamperedStateError(f"principal {r.arn}")
        return PrincipalRow(principal_id=r.principal_id, arn=r.arn, account_id=r.account_id, kind=r.kind,
                            name=r.name, path=r.path, unique_id=r.unique_id,
                            created=datetime.fromtimestamp(r.created_at, timezone.utc),
                            policies=json.loads(r.policies_json), access_keys=json.loads(r.access_keys_json))

    def row(self, principal_id: str) -> PrincipalRow | None:
        """The principal as it is now: its row, checked against its tag and against its newest stored event
        (an older copy of the row put back, with a wider policy or a deleted principal's, fails closed)."""
        query = sa.select(principals).where(principals.c.principal_id == principal_id)
        with self._uow.read() as session:  # type: ignore[attr-defined]
            found = at_head(session, query, getattr(self._uow, "last_version", None),
                            lambda r: aggregate_uuid(r.principal_id), lambda r: f"principal {r.arn}")
        return self._row(found) if found is not None else None

    def rows(self, account_id: str | None = None) -> list[PrincipalRow]:
        query = sa.select(principals)
        if account_id is not None:
            query = query.where(principals.c.account_id == account_id)
        return [self._row(r) for r in self._all(query.order_by(principals.c.account_id, principals.c.arn))]

    def version_at(self, principal_id: str, at: datetime) -> int | None:
        c = principal_event_index.c
        return self._all(sa.select(sa.func.max(c.version)).where(
            c.principal_id == principal_id, c.timestamp <= at.timestamp()))[0][0]

    def existing_at(self, account_id: str, at: datetime) -> list[str]:
        c = principal_event_index.c
        latest = sa.select(c.principal_id, sa.func.max(c.version).label("version")).where(
            c.account_id == account_id, c.timestamp <= at.timestamp()).group_by(c.principal_id).subquery()
        query = sa.select(c.arn).join(latest, sa.and_(c.principal_id == latest.c.principal_id,
                                                      c.version == latest.c.version)).where(c.event_type != "Deleted")
        return sorted(r.arn for r in self._all(query))
