"""The grants read model: one ``key_grants`` row per grant in force, kept by the grant events.

``project_grants`` runs inside the key-state projection's transaction (live writes and replay alike), so a
CreateGrant's row commits with its event and ListGrants reads its own writes. It applies the events in log
order: a grant created and retired within one replayed page leaves no row.
"""
from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any, Sequence

import sqlalchemy as sa
from eventsourcing.application import Recording
from eventsourcing.domain import Aggregate
from sqlalchemy.orm import Session

from application.ports import UnitOfWork
from domain.audit.seals import RowSeal
from domain.errors import TamperedStateError
from domain.keys.grants import grant_entry
from domain.keys.key import Key
from projections.tables import key_grants

_ENDED = (Key.GrantRetired, Key.GrantRevoked)
_GRANT_EVENTS = (Key.GrantCreated, *_ENDED, Key.Deleted)  # the events that change key_grants


def project_grants(tx: Session, aggregates: Sequence[Aggregate], recordings: Sequence[Recording],
                   seal: RowSeal | None = None) -> None:
    keys = {a.id: a for a in aggregates if isinstance(a, Key)}
    if not keys:
        return
    for recording in recordings:
        event = recording.domain_event
        if not isinstance(event, _GRANT_EVENTS):  # most events: no id lookup (a UUID's hash is Python code)
            continue
        key = keys.get(event.originator_id)
        if key is None:
            continue
        if isinstance(event, Key.GrantCreated):
            values = dict(
                grant_id=event.grant_id, key_id=key.storage_id, account_id=key.account_id, region=key.region,
                key_arn=key.arn, name=event.name, grantee_principal=event.grantee_principal,
                retiring_principal=event.retiring_principal, operations_json=json.dumps(list(event.operations)),
                constraints_json=json.dumps(event.constraints, sort_keys=True) if event.constraints else None,
                issuing_account=event.issuing_account, creation_date=event.timestamp.timestamp())
            tx.execute(key_grants.insert().values(seal.sealed(key_grants.name, values) if seal else values))
        elif isinstance(event, _ENDED):
            tx.execute(key_grants.delete().where(key_grants.c.grant_id == event.grant_id))
        elif isinstance(event, Key.Deleted):  # a deleted key's grants end with it
            tx.execute(key_grants.delete().where(key_grants.c.key_id == key.storage_id))


def _entry(row: Any) -> dict[str, Any]:
    record = {
        "grant_id": row.grant_id, "name": row.name, "grantee_principal": row.grantee_principal,
        "retiring_principal": row.retiring_principal, "operations": json.loads(row.operations_json),
        "constraints": json.loads(row.constraints_json) if row.constraints_json else None,
        "issuing_account": row.issuing_account,
        "creation_date": datetime.fromtimestamp(row.creation_date, tz=timezone.utc),
    }
    return grant_entry(record, row.key_arn)


class SqlGrantIndex:
    """application.keys.grant_service.GrantIndex over the key_grants table."""

    def __init__(self, uow: UnitOfWork, seal: RowSeal | None = None) -> None:
        self._uow = uow
        self._seal = seal

    def _checked(self, row: Any) -> Any:
        if self._seal is not None and not self._seal.matches(key_grants.name, row._mapping):
            raise TamperedStateError(f"grant {row.grant_id}")
        return row

    def _page(self, query: Any, limit: int, after: str | None) -> list[dict[str, Any]]:
        c = key_grants.c
        if after is not None:
            query = query.where(c.grant_id > after)
        with self._uow.read() as session:  # type: ignore[attr-defined]
            return [_entry(self._checked(r)) for r in session.execute(query.order_by(c.grant_id).limit(limit))]

    def of_key(self, key_id: str, limit: int, after: str | None, grant_id: str | None = None,
               grantee_principal: str | None = None) -> list[dict[str, Any]]:
        c = key_grants.c
        query = sa.select(key_grants).where(c.key_id == key_id)
        if grant_id is not None:
            query = query.where(c.grant_id == grant_id)
        if grantee_principal is not None:
            query = query.where(c.grantee_principal == grantee_principal)
        return self._page(query, limit, after)

    def retirable_by(self, region: str, retiring_principal: str, limit: int,
                     after: str | None) -> list[dict[str, Any]]:
        c = key_grants.c
        return self._page(sa.select(key_grants).where(c.region == region, c.retiring_principal == retiring_principal),
                          limit, after)
