"""The audit record of the call that made a stored event (docs/audit.md, "One ledger"): a change's events and its
record are committed together, the record last, and the record names its events in ``ledgerEvents``. The key event
index holds that record's seq, so finding it is one lookup; index rows from before it held the seq find the record
by reading forward from the event."""
from __future__ import annotations

import uuid
from typing import Any

from application.ledger import KeyLedger
from domain.audit.log import AUDIT_LOG_ID, LEDGER_EVENTS

SCAN_PAGE = 32


def naming(record: dict[str, Any] | None, aggregate: uuid.UUID, version: int, arn: str) -> dict[str, Any] | None:
    """``record`` if it is the one that made this event: it names it in ``ledgerEvents`` (or, from before records
    named their events, it names the key)."""
    if record is None:
        return None
    claims = record.get(LEDGER_EVENTS)
    if claims is not None:
        named = any(c.get("aggregate") == str(aggregate) and c.get("version") == version
                    for c in claims if isinstance(c, dict))
        return record if named else None
    return record if arn in {r.get("ARN") for r in record.get("resources") or []} else None


class CallRecords:
    def __init__(self, ledger: KeyLedger, ledger_topics: frozenset[str]) -> None:
        self._ledger = ledger
        self._topics = ledger_topics  # events that a change may store between an event and its record

    def at(self, seq: int) -> dict[str, Any] | None:
        """The audit record ``seq`` (one lookup in the event store's (aggregate, version) index)."""
        stored = self._ledger.recorder.select_events(AUDIT_LOG_ID, gt=seq, lte=seq + 1)
        if not stored:
            return None
        record = getattr(self._ledger.mapper.to_domain_event(stored[0]), "record", None)
        return record if isinstance(record, dict) else None

    def of_event(self, aggregate: uuid.UUID, version: int, arn: str, notification_id: int) -> dict[str, Any] | None:
        """The record of the call that committed this event, read forward from it: the first record stored after
        it, when that record names it. A record from before records named their events is taken when it names
        the key and no later event of the key comes first."""
        start = notification_id + 1
        while True:
            page = self._ledger.recorder.select_notifications(start, SCAN_PAGE)
            for n in page:
                if n.originator_id == AUDIT_LOG_ID:
                    record = getattr(self._ledger.mapper.to_domain_event(n), "record", None) or {}
                    return naming(record, aggregate, version, arn)
                if n.originator_id == aggregate or n.topic not in self._topics:
                    return None
            if len(page) < SCAN_PAGE:
                return None
            start = page[-1].id + 1
