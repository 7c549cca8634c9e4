"""The key-state view: what DescribeKey, ListKeys, ListAliases and every crypto call read."""
from __future__ import annotations

import dataclasses
import json
import threading
import time
from datetime import datetime, timezone
from typing import Any, Callable, Mapping, Sequence

import sqlalchemy as sa
from eventsourcing.application import Recording
from eventsourcing.domain import Aggregate
from sqlalchemy.orm import Session

from application.ports import AliasRow, KeyRow
from domain.audit.seals import RowSeal
from domain.identifiers import Scope
from domain.keys.alias import Alias
from domain.keys.key import Key
from domain.keys.states import KeyState
from domain.policy.evaluation import Grant
from projections.grants_view import project_grants
from projections.row_checks import HeadVersion, HeadVersions, aggregate_uuid, at_head, checked, rows_at_head
from projections.row_inserts import insert_rows, insert_tuple_rows
from projections.tables import alias_event_index, aliases, key_event_index, key_state

_TIMESTAMP_FIELDS = ("CreationDate", "DeletionDate", "ValidTo")
KEY_EVENT_COLUMNS = ("key_id", "version", "event_type", "timestamp", "notification_id", "audit_seq")


def _epoch(value: datetime) -> float:
    return value.timestamp()


def _maybe_epoch(value: datetime | None) -> float | None:
    return None if value is None else value.timestamp()


def _current_valid_to(key: Key) -> datetime | None:
    """The earliest expiry of any material still present: maintenance wakes for each (decision 89)."""
    dates = [m["valid_to"] for m in key.materials if m.get("present") and m.get("valid_to") is not None]
    return min(dates) if dates else None


def _from_epoch(value: float) -> datetime:
    return datetime.fromtimestamp(value, tz=timezone.utc)


def encode_grants(key: Key) -> str:
    return json.dumps([{**dataclasses.asdict(g), "operations": sorted(g.operations)} for g in key.active_grants()],
                      sort_keys=True)


def decode_grants(text: str) -> tuple[Grant, ...]:
    return tuple(Grant(**{**g, "operations": frozenset(g["operations"])}) for g in json.loads(text))


def encode_metadata(meta: dict[str, Any]) -> str:
    """Key metadata as the key_state row stores it (timestamps as epoch seconds, keys sorted)."""
    return json.dumps({k: (_epoch(v) if isinstance(v, datetime) else v) for k, v in meta.items()}, sort_keys=True)


# Materials of the key deleted or expired while the key stays usable (decision 89). Kept in metadata_json, under a
# name no KeyMetadata member has, so every process's row says which ciphertexts no longer decrypt, even where its
# in-memory backing-key cache still holds the material. Never part of DescribeKey's answer.
ABSENT_MATERIALS = "_AbsentMaterialIds"


def _row_metadata(key: Key) -> dict[str, Any]:
    meta = key.metadata()
    absent = sorted(m["material_id"] for m in key.materials if not m.get("present"))
    if absent:
        meta[ABSENT_MATERIALS] = absent
    return meta


def _decode_metadata(text: str) -> dict[str, Any]:
    meta = json.loads(text)
    meta.pop(ABSENT_MATERIALS, None)
    for field in _TIMESTAMP_FIELDS:
        if field in meta:
            meta[field] = _from_epoch(meta[field])
    return meta


def _absent(text: str) -> frozenset[str]:
    if ABSENT_MATERIALS not in text:  # the common row: no second JSON parse
        return frozenset()
    return frozenset(json.loads(text).get(ABSENT_MATERIALS, ()))


class _TtlCache:
    """Rows read on the hot path, kept for a moment. Writes in this process drop what they change after
    they commit; another process's writes show here within ``ttl`` seconds (AWS KMS, too, documents that
    key state changes take effect with eventual consistency)."""

    def __init__(self, ttl: float) -> None:
        self._ttl = ttl
        self._rows: dict[Any, tuple[float, Any]] = {}
        self._lock = threading.Lock()

    def get(self, key: Any, load: Any) -> Any:
        if self._ttl <= 0:
            return load()
        now = time.monotonic()
        hit = self._rows.get(key)
        if hit is not None and hit[0] > now:
            return hit[1]
        value = load()
        with self._lock:
            if len(self._rows) > 100_000:
                self._rows.clear()
            self._rows[key] = (now + self._ttl, value)
        return value

    def drop(self, key: Any) -> None:
        with self._lock:
            self._rows.pop(key, None)


def alias_event_row(alias: Alias, recording: Recording) -> dict[str, Any]:
    """The alias_event_index row of one alias event: the alias's name and the key it names after the event."""
    event = recording.domain_event
    target = None if isinstance(event, Alias.Deleted) else getattr(event, "target_key_id", alias.target_key_id)
    return {"alias_id": str(event.originator_id), "version": event.originator_version, "account_id": alias.account_id,
            "region": alias.region, "alias_name": alias.alias_name, "target_key_id": target,
            "timestamp": _epoch(event.timestamp), "notification_id": recording.notification.id}


class SqlKeyStateView:
    def __init__(self, datastore: Any, cache_seconds: float = 1.0, seal: RowSeal | None = None,
                 head_version: HeadVersion | None = None, head_versions: HeadVersions | None = None) -> None:
        # eventsourcing_sqlalchemy's datastore: its transactions nest, so a read inside a write sees it.
        self._datastore = datastore
        self._head = head_version  # None: rows are not compared with their events (replay's and auditors' readers)
        self._heads = head_versions  # the same, for lists
        self._keys = _TtlCache(cache_seconds)
        self._aliases = _TtlCache(cache_seconds)
        self._seal = seal  # None: a sealed service's or an auditor's reader, which writes nothing

    def _sealed(self, table: sa.Table, values: dict[str, Any]) -> dict[str, Any]:
        return self._seal.sealed(table.name, values) if self._seal is not None else values

    def forget(self, aggregates: Sequence[Aggregate]) -> None:
        """Called after a write commits: this process must see its own writes at once."""
        for aggregate in aggregates:
            if isinstance(aggregate, Key):
                self._keys.drop(aggregate.storage_id)
            elif isinstance(aggregate, Alias):
                self._aliases.drop((aggregate.account_id, aggregate.region, aggregate.alias_name))

    # -- writing (inside the caller's transaction) -----------------------------------------------

    def project(self, tx: Session, aggregates: Sequence[Aggregate], recordings: Sequence[Recording],
                audit_seq: int | Mapping[int, int] | None = None) -> None:
        """``audit_seq``: the seq of the record that names these events, or (the replay) that seq by each
        event's store position."""
        key_ids = {a.id: str(a.id) for a in aggregates if isinstance(a, Key)}  # each id's text once, not per row
        alias_of = {a.id: a for a in aggregates if isinstance(a, Alias)}
        for aggregate in aggregates:
            if isinstance(aggregate, Key):
                self._write_key(tx, aggregate)
            elif isinstance(aggregate, Alias):
                self._write_alias(tx, aggregate)
        # One seq for all, or one by position; decided once, not per row (isinstance of a typing ABC is slow).
        seq_of = audit_seq.get if isinstance(audit_seq, Mapping) else (lambda _position: audit_seq)
        # Tuples in KEY_EVENT_COLUMNS' order; the id's dictionary lookup (a UUID's hash is Python code) only when
        # the aggregate changes from the previous event's, since a change's (and a replayed page's) events come
        # in runs of one aggregate.
        rows: list[tuple[Any, ...]] = []
        if key_ids:
            last, key_id = None, None
            for r in recordings:
                event = r.domain_event
                if event.originator_id is not last:
                    last, key_id = event.originator_id, key_ids.get(event.originator_id)
                if key_id is not None:
                    position = r.notification.id
                    rows.append((key_id, event.originator_version, type(event).__name__, _epoch(event.timestamp),
                                 position, seq_of(position)))
        insert_tuple_rows(tx, key_event_index, KEY_EVENT_COLUMNS, rows)
        alias_rows = [alias_event_row(alias_of[r.domain_event.originator_id], r) for r in recordings
                      if r.domain_event.originator_id in alias_of] if alias_of else []
        insert_rows(tx, alias_event_index, alias_rows)
        project_grants(tx, aggregates, recordings, self._seal)
        from projections.custom_key_store_view import project_key_stores

        project_key_stores(tx, aggregates, self._seal)

    @staticmethod
    def _upsert(tx: Session, table: sa.Table, where: Any, values: dict[str, Any]) -> None:
        if tx.execute(table.update().where(where).values(**values)).rowcount == 0:
            tx.execute(table.insert().values(**values))

    def _write_key(self, tx: Session, key: Key) -> None:
        if key.key_state is KeyState.DELETED:
            tx.execute(key_state.delete().where(key_state.c.storage_id == key.storage_id))
            return
        # A replica rotates with its primary, never by itself: no date for maintenance to wake it on.
        rotates = key.rotation_enabled and not key.is_replica
        self._upsert(tx, key_state, key_state.c.storage_id == key.storage_id, self._sealed(key_state, {
            "storage_id": key.storage_id, "key_id": key.key_id, "account_id": key.account_id, "region": key.region,
            "arn": key.arn,
            "key_state": key.state, "key_spec": key.key_spec, "key_usage": key.key_usage,
            "current_material_id": key.current_material_id, "creation_date": _epoch(key.created_on),
            "next_rotation_date": _maybe_epoch(key.next_rotation_date if rotates else None),
            "deletion_date": _maybe_epoch(key.deletion_date),
            "material_valid_to": _maybe_epoch(_current_valid_to(key)),
            "version": key.version, "metadata_json": encode_metadata(_row_metadata(key)),
            "policy": key.policy, "grants_json": encode_grants(key),
        }))

    def _write_alias(self, tx: Session, alias: Alias) -> None:
        where = sa.and_(aliases.c.account_id == alias.account_id, aliases.c.region == alias.region,
                        aliases.c.alias_name == alias.alias_name)
        if alias.deleted:
            tx.execute(aliases.delete().where(where))
            return
        scope = Scope(alias.account_id, alias.region)
        self._upsert(tx, aliases, where, self._sealed(aliases, {
            "account_id": alias.account_id, "region": alias.region, "alias_name": alias.alias_name,
            "alias_arn": scope.alias_arn(alias.alias_name), "target_key_id": alias.target_key_id,
            "creation_date": _epoch(alias.creation_date), "last_updated_date": _epoch(alias.modified_on),
            "alias_id": str(alias.id), "version": alias.version,
        }))

    # -- reading ---------------------------------------------------------------------------------

    def _rows(self, query: Any) -> list[Any]:
        with self._datastore.transaction(commit=False) as session:
            return list(session.execute(query))

    def _key_row(self, r: Any) -> KeyRow:
        checked(self._seal, key_state, r, lambda: f"key {r.key_id}")
        return KeyRow(key_id=r.key_id, storage_id=r.storage_id, arn=r.arn, account_id=r.account_id, region=r.region, key_state=r.key_state,
                      key_spec=r.key_spec, key_usage=r.key_usage, current_material_id=r.current_material_id,
                      metadata=_decode_metadata(r.metadata_json), policy=r.policy,
                      grants=decode_grants(r.grants_json), absent_material_ids=_absent(r.metadata_json))

    def _alias_row(self, r: Any) -> AliasRow:
        checked(self._seal, aliases, r, lambda: f"alias {r.alias_name} in {r.account_id}/{r.region}")
        return AliasRow(alias_name=r.alias_name, alias_arn=r.alias_arn, target_key_id=r.target_key_id,
                        creation_date=_from_epoch(r.creation_date), last_updated_date=_from_epoch(r.last_updated_date))

    def _row_at_head(self, query: Any, aggregate_of: Callable[[Any], Any], what: Callable[[Any], str]) -> Any:
        with self._datastore.transaction(commit=False) as session:
            return at_head(session, query, self._head, aggregate_of, what)

    def get_key(self, storage_id: str) -> KeyRow | None:
        def load() -> KeyRow | None:
            row = self._row_at_head(sa.select(key_state).where(key_state.c.storage_id == storage_id),
                                    lambda r: aggregate_uuid(r.storage_id), lambda r: f"key {r.key_id}")
            return self._key_row(row) if row is not None else None
        return self._keys.get(storage_id, load)

    def _fresh_rows(self, query: Any, aggregate_of: Callable[[Any], Any], what: Callable[[Any], str]) -> list[Any]:
        with self._datastore.transaction(commit=False) as session:
            return rows_at_head(session, query, self._heads, aggregate_of, what)

    def _fresh_keys(self, query: Any) -> list[Any]:
        return self._fresh_rows(query, lambda r: aggregate_uuid(r.storage_id), lambda r: f"key {r.key_id}")

    def _fresh_aliases(self, query: Any) -> list[Any]:
        return self._fresh_rows(query, lambda r: aggregate_uuid(r.alias_id),
                                lambda r: f"alias {r.alias_name} in {r.account_id}/{r.region}")

    def list_keys(self, account_id: str, region: str, limit: int, after: str | None) -> list[KeyRow]:
        query = sa.select(key_state).where(key_state.c.account_id == account_id, key_state.c.region == region)
        if after is not None:
            query = query.where(key_state.c.key_id > after)
        return [self._key_row(r) for r in self._fresh_keys(query.order_by(key_state.c.key_id).limit(limit))]

    def get_alias(self, account_id: str, region: str, alias_name: str) -> AliasRow | None:
        def load() -> AliasRow | None:
            row = self._row_at_head(sa.select(aliases).where(
                aliases.c.account_id == account_id, aliases.c.region == region, aliases.c.alias_name == alias_name),
                lambda r: aggregate_uuid(r.alias_id), lambda r: f"alias {r.alias_name} in {r.account_id}/{r.region}")
            return self._alias_row(row) if row is not None else None
        return self._aliases.get((account_id, region, alias_name), load)

    def list_aliases(self, account_id: str, region: str, key_id: str | None, limit: int,
                     after: str | None) -> list[AliasRow]:
        query = sa.select(aliases).where(aliases.c.account_id == account_id, aliases.c.region == region)
        if key_id is not None:
            query = query.where(aliases.c.target_key_id == key_id)
        if after is not None:
            query = query.where(aliases.c.alias_name > after)
        return [self._alias_row(r) for r in self._fresh_aliases(query.order_by(aliases.c.alias_name).limit(limit))]

    def due_key_ids(self, now: datetime) -> list[str]:
        """Keys the service may have to act on by itself: rotation, deletion or material expiry is due."""
        t = now.timestamp()
        return [r.storage_id for r in self._rows(sa.select(key_state.c.storage_id).where(sa.or_(
            key_state.c.next_rotation_date <= t, key_state.c.deletion_date <= t,
            key_state.c.material_valid_to <= t)).order_by(key_state.c.storage_id))]

    def aliases_of(self, account_id: str, region: str, key_id: str) -> list[str]:
        """The key's alias names (kms:ResourceAliases): authorization reads them, so whole rows, checked, each as new
        as its alias's events. By account and Region too: related multi-Region keys share a key id, and each has
        aliases of its own."""
        return [self._alias_row(r).alias_name for r in self._fresh_aliases(
            sa.select(aliases).where(aliases.c.target_key_id == key_id, aliases.c.account_id == account_id,
                                     aliases.c.region == region).order_by(aliases.c.alias_name))]
