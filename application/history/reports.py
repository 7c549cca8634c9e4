"""Compliance reports read from the event store and the audit log (no root key needed)."""
from __future__ import annotations

import uuid
from collections import Counter
from datetime import datetime
from typing import Any, Callable, Iterable, Mapping

from application.audit.checkpoints import audit_records
from application.history.access_at import access_at
from application.history.point_in_time import KeyEventIndex, PointInTime
from application.ledger import KeyLedger
from application.ports import Clock
from domain.keys.key import Key
from domain.keys.specs import SYMMETRIC_DEFAULT
from domain.keys.states import MATRIX

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
                 directory: Callable[[], Any]) -> None:
        """``directory``: the principal directory, or None while the service is sealed (access then names
        the principals the policies name, without their identity policies)."""
        self._ledger = ledger
        self._index = index
        self._clock = clock
        self._history = history
        self._directory = directory

    def rotation(self) -> list[dict[str, Any]]:
        now = self._clock.now()
        return rotation_report(self._ledger, [key_id for key_id, _ in self._index.versions_at(now)], now)

    def usage(self, key_id: str, start: datetime | None, end: datetime | None) -> list[dict[str, Any]]:
        return usage_report(audit_records(self._ledger), key_id, start, end)

    def access(self, key: str, at: datetime | None, operation: str | None) -> list[dict[str, Any]]:
        """Who could perform each key operation (or ``operation``) on the key at ``at`` (default now)."""
        moment = at or self._clock.now()
        rows: list[dict[str, Any]] = []
        for name in [operation] if operation else sorted(MATRIX):
            answer = access_at(self._history, None, key, moment, name, directory=self._directory())
            if not answer["KeyStateAllows"]:
                rows.append({"Operation": name, "Principal": "(anyone)", "Allowed": False, "Reason": answer["Reason"]})
            for entry in answer["Principals"]:
                rows.append({"Operation": name, **entry})
        return rows
