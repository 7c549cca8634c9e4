"""Compliance reports read from the event store and the audit log (no root key needed)."""
from __future__ import annotations

import uuid
from collections import Counter
from datetime import datetime, timezone
from typing import Any, Callable, Iterable, Iterator, Mapping

from application.audit.checkpoints import audit_records
from application.history.access_at import access_at
from application.history.point_in_time import KeyEventIndex, PointInTime, ScopeLike
from application.ledger import KeyLedger
from application.ports import Clock
from application.pricing import PriceTable, estimate, key_life, request_class
from domain.errors import KmsError
from domain.identifiers import arn_region, key_storage_id
from domain.keys.key import Key
from domain.keys.operations import operations_of
from domain.keys.specs import SYMMETRIC_DEFAULT

DEFAULT_MAX_MATERIAL_AGE_DAYS = 365


def rotation_report(ledger: KeyLedger, key_ids: Iterable[str], now: datetime) -> list[dict[str, Any]]:
    """Keys whose current material is older than their rotation period, or than 365 days when automatic
    rotation is off. Keys that cannot rotate (asymmetric, HMAC, no material) and deleted keys are skipped."""
    out = []
    for key_id in key_ids:
        key = ledger.repository.get(uuid.UUID(key_id))
        if not isinstance(key, Key) or key.key_spec != SYMMETRIC_DEFAULT or key.state == "Deleted":
            continue
        material = key.material(key.current_material_id) if key.current_material_id else None
        if material is None:
            continue
        limit = key.rotation_period_days if key.rotation_enabled else DEFAULT_MAX_MATERIAL_AGE_DAYS
        age = (now - material["created"]).days
        if age > limit:
            out.append({"KeyArn": key.arn, "KeyState": key.state, "MaterialAgeDays": age, "LimitDays": limit,
                        "RotationEnabled": key.rotation_enabled, "MaterialCreated": material["created"]})
    return sorted(out, key=lambda row: -row["MaterialAgeDays"])


def usage_report(records: Iterable[Mapping[str, Any]], key_id: str, start: datetime | None,
                 end: datetime | None) -> list[dict[str, Any]]:
    """Calls per operation and principal that named the key, from the audit log, between two instants."""
    counts: Counter[tuple[str, str, str]] = Counter()
    for record in records:
        if not any(r.get("ARN", "").endswith("/" + key_id) for r in record.get("resources") or []):
            continue
        at = datetime.fromisoformat(record["eventTime"].replace("Z", "+00:00"))
        if (start and at < start) or (end and at > end):
            continue
        principal = (record.get("userIdentity") or {}).get("arn") or (record.get("userIdentity") or {}).get("invokedBy", "")
        counts[(record["eventName"], principal, "failed" if record.get("errorCode") else "succeeded")] += 1
    return [{"EventName": name, "Principal": principal, "Outcome": outcome, "Calls": calls}
            for (name, principal, outcome), calls in sorted(counts.items())]


class Reports:
    """The reports of ``keyledger report``: rotation, usage and access."""

    def __init__(self, ledger: KeyLedger, index: KeyEventIndex, clock: Clock, history: PointInTime,
                 directory: Callable[[], Any], prices: Callable[[], PriceTable]) -> None:
        """``directory``: the principal directory, or None while the service is sealed (access then names
        the principals the policies name, without their identity policies)."""
        self._ledger = ledger
        self._index = index
        self._clock = clock
        self._history = history
        self._directory = directory
        self._prices = prices

    def rotation(self) -> list[dict[str, Any]]:
        now = self._clock.now()
        return rotation_report(self._ledger, [key_id for key_id, _ in self._index.versions_at(now)], now)

    def usage(self, key_id: str, start: datetime | None, end: datetime | None) -> list[dict[str, Any]]:
        return usage_report(audit_records(self._ledger), key_id, start, end)

    def usage_of(self, key_ids: set[str] | None, start: datetime | None, end: datetime | None,
                 account_id: str) -> list[dict[str, Any]]:
        """Calls per operation, principal and outcome that named one of ``key_ids`` (None: any key of the
        account's records)."""
        counts: Counter[tuple[str, str, str]] = Counter()
        for record, _ in self._key_records(key_ids, start, end, account_id):
            identity = record.get("userIdentity") or {}
            principal = identity.get("arn") or identity.get("invokedBy", "")
            counts[(record["eventName"], principal, "failed" if record.get("errorCode") else "succeeded")] += 1
        return [{"EventName": name, "Principal": principal, "Outcome": outcome, "Calls": calls}
                for (name, principal, outcome), calls in sorted(counts.items())]

    def usage_series(self, key_ids: set[str] | None, start: datetime, end: datetime, account_id: str,
                     buckets: int) -> dict[str, list[int]]:
        """Calls per operation in ``buckets`` equal slices of [start, end], for a chart."""
        width = max((end - start).total_seconds() / buckets, 1e-6)
        series: dict[str, list[int]] = {}
        for record, at in self._key_records(key_ids, start, end, account_id):
            slot = min(int((at - start).total_seconds() / width), buckets - 1)
            series.setdefault(record["eventName"], [0] * buckets)[slot] += 1
        return dict(sorted(series.items()))

    def priced(self, key_ids: set[str] | None, start: datetime | None, end: datetime | None,
               account_id: str) -> dict[str, Any]:
        """What these keys (None: every key of the account) and their calls would cost at AWS KMS list prices."""
        table = self._prices()
        now = self._clock.now()
        end = min(end or now, now)
        requests: Counter[tuple[str, str]] = Counter()
        specs: dict[str, str | None] = {}
        first: datetime | None = None
        for record, at in self._key_records(key_ids, start, end, account_id):
            first = first or at
            key_id = _key_id_of(record)
            if key_id not in specs:
                specs[key_id] = self._spec_of(key_id, now)
            requests[(at.strftime("%Y-%m"), request_class(record["eventName"], specs[key_id],
                                                          record.get("requestParameters")))] += 1
        lives = []
        chosen = key_ids if key_ids is not None else {
            key_id for key_id, _ in self._index.versions_at(now) if self._account_of(key_id) == account_id}
        for key_id in sorted(chosen):
            events = [(e.event_type, datetime.fromtimestamp(e.timestamp, timezone.utc)) for e in self._index.events_of(key_id)]
            if not events:
                continue
            since = start or min(first or events[0][1], events[0][1])
            lives.append(key_life(key_id, events, since, end, table.rotations_charged))
        return {**estimate(table, lives, requests), "From": start, "To": end}

    def _key_records(self, key_ids: set[str] | None, start: datetime | None, end: datetime | None,
                     account_id: str) -> Iterator[tuple[dict[str, Any], datetime]]:
        for record in audit_records(self._ledger):
            identity = record.get("userIdentity") or {}
            if account_id not in (identity.get("accountId"), record.get("recipientAccountId")):
                continue
            if _not_kms(record.get("eventName") or ""):
                continue
            key_id = _key_id_of(record)
            if key_id is None or (key_ids is not None and key_id not in key_ids
                                  and _public_key_id_of(record) not in key_ids):
                continue
            at = datetime.fromisoformat(record["eventTime"].replace("Z", "+00:00"))
            if (start and at < start) or (end and at > end):
                continue
            yield record, at

    def _spec_of(self, key_id: str | None, now: datetime) -> str | None:
        if key_id is None:
            return None
        try:
            return self._history.key_at(None, key_id, now)["KeyMetadata"]["KeySpec"]
        except KmsError:
            return None

    def _account_of(self, key_id: str) -> str | None:
        try:
            return self._history.key_at(None, key_id, self._clock.now())["KeyMetadata"]["AWSAccountId"]
        except KmsError:
            return None

    def access(self, key: str, at: datetime | None, operation: str | None,
               scope: ScopeLike = None) -> list[dict[str, Any]]:
        """Who could perform each operation the key supports (or ``operation``) at ``at`` (default now).
        ``key``: any key reference (an alias name needs ``scope``)."""
        moment = at or self._clock.now()
        rows: list[dict[str, Any]] = []
        if operation:
            names = [operation]
        else:
            meta = self._history.key_at(scope, key, moment)["KeyMetadata"]
            names = operations_of(meta)
        for name in names:
            answer = access_at(self._history, scope, key, moment, name, directory=self._directory())
            if not answer["KeyStateAllows"]:
                rows.append({"Operation": name, "Principal": "(anyone)", "Allowed": False, "Reason": answer["Reason"]})
            for entry in answer["Principals"]:
                rows.append({"Operation": name, **entry})
        return rows


def _public_key_id_of(record: Mapping[str, Any]) -> str | None:
    """The key a record is about: its first key resource (CloudTrail lists the key a call used)."""
    for resource in record.get("resources") or []:
        arn = resource.get("ARN") or ""
        if ":key/" in arn:
            return arn.rsplit("/", 1)[-1]
    return None


def _key_id_of(record: Mapping[str, Any]) -> str | None:
    """The storage id of that key (domain.identifiers.key_storage_id): each Region's multi-Region key is a key of its
    own, as AWS prices it."""
    for resource in record.get("resources") or []:
        arn = resource.get("ARN") or ""
        if ":key/" in arn:
            return key_storage_id(arn.rsplit("/", 1)[-1], arn_region(arn))
    return None


# Reads of keyledger's own history (the /v1 query API, the web console) are recorded too, but they are not KMS
# calls: usage, charts and the AWS estimate count only what a KMS client sent.
KEYLEDGER_READS = frozenset({"GetKeyStateAt", "ListKeysAt", "GetKeyTimeline", "GetKeyAccessAt", "LookupAuditEvents"})


def _not_kms(event_name: str) -> bool:
    """keyledger's own reads, the web console, and the XKS proxy API it serves (calls AWS KMS makes to it)."""
    return event_name in KEYLEDGER_READS or event_name.startswith(("Console", "Xks"))
