"""Compliance reports read from the event store and the audit log (no root key needed)."""
from __future__ import annotations

import uuid
from collections import Counter
from datetime import datetime
from typing import Any, Iterable, Mapping

from application.ledger import KeyLedger
from domain.keys.key import Key
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
