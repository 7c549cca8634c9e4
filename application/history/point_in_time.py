"""Point in time: what DescribeKey (with aliases, tags, policy, grants, rotation) would have answered at a past
moment, every key at a moment, and a key's history with who made each change.

"Key K at T" is the last version of K whose event timestamp is <= T (from key_event_index), loaded with
``repository.get(id, version=v)``; snapshots keep that load short however long the history is.

Aliases at T come from the Alias aggregates' own events, read from the event store by topic (no extra
table: the projection schema belongs to projections/tables.py, and a whole-log scan would decode every
audit record too). The alias events are read once and then incrementally by notification id, which is
safe because the event table is written under a lock in commit order (SQLite: one writer; PostgreSQL:
eventsourcing_sqlalchemy locks the table), so a later read never finds an older id appearing.
"""
from __future__ import annotations

import threading
import uuid
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import Any, Iterable, Protocol

from eventsourcing.application import AggregateNotFoundError
from eventsourcing.domain import Aggregate, CanMutateAggregate
from eventsourcing.utils import get_topic

from application.ledger import KeyLedger, with_moved_topics
from application.ports import Clock
from domain.audit.log import AUDIT_LOG_ID, LEDGER_EVENTS
from domain.errors import NotFoundError, ValidationError, shown
from domain.identifiers import Scope, parse_key_reference
from domain.keys.alias import Alias
from domain.keys.key import Key

ScopeLike = Scope | tuple[str, str] | None
SCAN_PAGE = 32
ALIAS_PAGE = 1000


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


class KeyEventIndex(Protocol):
    """The key event index (a projection, written with each event): read here, implemented beside it."""

    def version_at(self, key_id: str, at: datetime) -> int | None: ...

    def versions_at(self, at: datetime) -> list[tuple[str, int]]: ...

    def events_of(self, key_id: str) -> list[IndexedEvent]: ...


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


class AliasHistory:
    """Every Alias aggregate's events, kept in memory and topped up from the event store on each use."""

    def __init__(self, ledger: KeyLedger) -> None:
        self._ledger = ledger
        self._events: dict[uuid.UUID, list[Any]] = {}
        self._seen = 0
        self._lock = threading.Lock()

    def _top_up(self) -> None:
        while True:
            page = self._ledger.recorder.select_notifications(
                self._seen + 1, ALIAS_PAGE, topics=sorted(ALIAS_TOPICS))
            for notification in page:
                event = self._ledger.mapper.to_domain_event(notification)
                self._events.setdefault(event.originator_id, []).append(event)
            if page:
                self._seen = page[-1].id
            if len(page) < ALIAS_PAGE:
                return

    def periods(self, alias_name: str, account_id: str | None = None) -> list[AliasPeriod]:
        """Every span of time during which an alias of this name pointed to a key, in any region (of
        ``account_id``, if given): (account, region, key id, from, until; None while it still does)."""
        with self._lock:
            self._top_up()
            histories = [list(events) for events in self._events.values()]
        out: list[AliasPeriod] = []
        for events in histories:
            alias: Any = None
            current: AliasPeriod | None = None
            for event in sorted(events, key=lambda e: e.originator_version):
                alias = event.mutate(alias)
                if alias is None or alias.alias_name != alias_name or account_id not in (None, alias.account_id):
                    break
                target = None if alias.deleted else alias.target_key_id
                if current is not None and current.key_id != target:
                    out.append(replace(current, until=event.timestamp))
                    current = None
                if current is None and target is not None:
                    current = AliasPeriod(alias.account_id, alias.region, target, event.timestamp, None)
            if current is not None:
                out.append(current)
        return sorted(out, key=lambda p: p.since)

    def targets_at(self, at: datetime) -> dict[tuple[str, str, str], str]:
        """(account, region, alias name) -> key id, for every alias that existed at ``at``."""
        with self._lock:
            self._top_up()
            histories = [list(events) for events in self._events.values()]
        out = {}
        for events in histories:
            last = max((e.originator_version for e in events if e.timestamp <= at), default=None)
            if last is None:
                continue
            alias: Any = None
            for event in sorted(events, key=lambda e: e.originator_version):
                if event.originator_version <= last:
                    alias = event.mutate(alias)
            if alias is not None and not alias.deleted:
                out[(alias.account_id, alias.region, alias.alias_name)] = alias.target_key_id
        return out


class PointInTime:
    def __init__(self, ledger: KeyLedger, index: KeyEventIndex, clock: Clock) -> None:
        self._ledger = ledger
        self._index = index
        self._clock = clock
        self._aliases = AliasHistory(ledger)

    # -- one key ---------------------------------------------------------------------------------

    def key_at(self, scope: ScopeLike, key_ref: str, at: datetime) -> dict[str, Any]:
        """DescribeKey as it would have answered at ``at``; a key deleted by then reports "Deleted"."""
        at = self._checked(at)
        scope = to_scope(scope)
        targets = self._aliases.targets_at(at)
        key_id = self._key_id(scope, key_ref, at, targets)
        version = self._index.version_at(key_id, at)
        if version is None:
            current = self._load(key_id, None)
            if current is None or not _in_scope(current, scope):
                raise NotFoundError(f"Key '{shown(_arn(scope, key_id))}' does not exist")
            raise NotFoundError(f"Key {current.arn} did not exist at {_iso(at)}")
        key = self._load(key_id, version)
        if key is None or not _in_scope(key, scope):
            raise NotFoundError(f"Key '{shown(_arn(scope, key_id))}' does not exist")
        return key_view(key, at, _aliases_of(key, targets))

    def key_id_at(self, scope: Scope, key_ref: str, at: datetime) -> str:
        """The key a reference named at ``at``: a key id or key ARN names its key; an alias name or alias ARN
        the key the alias pointed to then (NotFound if it did not exist then)."""
        at = self._checked(at)
        return self._key_id(scope, key_ref, at, self._aliases.targets_at(at))

    def alias_regions_at(self, alias_name: str, at: datetime, account_id: str | None = None) -> list[tuple[str, str]]:
        """The (account, region) pairs where an alias of this name existed at ``at``."""
        at = self._checked(at)
        return sorted((acc, reg) for (acc, reg, name) in self._aliases.targets_at(at)
                      if name == alias_name and account_id in (None, acc))

    def alias_periods(self, alias_name: str, account_id: str | None = None) -> list[AliasPeriod]:
        return self._aliases.periods(alias_name, account_id)

    def _key_id(self, scope: Scope | None, key_ref: str, at: datetime,
                targets: dict[tuple[str, str, str], str]) -> str:
        if scope is None:
            if key_ref.startswith("arn:"):
                parts = key_ref.split(":")
                scope = Scope(parts[4], parts[3], parts[1]) if len(parts) >= 6 else None
            if scope is None:
                return _checked_id(key_ref)
        reference = parse_key_reference(key_ref, scope)
        if reference.key_id is not None:
            return reference.key_id
        target = targets.get((scope.account_id, scope.region, reference.alias_name or ""))
        if target is None:
            raise NotFoundError(f"Alias {shown(scope.alias_arn(reference.alias_name or ''))} did not exist at {_iso(at)}")
        return target

    # -- every key -------------------------------------------------------------------------------

    def keys_at(self, at: datetime, account_id: str | None = None, region: str | None = None,
                state: str | None = None, key_spec: str | None = None, alias: str | None = None) -> list[dict[str, Any]]:
        at = self._checked(at)
        targets = self._aliases.targets_at(at)
        aliased = {k for (acc, reg, name), k in targets.items() if name == alias
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
            out.append(key_view(key, at, _aliases_of(key, targets)))
        return out

    # -- history ---------------------------------------------------------------------------------

    def timeline(self, key_ref: str, scope: ScopeLike = None) -> list[dict[str, Any]]:
        """Every event of the key in order, with the audit record of the call that made it."""
        scope = to_scope(scope)
        key_id = self._key_id(scope, key_ref, self._clock.now(), self._aliases.targets_at(self._clock.now()))
        key = self._load(key_id, None)
        if key is None or not _in_scope(key, scope):
            raise NotFoundError(f"Key '{shown(_arn(scope, key_id))}' does not exist")
        rows = self._index.events_of(key_id)
        events = {e.originator_version: e for e in self._ledger.events.get(uuid.UUID(key_id))}
        out = []
        for row in rows:
            event = events.get(row.version)
            record = self._record_of(uuid.UUID(key_id), row.version, key.arn, row.notification_id)
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
        return out

    def _record_of(self, key_uuid: uuid.UUID, version: int, arn: str, notification_id: int) -> dict[str, Any] | None:
        """The audit record of the call that committed this event: the first record stored after it, when it
        names the event in its ``ledgerEvents`` (a change's events and its record are stored together, the
        record last; docs/audit.md, "One ledger"). A record from before records named their events is taken
        when it names the key and no later event of the key comes first."""
        start = notification_id + 1
        while True:
            page = self._ledger.recorder.select_notifications(start, SCAN_PAGE)
            for n in page:
                if n.originator_id == AUDIT_LOG_ID:
                    record = getattr(self._ledger.mapper.to_domain_event(n), "record", None) or {}
                    claims = record.get(LEDGER_EVENTS)
                    if claims is not None:
                        named = any(c.get("aggregate") == str(key_uuid) and c.get("version") == version
                                    for c in claims if isinstance(c, dict))
                        return record if named else None
                    arns = {r.get("ARN") for r in record.get("resources") or []}
                    return record if arn in arns else None
                if n.originator_id == key_uuid or (n.topic not in KEY_TOPICS and n.topic not in ALIAS_TOPICS):
                    return None
            if len(page) < SCAN_PAGE:
                return None
            start = page[-1].id + 1

    # -- helpers ---------------------------------------------------------------------------------

    def _checked(self, at: datetime) -> datetime:
        at = utc(at)
        if at > self._clock.now():
            raise ValidationError(f"{_iso(at)} is in the future: history is known only up to now.")
        return at

    def _load(self, key_id: str, version: int | None) -> Key | None:
        try:
            key = self._ledger.repository.get(uuid.UUID(key_id), version=version)
        except (AggregateNotFoundError, ValueError):
            return None
        return key if isinstance(key, Key) else None


def _aliases_of(key: Key, targets: dict[tuple[str, str, str], str]) -> list[str]:
    return [name for (acc, reg, name), target in targets.items()
            if target == key.key_id and (acc, reg) == (key.account_id, key.region)]


def _in_scope(key: Key, scope: Scope | None) -> bool:
    return scope is None or (key.account_id, key.region) == (scope.account_id, scope.region)


def _arn(scope: Scope | None, key_id: str) -> str:
    return scope.key_arn(key_id) if scope else key_id


def _checked_id(key_ref: str) -> str:
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


__all__ = ["AliasPeriod", "PointInTime", "KeyEventIndex", "IndexedEvent", "AliasHistory", "key_view", "KEY_TOPICS", "ALIAS_TOPICS"]
