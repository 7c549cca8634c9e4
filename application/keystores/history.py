"""Custom key stores at a moment, replayed from their events: "which store held key K on date D, and was it
connected then". Like every history query it reads the event log only (it works on a sealed service and on
an auditor's copy of the database)."""
from __future__ import annotations

from datetime import datetime
from typing import Any

from domain.errors import NotFoundError, shown
from domain.keystores.store import CustomKeyStore, store_uuid


def store_at(ledger: Any, store_id: str, at: datetime) -> dict[str, Any]:
    """The store as DescribeCustomKeyStores would have answered at ``at`` (ConnectionState included), with
    ``Deleted`` and the version replayed; NotFound if it did not exist then."""
    store: CustomKeyStore | None = None
    for event in ledger.events.get(store_uuid(store_id)):
        if event.timestamp > at:
            break
        store = event.mutate(store)
    if store is None:
        raise NotFoundError(f"Custom key store '{shown(store_id)}' did not exist at {at.isoformat()}.")
    return {"CustomKeyStore": store.describe(), "Deleted": store.deleted, "Version": store.version,
            "AccountId": store.account_id, "Region": store.region, "AsOf": at}


def key_store_at(ledger: Any, key_answer: dict[str, Any], at: datetime) -> dict[str, Any]:
    """For a PointInTime.key_at answer: the store that held the key then and its state then (None: the key was
    not in a custom key store)."""
    meta = key_answer["KeyMetadata"]
    store_id = meta.get("CustomKeyStoreId")
    return {"KeyId": meta["KeyId"], "KeyState": meta["KeyState"], "AsOf": at,
            "Store": store_at(ledger, store_id, at) if store_id else None}
