"""`keyledger audit verify`'s check that every tagged read-model and credential row is still what the events say
now (decision 190). A row's tag (domain/audit/seals.py: RowSeal) proves the service wrote it, not when: an older
copy put back by someone with write access to the database (a disabled key's Enabled row, a revoked grant, a
deleted alias, principal or credential, an Inactive access key's Active row) still matches its tag. The service
refuses such rows when it reads them (projections/key_state_view.py: at_head); this names them.

Versioned rows (key state, aliases, principals, custom key stores) must carry their aggregate's newest stored
version, and every such aggregate whose events do not end in its deletion must have its row (a row deleted is as
much a change as an older one put back: a deleted alias row is invisible to a list, decision 265); access keys
must be held, with that status, by their owner's current principal row; grants must be in their key's current
row; an XKS proxy credential's aggregate must not end deleted. Rows whose tag fails are forged_rows' to name
(infrastructure/row_audit.py), not repeated here."""
from __future__ import annotations

import json
import uuid
from typing import Any, Callable, Iterator

import sqlalchemy as sa
from eventsourcing.utils import get_topic

from application.ledger import KeyLedger
from domain.audit.seals import RowSeal
from domain.errors import IamValidationError
from domain.keys.alias import Alias
from domain.keys.key import Key
from domain.keystores.store import CustomKeyStore, store_uuid
from domain.principals.arns import parse_principal_arn
from domain.principals.principal import Principal
from domain.xks.credential import credential_uuid
from infrastructure.storage import one_snapshot
from infrastructure.tables import access_keys, xks_credentials
from projections.principal_tables import principals
from projections.tables import aliases, custom_key_stores, key_grants, key_state

_STALE = "is not what its events say now ({}): an older copy of the row was put back"


def _key(table: sa.Table, row: Any) -> str:
    return ", ".join(str(row._mapping[c.name]) for c in table.primary_key.columns)


def _owner(arn: str) -> str | None:
    try:
        return str(parse_principal_arn(arn).aggregate_id)
    except IamValidationError:
        return None


VERSIONED: tuple[tuple[sa.Table, Callable[[Any], str]], ...] = (
    (key_state, lambda r: r.storage_id), (aliases, lambda r: r.alias_id), (principals, lambda r: r.principal_id),
    (custom_key_stores, lambda r: str(store_uuid(r.store_id))))
# Whose aggregate each versioned table holds a row of, and the event after which it holds none (the projections
# delete the row on it: projections/key_state_view.py, principal_view.py, custom_key_store_view.py).
_ROW_OF = {get_topic(aggregate): (table, get_topic(aggregate.Deleted)) for aggregate, table in (
    (Key, key_state), (Alias, aliases), (Principal, principals), (CustomKeyStore, custom_key_stores))}
_MISSING = "is missing: its events say it exists (newest event {}, version {}): the row was deleted"


def _newest_events(conn: Any, events: sa.Table) -> Iterator[tuple[str, int, str]]:
    """(aggregate id, newest version, that event's topic) of every aggregate."""
    newest = sa.select(events.c.originator_id, sa.func.max(events.c.originator_version).label("version")).group_by(
        events.c.originator_id).subquery()
    for originator, version, topic in conn.execute(sa.select(events.c.originator_id, newest.c.version, events.c.topic)
                                                   .join(newest, sa.and_(events.c.originator_id == newest.c.originator_id,
                                                                         events.c.originator_version == newest.c.version))):
        yield str(uuid.UUID(str(originator))), version, topic


def stale_rows(ledger: KeyLedger, seal: RowSeal, limit: int = 100) -> Iterator[str]:
    engine = ledger.recorder.datastore.engine  # type: ignore[attr-defined]
    events = ledger.recorder.events_record_cls.__table__  # type: ignore[attr-defined]
    found = 0
    with one_snapshot(engine) as conn:  # the heads and the rows as one moment saw them
        heads: dict[str, int] = {}
        alive: dict[str, dict[str, tuple[int, str]]] = {table.name: {} for table, _ in VERSIONED}
        for aggregate, version, topic in _newest_events(conn, events):
            heads[aggregate] = version
            kind = _ROW_OF.get(topic.rpartition(".")[0])  # "domain.keys.alias:Alias" of "...:Alias.Retargeted"
            if kind is not None and topic != kind[1]:
                alive[kind[0].name][aggregate] = (version, topic)
        current: dict[str, dict[str, Any]] = {table.name: {} for table, _ in VERSIONED}
        for table, aggregate_of in VERSIONED:
            for row in conn.execute(sa.select(table)):
                alive[table.name].pop(aggregate_of(row), None)  # its row is there; whether it is current, below
                if not seal.matches(table.name, row._mapping):
                    continue
                head = heads.get(aggregate_of(row))
                if head != row.version:
                    yield f"{table.name}[{_key(table, row)}] " + _STALE.format(
                        f"row version {row.version}, its aggregate's newest event {head}")
                    found += 1
                else:
                    current[table.name][aggregate_of(row)] = row
                if found >= limit:
                    return
            for aggregate, (version, topic) in alive[table.name].items():
                yield f"{table.name}[{aggregate}] " + _MISSING.format(topic.rpartition(":")[2], version)
                found += 1
                if found >= limit:
                    return
        for row in conn.execute(sa.select(access_keys)):
            if not seal.matches(access_keys.name, row._mapping):
                continue
            owner = current[principals.name].get(_owner(row.principal_arn) or "")
            held = json.loads(owner.access_keys_json).get(row.access_key_id) if owner is not None else None
            if held != row.status:
                yield f"access_keys[{row.access_key_id}] " + _STALE.format(
                    f"status {row.status}, its owner's events say {held or 'no such key'}")
                found += 1
                if found >= limit:
                    return
        for row in conn.execute(sa.select(key_grants)):
            if not seal.matches(key_grants.name, row._mapping):
                continue
            key = current[key_state.name].get(row.key_id)
            held = key is not None and any(g.get("grant_id") == row.grant_id for g in json.loads(key.grants_json))
            if not held:
                yield f"key_grants[{row.grant_id}] " + _STALE.format("its key's events hold no such grant in force")
                found += 1
                if found >= limit:
                    return
        credentials = list(conn.execute(sa.select(xks_credentials)))
        for row in credentials:
            if not seal.matches(xks_credentials.name, row._mapping):
                continue
            aggregate = credential_uuid(row.access_key_id)
            topic = conn.execute(
                sa.select(events.c.topic).where(events.c.originator_id == aggregate)
                .order_by(events.c.originator_version.desc()).limit(1)).scalar()
            if topic is None or topic.endswith(".Deleted"):
                yield f"xks_credentials[{row.access_key_id}] " + _STALE.format("its events say it was deleted")
                found += 1
                if found >= limit:
                    return
