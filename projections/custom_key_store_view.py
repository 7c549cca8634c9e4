"""The custom key store view: one tagged row per store, written in its events' transaction."""
from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any, Sequence

import sqlalchemy as sa
from eventsourcing.domain import Aggregate

from application.keystores.ports import KeyStoreRow
from domain.audit.seals import RowSeal
from domain.keystores.store import CustomKeyStore, store_uuid
from projections.key_state_view import _TtlCache
from projections.row_checks import HeadVersion, HeadVersions, at_head, checked, rows_at_head
from projections.tables import custom_key_stores


def _encode_entry(entry: dict[str, Any]) -> str:
    return json.dumps({k: (v.timestamp() if isinstance(v, datetime) else v) for k, v in entry.items()}, sort_keys=True)


def _decode_entry(text: str) -> dict[str, Any]:
    entry = json.loads(text)
    entry["CreationDate"] = datetime.fromtimestamp(entry["CreationDate"], tz=timezone.utc)
    return entry


def project_key_stores(tx: Any, aggregates: Sequence[Aggregate], seal: RowSeal | None) -> None:
    for store in aggregates:
        if not isinstance(store, CustomKeyStore):
            continue
        where = custom_key_stores.c.store_id == store.store_id
        if store.deleted:
            tx.execute(custom_key_stores.delete().where(where))
            continue
        values = {
            "store_id": store.store_id, "account_id": store.account_id, "region": store.region, "name": store.name,
            "store_type": store.store_type, "connection_state": store.connection_state,
            "cluster_id": store.settings.get("cluster_id"), "entry_json": _encode_entry(store.describe()),
            "version": store.version,
        }
        if seal is not None:
            values = seal.sealed(custom_key_stores.name, values)
        if tx.execute(custom_key_stores.update().where(where).values(**values)).rowcount == 0:
            tx.execute(custom_key_stores.insert().values(**values))


def _store_of(row: Any) -> Any:
    return store_uuid(row.store_id)


def _named(row: Any) -> str:
    return f"custom key store {row.store_id}"


class SqlCustomKeyStoreView:
    """application/keystores/ports.py: KeyStoreView. Rows are checked against their tag on every read."""

    def __init__(self, datastore: Any, cache_seconds: float = 1.0, seal: RowSeal | None = None,
                 head_version: HeadVersion | None = None, head_versions: HeadVersions | None = None) -> None:
        self._datastore = datastore
        self._head = head_version
        self._heads = head_versions  # whole rows in lists are as new as their events too (decision 265)
        self._cache = _TtlCache(cache_seconds)
        self._seal = seal

    def _row(self, r: Any) -> KeyStoreRow:
        checked(self._seal, custom_key_stores, r, lambda: f"custom key store {r.store_id}")
        return KeyStoreRow(store_id=r.store_id, account_id=r.account_id, region=r.region, name=r.name,
                           store_type=r.store_type, connection_state=r.connection_state, cluster_id=r.cluster_id,
                           entry=_decode_entry(r.entry_json))

    def _rows(self, query: Any, tx: Any = None) -> list[Any]:
        """Whole rows, each as new as its store's events."""
        if tx is not None:
            return rows_at_head(tx, query, self._heads, _store_of, _named)
        with self._datastore.transaction(commit=False) as session:
            return rows_at_head(session, query, self._heads, _store_of, _named)

    def get(self, store_id: str) -> KeyStoreRow | None:
        def load() -> KeyStoreRow | None:
            with self._datastore.transaction(commit=False) as session:
                row = at_head(session, sa.select(custom_key_stores).where(custom_key_stores.c.store_id == store_id),
                              self._head, lambda r: store_uuid(r.store_id), lambda r: f"custom key store {r.store_id}")
            return self._row(row) if row is not None else None
        return self._cache.get(store_id, load)

    def forget(self, store_id: str) -> None:
        self._cache.drop(store_id)

    def list(self, account_id: str, region: str, limit: int, after: str | None) -> list[KeyStoreRow]:
        query = sa.select(custom_key_stores).where(custom_key_stores.c.account_id == account_id,
                                                   custom_key_stores.c.region == region)
        if after is not None:
            query = query.where(custom_key_stores.c.store_id > after)
        return [self._row(r) for r in self._rows(query.order_by(custom_key_stores.c.store_id).limit(limit))]

    def all(self) -> list[KeyStoreRow]:
        return [self._row(r) for r in self._rows(sa.select(custom_key_stores).order_by(custom_key_stores.c.store_id))]

    def by_name(self, tx: Any, account_id: str, region: str, name: str) -> KeyStoreRow | None:
        rows = self._rows(sa.select(custom_key_stores).where(
            custom_key_stores.c.account_id == account_id, custom_key_stores.c.region == region,
            custom_key_stores.c.name == name), tx)
        return self._row(rows[0]) if rows else None

    def by_cluster(self, tx: Any, cluster_ids: list[str]) -> list[KeyStoreRow]:
        return [self._row(r) for r in self._rows(
            sa.select(custom_key_stores).where(custom_key_stores.c.cluster_id.in_(cluster_ids)), tx)]

    def in_region(self, tx: Any, account_id: str, region: str) -> list[KeyStoreRow]:
        return [self._row(r) for r in self._rows(sa.select(custom_key_stores).where(
            custom_key_stores.c.account_id == account_id, custom_key_stores.c.region == region), tx)]

    def count(self, tx: Any, account_id: str, region: str) -> int:
        return len(self._rows(sa.select(custom_key_stores).where(
            custom_key_stores.c.account_id == account_id, custom_key_stores.c.region == region), tx))


def keys_in_store(tx: Any, store_id: str) -> int:
    """KMS keys of a store that still exist (pending deletion included): a store with any cannot be deleted."""
    from projections.tables import key_state

    pattern = f'%"CustomKeyStoreId": "{store_id}"%'
    return len(list(tx.execute(sa.select(key_state.c.key_id).where(key_state.c.metadata_json.like(pattern)))))


def xks_key_in_use(tx: Any, store_id: str, xks_key_id: str) -> bool:
    """Whether a KMS key of this external key store (pending deletion included) already uses this external key."""
    from projections.tables import key_state

    pattern = f'%"CustomKeyStoreId": "{store_id}"%'
    for (text,) in tx.execute(sa.select(key_state.c.metadata_json).where(key_state.c.metadata_json.like(pattern))):
        if (json.loads(text).get("XksKeyConfiguration") or {}).get("Id") == xks_key_id:
            return True
    return False
