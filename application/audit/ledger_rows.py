"""The event store read once, in order, for `verify` (application/audit/ledger_verify.py): every audit record with
the leaf of its content, every other event as the digest of its row as stored.

Reading is a port (``EventRows``): pages of rows as stored (position, aggregate id, version, topic, state). The
event library's own notification reader serves (``NotificationRows``); infrastructure/event_rows.py reads the same
columns with one plain SELECT, without an ORM object per row.

A record row is decoded the way the event library's mapper decodes it, only faster for the usual row (plain
``json.loads`` and the timestamp by hand). Any row that fast path is not certain to decode identically (another
topic, other fields, a ``_type_`` object besides the timestamp, an escape that could spell one, a cipher or
compressor that fails) goes through the mapper itself, so what is checked never depends on the path taken.
"""
from __future__ import annotations

import json
import uuid
from datetime import datetime
from functools import lru_cache
from typing import Any, Iterator, NamedTuple, Protocol, Sequence

from eventsourcing.persistence import StoredEvent
from eventsourcing.utils import get_topic

from application.ledger import CHAIN_COVERED_TOPICS, KeyLedger, with_moved_topics
from domain.audit.chain import body_leaf, leaf_hash
from domain.audit.log import AUDIT_LOG_ID, AuditLog, stored_at
from domain.audit.seals import event_digest

PAGE = 5000
RECORD_TOPICS = with_moved_topics(frozenset({get_topic(AuditLog.RecordAppended)}))
_NO_KEY = object()

StoredRow = tuple[int, uuid.UUID, int, str, bytes]  # position (notification id), aggregate, version, topic, state


class EventRows(Protocol):
    def page(self, start: int, limit: int) -> Sequence[StoredRow]:
        """The rows at positions from ``start`` on, in order, at most ``limit``."""


class NotificationRows:
    """``EventRows`` through the event library's notification reader."""

    def __init__(self, ledger: KeyLedger) -> None:
        self._ledger = ledger

    def page(self, start: int, limit: int) -> Sequence[StoredRow]:
        return [(n.id, n.originator_id, n.originator_version, n.topic, n.state)  # type: ignore[misc]
                for n in self._ledger.recorder.select_notifications(start, limit)]


class StoredFact(NamedTuple):
    """One non-audit event as stored: where it is, whose it is, and its digest."""

    position: int  # the event store's notification id
    aggregate: str
    version: int
    topic: str
    digest: str

    def named(self) -> str:
        kind = self.topic.rpartition(":")[2] or self.topic
        return f"event {kind} of aggregate {self.aggregate} version {self.version} (store position {self.position})"


class Binding(Protocol):
    in_legacy_era: bool

    def event(self, fact: StoredFact) -> None: ...

    def record(self, record: dict[str, Any]) -> bool: ...


def _fast_record(state: bytes) -> tuple[dict[str, Any], datetime] | None:
    """(record, stored timestamp) of a RecordAppended row's state, when plain JSON decoding is certain to give what
    the mapper's transcoder gives: the timestamp is the one ``_type_`` object and no escape could spell another."""
    try:
        text = state.decode("utf-8")
        if text.count("_type_") != 1 or "\\u" in text:
            return None
        obj = json.loads(text)
        if type(obj) is not dict or len(obj) != 2:
            return None
        record, timestamp = obj.get("record"), obj.get("timestamp")
        if type(record) is not dict or type(timestamp) is not dict or len(timestamp) != 2:
            return None
        if timestamp.get("_type_") != "datetime_iso" or type(timestamp.get("_data_")) is not str:
            return None
        return record, datetime.fromisoformat(timestamp["_data_"])
    except (ValueError, RecursionError):  # UnicodeDecodeError and JSONDecodeError included; the mapper decides
        return None


@lru_cache(maxsize=4096)  # records of one second share their eventTime
def _event_time(text: str) -> datetime | None:
    return stored_at({"eventTime": text}, None)  # type: ignore[arg-type]


def _stored_time_matches(record: dict[str, Any], when: Any) -> bool:
    """Whether the row's stored time is ``stored_at(record)``: its eventTime in whole seconds. A record without
    a valid eventTime matches no stored time (``stored_at`` would give its default, which no row can hold)."""
    text = record.get("eventTime")
    return isinstance(when, datetime) and type(text) is str and when == _event_time(text)


def ledger_entries(ledger: KeyLedger, binding: Binding, rows: EventRows, start: int,
                   after_seq: int = 0) -> Iterator[tuple[Any, bytes | None]]:
    """(record, leaf of its content) for the audit records in store order; every other event handed to
    ``binding``. Stops at the first record whose claims do not match (the binding says why)."""
    mapper, expected = ledger.mapper, after_seq + 1
    cipher, compressor = getattr(mapper, "cipher", None), getattr(mapper, "compressor", None)
    transformed = cipher is not None or compressor is not None
    names: dict[uuid.UUID, str] = {}
    audit_id = AUDIT_LOG_ID
    while True:
        page = rows.page(start, PAGE)
        if not page:
            return
        for position, originator_id, version, topic, state in page:
            if topic not in CHAIN_COVERED_TOPICS:
                name = names.get(originator_id)
                if name is None:
                    name = names[originator_id] = str(originator_id)
                binding.event(StoredFact(position, name, version, topic,
                                         event_digest(originator_id, version, topic, state)))
                continue
            if originator_id is not audit_id:  # the readers hand out one UUID object per aggregate: skip __eq__
                if originator_id != AUDIT_LOG_ID:
                    continue  # the checkpoints' own events: checked as the checkpoint list
                audit_id = originator_id
            decoded = None
            if topic in RECORD_TOPICS:
                if transformed:
                    try:
                        plain = cipher.decrypt(state) if cipher else state
                        decoded = _fast_record(compressor.decompress(plain) if compressor else plain)
                    except Exception:  # the mapper below fails the same way, or decodes what this could not
                        decoded = None
                else:
                    decoded = _fast_record(state)
            if decoded is not None:
                record, when = decoded
                claimed_leaf, chain_hex = record.pop("leaf", _NO_KEY), record.pop("chain", _NO_KEY)
                leaf = body_leaf(record)
                if claimed_leaf is not _NO_KEY:
                    record["leaf"] = claimed_leaf
                if chain_hex is not _NO_KEY:
                    record["chain"] = chain_hex
            else:
                try:
                    event = mapper.to_domain_event(StoredEvent(originator_id, version, topic, state))
                    record = event.record if isinstance(event, AuditLog.RecordAppended) else None
                except Exception:
                    event, record = None, {"seq": version - 1, "undecodable": True}  # names its seq
                if record is None:
                    continue  # the log's Started event
                if event is None or not isinstance(record, dict):
                    yield record, None
                    continue
                when = getattr(event, "timestamp", None)
                try:
                    leaf = leaf_hash(record)
                except (TypeError, ValueError):
                    leaf = None
            # A record out of sequence (deleted, swapped, inserted) is the chain's to name; the events
            # around it are then judged no further.
            if record.get("seq") == expected and not binding.record(record):
                return
            if not binding.in_legacy_era and not _stored_time_matches(record, when):
                # The row's one field outside the record is fixed by it: a changed one fails as the record.
                record, leaf = {**record, "storedTimeChanged": True}, None
            if type(record.get("seq")) is int and version != record["seq"] + 1:
                # So is its version (seq + 1), by which readers find a record (the actor of an event, a page).
                record, leaf = {**record, "storedVersionChanged": True}, None
            expected = record["seq"] + 1 if isinstance(record.get("seq"), int) else expected
            yield record, leaf
        start = page[-1][0] + 1
