"""`keyledger audit verify`'s check of what the chain does not cover: read-model rows and snapshots, which
the service reads and tags (domain/audit/seals.py). Needs the row key, so the root key."""
from __future__ import annotations

from typing import Any, Iterator

import sqlalchemy as sa
from eventsourcing.persistence import StoredEvent

from application.ledger import KeyLedger, LedgerTagError
from domain.audit.seals import RowSeal
from infrastructure.tables import access_keys, xks_credentials
from projections.principal_tables import principals
from projections.tables import aliases, custom_key_stores, key_grants, key_state

TAGGED_TABLES = (key_state, aliases, key_grants, principals, access_keys, xks_credentials, custom_key_stores)
PAGE = 1000


def _primary_key(table: sa.Table, row: Any) -> str:
    return ", ".join(str(row._mapping[c.name]) for c in table.primary_key.columns)


def forged_rows(ledger: KeyLedger, seal: RowSeal, limit: int = 100) -> Iterator[str]:
    """A line per read-model row whose tag does not match, and per snapshot that fails its check."""
    engine = ledger.recorder.datastore.engine  # type: ignore[attr-defined]
    found = 0
    with engine.connect() as conn:
        for table in TAGGED_TABLES:
            for row in conn.execute(sa.select(table)):
                if not seal.matches(table.name, row._mapping):
                    yield f"{table.name}[{_primary_key(table, row)}] was changed outside the service: its tag does not match"
                    found += 1
                    if found >= limit:
                        return
        if ledger.snapshots is None:
            return
        snapshots = ledger.snapshots.recorder.events_record_cls.__table__  # type: ignore[attr-defined]
        for row in conn.execute(sa.select(snapshots)):
            try:
                ledger.mapper.to_domain_event(StoredEvent(row.originator_id, row.originator_version, row.topic,
                                                          bytes(row.state)))
            except LedgerTagError:
                yield (f"snapshot of aggregate {row.originator_id} version {row.originator_version} was changed outside "
                       "the service: its tag does not match")
                found += 1
                if found >= limit:
                    return
