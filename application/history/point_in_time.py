"""Point in time: what DescribeKey (with aliases, tags, policy, grants, rotation) would have answered at a past
moment, every key at a moment, and a key's history with who made each change.

"Key K at T" is the last version of K whose event timestamp is <= T (from key_event_index), loaded with
``repository.get(id, version=v)``; snapshots keep that load short however long the history is. Aliases at T come
from alias_event_index (one row per alias event), and a change's actor from the audit record whose seq the key
event index holds: every answer costs what the key's (and its aliases') own history costs, never a read of the
log, which is mostly audit records (issue 13).
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import Any, Iterable, Protocol

from eventsourcing.application import AggregateNotFoundError
from eventsourcing.domain import Aggregate, CanMutateAggregate
from eventsourcing.utils import get_topic

from application.history.call_records import CallRecords, naming
from application.ledger import KeyLedger, with_moved_topics
from application.ports import Clock
from domain.errors import NotFoundError, ValidationError, shown
from domain.identifiers import Scope, is_multi_region_key_id, key_storage_id, parse_key_reference
from domain.keys.alias import Alias
from domain.keys.key import Key

ScopeLike = Scope | tuple[str, str] | None
TIMELINE_PAGE = 100  # the default page of a timeline
MAX_TIMELINE_PAGE = 1000
AliasKey = tuple[str, str, str]  # account, region, alias name


def event_topics(aggregate: type[Aggregate]) -> frozenset[str]:
    """The topics the event store writes for this aggregate's events (nested classes may be redefined
    per aggregate class, so ask the class as the mapper will)."""
    found = set()
    for name in dir(aggregate):
        attr = getattr(aggregate, name)
        if isinstance(attr, type) and issubclass(attr, CanMutateAggregate) and not name.startswith("_"):
            found.add(get_topic(attr))
    return with_moved_topics(frozenset(found))


KEY_TOPICS = event_topics(Key)
ALIAS_TOPICS = event_topics(Alias)


@dataclass(frozen=True)
class AliasPeriod:
    account_id: str
    region: str
    key_id: str
    since: datetime
    until: datetime | None  # None: the alias still points to this key

    def covers(self, at: datetime) -> bool:
        return self.since <= at and (self.until is None or at < self.until)


@dataclass(frozen=True)
class IndexedEvent:
    version: int
    event_type: str
    timestamp: float  # epoch seconds
    notification_id: int
    audit_seq: int | None = None  # the record that names the event, when the index knows it


class KeyEventIndex(Protocol):
    """The key and alias event indexes (projections, written with each event): read here, implemented beside
    them."""

    def version_at(self, key_id: str, at: datetime) -> int | None: ...

    def versions_at(self, at: datetime) -> list[tuple[str, int]]: ...

    def events_of(self, key_id: str, after_version: int = 0, limit: int | None = None) -> list[IndexedEvent]: ...

    def alias_target_at(self, alias: AliasKey, at: datetime) -> str | None: ...

    def aliases_of_key_at(self, key_id: str, at: datetime) -> list[AliasKey]: ...

    def alias_targets_at(self, at: datetime, alias_name: str | None = None) -> dict[AliasKey, str]: ...

    def alias_events(self, alias_name: str, account_id: str | None = None) -> list[Any]:
        """Every indexed event of the aliases of this name (alias_id, version, account_id, region,
        target_key_id, timestamp), by alias and version."""
        ...


def to_scope(scope: ScopeLike) -> Scope | None:
    if scope is None or isinstance(scope, Scope):
        return scope
    return Scope(scope[0], scope[1])


def utc(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def key_view(key: Key, at: datetime, aliases: Iterable[str]) -> dict[str, Any]:
    """The answer for one key at one moment: DescribeKey's KeyMetadata and what the other read calls showed."""
    meta = key.metadata()
    return {
        "KeyMetadata": meta,
        "Aliases": sorted(aliases),
        "Tags": [{"TagKey": k, "TagValue": v} for k, v in sorted(key.tags.items())],
        "Policy": key.policy,
        "Grants": key.grant_entries(),  # ListGrants as it would have answered then
        "KeyRotationEnabled": key.rotation_enabled,
        "RotationPeriodInDays": key.rotation_period_days if key.rotation_enabled else None,
        "NextRotationDate": key.next_rotation_date if key.rotation_enabled else None,
        "CurrentKeyMaterialId": meta.get("CurrentKeyMaterialId"),
        "Version": key.version,
        "AsOf": at,
    }


class PointInTime:
    def __init__(self, ledger: KeyLedger, index: KeyEventIndex, clock: Clock) -> None:
        self._ledger = ledger
        self._index = index
        self._clock = clock
        self._records = CallRecords(ledger, KEY_TOPICS | ALIAS_TOPICS)

    # -- one key ---------------------------------------------------------------------------------

    def key_at(self, scope: ScopeLike, key_ref: str, at: datetime) -> dict[str, Any]:
        """DescribeKey as it would have answered at ``at``; a key deleted by then reports "Deleted"."""
        at = self._checked(at)
        scope = to_scope(scope)
        key_id = self._key_id(scope, key_ref, at)
        stored = _stored(scope, key_ref, key_id)
        version = self._index.version_at(stored, at)
        if version is None:
            current = self._load(stored, None)
            if current is None or not _in_scope(current, scope):
                raise NotFoundError(f"Key '{shown(_arn(scope, key_id))}' does not exist")
            raise NotFoundError(f"Key {current.arn} did not exist at {_iso(at)}")
        key = self._load(stored, version)
        if key is None or not _in_scope(key, scope):
            raise NotFoundError(f"Key '{shown(_arn(scope, key_id))}' does not exist")
        return key_view(key, at, self._aliases_of(key, at))

    def _aliases_of(self, key: Key, at: datetime) -> list[str]:
        return [name for acc, reg, name in self._index.aliases_of_key_at(key.key_id, at)
                if (acc, reg) == (key.account_id, key.region)]

    def key_id_at(self, scope: Scope, key_ref: str, at: datetime) -> str:
        """The key a reference named at ``at``: a key id or key ARN names its key; an alias name or alias ARN
        the key the alias pointed to then (NotFound if it did not exist then)."""
        at = self._checked(at)
        return self._key_id(scope, key_ref, at)

    def alias_regions_at(self, alias_name: str, at: datetime, account_id: str | None = None) -> list[tuple[str, str]]:
        """The (account, region) pairs where an alias of this name existed at ``at``."""
        at = self._checked(at)
        return sorted((acc, reg) for (acc, reg, _name) in self._index.alias_targets_at(at, alias_name)
                      if account_id in (None, acc))

    def alias_periods(self, alias_name: str, account_id: str | None = None) -> list[AliasPeriod]:
        """Every span of time during which an alias of this name pointed to a key, in any region (of
        ``account_id``, if given): from the alias event index, in each alias's version order."""
        out: list[AliasPeriod] = []
        current: AliasPeriod | None = None
        alias_id = None
        for row in self._index.alias_events(alias_name, account_id):
            if row.alias_id != alias_id:
                if current is not None:
                    out.append(current)
                current, alias_id = None, row.alias_id
            at = datetime.fromtimestamp(row.timestamp, timezone.utc)
            if current is not None and current.key_id != row.target_key_id:
                out.append(replace(current, until=at))
                current = None
            if current is None and row.target_key_id is not None:
                current = AliasPeriod(row.account_id, row.region, row.target_key_id, at, None)
        if current is not None:
            out.append(current)
        return sorted(out, key=lambda p: p.since)

    def _key_id(self, scope: Scope | None, key_ref: str, at: datetime) -> str:
        if scope is None:
            if key_ref.startswith("arn:"):
                parts = key_ref.split(":")
                scope = Scope(parts[4], parts[3], parts[1]) if len(parts) >= 6 else None
            if scope is None:
                return _checked_id(key_ref)
        reference = parse_key_reference(key_ref, scope)
        if reference.key_id is not None:
            return reference.key_id
        target = self._index.alias_target_at((scope.account_id, scope.region, reference.alias_name or ""), at)
        if target is None:
            raise NotFoundError(f"Alias {shown(scope.alias_arn(reference.alias_name or ''))} did not exist at {_iso(at)}")
        return target

    # -- every key -------------------------------------------------------------------------------

    def keys_at(self, at: datetime, account_id: str | None = None, region: str | None = None,
                state: str | None = None, key_spec: str | None = None, alias: str | None = None) -> list[dict[str, Any]]:
        at = self._checked(at)
        targets = self._index.alias_targets_at(at)
        aliased = {key_storage_id(k, reg) for (acc, reg, name), k in targets.items() if name == alias
                   and account_id in (None, acc) and region in (None, reg)} if alias else None
        out = []
        for key_id, version in self._index.versions_at(at):
            if aliased is not None and key_id not in aliased:
                continue
            key = self._load(key_id, version)
            if key is None or account_id not in (None, key.account_id) or region not in (None, key.region):
                continue
            if state not in (None, key.state) or key_spec not in (None, key.key_spec):
                continue
            out.append(key_view(key, at, _aliases_in(key, targets)))
        return out

    # -- history ---------------------------------------------------------------------------------

    def timeline(self, key_ref: str, scope: ScopeLike = None) -> list[dict[str, Any]]:
        """Every event of the key in order, with the audit record of the call that made it (all pages)."""
        out: list[dict[str, Any]] = []
        marker: str | None = None
        while True:
            page = self.timeline_page(key_ref, scope, MAX_TIMELINE_PAGE, marker)
            out.extend(page["Events"])
            if not page["Truncated"]:
                return out
            marker = page["NextMarker"]

    def timeline_page(self, key_ref: str, scope: ScopeLike = None, limit: int = TIMELINE_PAGE,
                      marker: str | None = None) -> dict[str, Any]:
        """One page of the key's events in order (``limit`` of them after ``marker``, the NextMarker of the page
        before), each with the audit record of the call that made it: ``{"Events", "Truncated", "NextMarker"}``.
        Cost: the page's index rows, its events and one record lookup per distinct record."""
        if not 1 <= limit <= MAX_TIMELINE_PAGE:
            raise ValidationError(f"Limit must be between 1 and {MAX_TIMELINE_PAGE}.")
        after = _timeline_marker(marker)
        scope = to_scope(scope)
        key_id = self._key_id(scope, key_ref, self._clock.now())
        stored = _stored(scope, key_ref, key_id)
        key_uuid = uuid.UUID(stored)
        rows = self._index.events_of(stored, after, limit + 1)
        if not rows and after == 0:
            raise NotFoundError(f"Key '{shown(_arn(scope, key_id))}' does not exist")
        truncated, rows = len(rows) > limit, rows[:limit]
        key = self._load(stored, rows[-1].version if rows else after)
        if key is None or not _in_scope(key, scope):
            raise NotFoundError(f"Key '{shown(_arn(scope, key_id))}' does not exist")
        events = {e.originator_version: e for e in self._ledger.events.get(
            key_uuid, gt=rows[0].version - 1, lte=rows[-1].version)} if rows else {}
        records: dict[int, dict[str, Any] | None] = {}
        out = []
        for row in rows:
            event = events.get(row.version)
            if row.audit_seq is not None:
                if row.audit_seq not in records:
                    records[row.audit_seq] = self._records.at(row.audit_seq)
                record = naming(records[row.audit_seq], key_uuid, row.version, key.arn)
            else:  # an index row from before the index held the record's seq
                record = self._records.of_event(key_uuid, row.version, key.arn, row.notification_id)
            identity = (record or {}).get("userIdentity") or {}
            out.append({
                "Version": row.version, "EventType": row.event_type,
                "Time": event.timestamp if event is not None else datetime.fromtimestamp(row.timestamp, timezone.utc),
                "NotificationId": row.notification_id,
                "Details": _details(event) if event is not None else {},
                "Actor": identity.get("arn") or identity.get("invokedBy"),
                "EventName": (record or {}).get("eventName"),
                "RequestId": (record or {}).get("requestID"),
                "AuditSeq": (record or {}).get("seq"),
            })
        page: dict[str, Any] = {"Events": out, "Truncated": truncated}
        if truncated:
            page["NextMarker"] = str(rows[-1].version)
        return page

    # -- helpers ---------------------------------------------------------------------------------

    def _checked(self, at: datetime) -> datetime:
        at = utc(at)
        if at > self._clock.now():
            raise ValidationError(f"{_iso(at)} is in the future: history is known only up to now.")
        return at

    def _load(self, storage_id: str, version: int | None) -> Key | None:
        try:
            key = self._ledger.repository.get(uuid.UUID(storage_id), version=version)
        except (AggregateNotFoundError, ValueError):
            return None
        return key if isinstance(key, Key) else None


def _aliases_in(key: Key, targets: dict[AliasKey, str]) -> list[str]:
    return [name for (acc, reg, name), target in targets.items()
            if target == key.key_id and (acc, reg) == (key.account_id, key.region)]


def _timeline_marker(marker: str | None) -> int:
    if marker is None or marker == "":
        return 0
    if not marker.isdigit() or len(marker) > 12:
        raise ValidationError(f"Marker '{shown(marker)}' is not a NextMarker of this timeline.")
    return int(marker)


def _stored(scope: Scope | None, key_ref: str, key_id: str) -> str:
    """The storage id (domain.identifiers.key_storage_id) of ``key_id`` named by ``key_ref``: a multi-Region key's
    needs the Region, from the scope or the ARN."""
    if not is_multi_region_key_id(key_id):
        return key_id
    region = scope.region if scope is not None else (key_ref.split(":")[3] if key_ref.startswith("arn:") else None)
    if region is None:
        raise NotFoundError(f"Key '{shown(key_ref)}' is a multi-Region key: name it by its key ARN, or with a Region.")
    return key_storage_id(key_id, region)


def _in_scope(key: Key, scope: Scope | None) -> bool:
    return scope is None or (key.account_id, key.region) == (scope.account_id, scope.region)


def _arn(scope: Scope | None, key_id: str) -> str:
    return scope.key_arn(key_id) if scope else key_id


def _checked_id(key_ref: str) -> str:
    if is_multi_region_key_id(key_ref):
        return key_ref
    try:
        return str(uuid.UUID(key_ref))
    except ValueError:
        raise NotFoundError(f"Invalid keyId '{shown(key_ref)}': use a key id or key ARN (an alias needs a region).") from None


def _iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def _details(event: Any) -> dict[str, Any]:
    # The identifying fields are in the row already; what is left is what the change said.
    skip = {"originator_id", "originator_version", "timestamp", "originator_topic"}
    return {k: v for k, v in event.__dict__.items() if k not in skip}


__all__ = ["AliasPeriod", "PointInTime", "KeyEventIndex", "IndexedEvent", "key_view", "KEY_TOPICS", "ALIAS_TOPICS"]
