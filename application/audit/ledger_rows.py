"""The event store read once, in order, for `verify` (application/audit/ledger_verify.py): every audit record with
the leaf of its content, every other event as the digest of its row as stored.

Reading is a port (``EventRows``): pages of rows as stored (position, aggregate id, version, topic, state). The
event library's own notification reader serves (``NotificationRows``); infrastructure/event_rows.py reads the same
columns with one plain SELECT, without an ORM object per row.

A record row is decoded the way the event library's mapper decodes it (after the mapper's decompression,
infrastructure/compression.py), only faster for the usual row: orjson where that provably gives what the standard
library gives (decision 221), else plain ``json.loads``, and the timestamp by hand. Any row that fast path is not certain to decode identically (another
topic, other fields, a ``_type_`` object besides the timestamp, an escape that could spell one, a cipher or
compressor that fails) goes through the mapper itself, so what is checked never depends on the path taken.
"""
from __future__ import annotations

import hashlib
import json
import re
import uuid
from datetime import datetime
from functools import lru_cache
from typing import Any, Iterator, NamedTuple, Protocol, Sequence

import orjson
from eventsourcing.persistence import StoredEvent
from eventsourcing.utils import get_topic

from application.ledger import CHAIN_COVERED_TOPICS, KeyLedger, with_moved_topics
from domain.audit.chain import LEAF_PREFIX, body_leaf, leaf_hash
from domain.audit.log import AUDIT_LOG_ID, AuditLog, stored_at
from domain.audit.seals import event_digest

PAGE = 5000
RECORD_TOPICS = with_moved_topics(frozenset({get_topic(AuditLog.RecordAppended)}))
_NO_KEY = object()
_loads, _dumps, _SORT_KEYS = orjson.loads, orjson.dumps, orjson.OPT_SORT_KEYS
_DecodeError, _EncodeError, _sha256 = orjson.JSONDecodeError, orjson.JSONEncodeError, hashlib.sha256
_SHORT_EXPONENT = re.compile(rb"e-[0-9][,\]}]")  # how orjson ends 1e-7 in a list or object; Python writes 1e-07

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


class RowsUntil:
    """``rows`` up to and including store position ``until`` (one part of a verify in parts)."""

    def __init__(self, rows: EventRows, until: int) -> None:
        self._rows, self._until = rows, until

    @property
    def read(self) -> int:
        return getattr(self._rows, "read", 0)

    def page(self, start: int, limit: int) -> Sequence[StoredRow]:
        if start > self._until:
            return []
        page = self._rows.page(start, limit)
        if page and page[-1][0] > self._until:  # only the part's last page reaches past its end
            page = [row for row in page if row[0] <= self._until]
        return page


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


def _fast_record(state: bytes) -> tuple[dict[str, Any], datetime, bytes | None] | None:
    """(record, stored timestamp, leaf of the record's content) of a RecordAppended row's state, when plain JSON
    decoding is certain to give what the mapper's transcoder gives: the timestamp is the one ``_type_`` object and
    no escape could spell another. None: the mapper decides."""
    # ``b"\\" in`` first: a one-byte search is a memchr, several times cheaper than the two-byte one, and a record
    # rarely holds a backslash (docs/performance.md, "Session 7: verify, second pass").
    if state[:1] != b"{" or state.count(b"_type_") != 1 or (b"\\" in state and b"\\u" in state):
        return None
    try:
        return _orjson_record(state) or _stdlib_record(state)
    except (ValueError, RecursionError):  # UnicodeDecodeError and JSONDecodeError included; the mapper decides
        return None


@lru_cache(maxsize=4096)  # a batch's rows share their stored time
def _stored_time(text: str) -> datetime:
    return datetime.fromisoformat(text)


def _split(obj: Any) -> tuple[dict[str, Any], datetime] | None:
    if type(obj) is not dict or len(obj) != 2:
        return None
    record, timestamp = obj.get("record"), obj.get("timestamp")
    if type(record) is not dict or type(timestamp) is not dict or len(timestamp) != 2:
        return None
    text = timestamp.get("_data_")
    if timestamp.get("_type_") != "datetime_iso" or type(text) is not str:
        return None
    return record, _stored_time(text)


def _orjson_record(state: bytes) -> tuple[dict[str, Any], datetime, bytes | None] | None:
    """The record decoded and its leaf's canonical bytes made by orjson, when that is provably what the standard
    library gives (decision 221): orjson decodes JSON as ``json.loads`` does except for integers beyond 64 bits
    (it gives floats), and sorts and spells keys, strings, integers and most floats as ``canonical`` does. The
    floats it spells otherwise (decimal exponents -5 to -9: ``0.00001``, ``1e-7`` where Python writes ``1e-05``,
    ``1e-07``) and every float from a too-large integer (``...e+19``) show in its output as ``0.0000``, an
    exponent of one digit after ``e-``, or ``e+``: then None, and the standard library decides."""
    try:
        obj = _loads(state)
    except _DecodeError:
        return None
    split = _split(obj)
    if split is None:
        return None
    record, when = split
    claimed_leaf, chain_hex = record.pop("leaf", _NO_KEY), record.pop("chain", _NO_KEY)
    try:
        body = _dumps(record, option=_SORT_KEYS)
    except _EncodeError:  # nested deeper than orjson goes
        return None
    # The regex alone, not behind ``b"e-" in body``: most bodies hold "e-" (in ids), so the guard only added a scan.
    if (b"+" in body and b"e+" in body) or b"0.0000" in body or _SHORT_EXPONENT.search(body):
        return None
    if claimed_leaf is not _NO_KEY:
        record["leaf"] = claimed_leaf
    if chain_hex is not _NO_KEY:
        record["chain"] = chain_hex
    return record, when, _sha256(LEAF_PREFIX + body).digest()


def _stdlib_record(state: bytes) -> tuple[dict[str, Any], datetime, bytes | None] | None:
    split = _split(json.loads(state.decode("utf-8")))
    if split is None:
        return None
    record, when = split
    claimed_leaf, chain_hex = record.pop("leaf", _NO_KEY), record.pop("chain", _NO_KEY)
    leaf = body_leaf(record)
    if claimed_leaf is not _NO_KEY:
        record["leaf"] = claimed_leaf
    if chain_hex is not _NO_KEY:
        record["chain"] = chain_hex
    return record, when, leaf


@lru_cache(maxsize=4096)  # records of one second share their eventTime
def _event_time(text: str) -> datetime | None:
    return stored_at({"eventTime": text}, None)  # type: ignore[arg-type]


def ledger_entries(ledger: KeyLedger, binding: Binding, rows: EventRows, start: int,
                   after_seq: int = 0) -> Iterator[tuple[Any, bytes | None]]:
    """(record, leaf of its content) for the audit records in store order; every other event handed to
    ``binding``. Stops at the first record whose claims do not match (the binding says why)."""
    mapper, expected = ledger.mapper, after_seq + 1
    cipher, compressor = getattr(mapper, "cipher", None), getattr(mapper, "compressor", None)
    transformed = cipher is not None or compressor is not None
    names: dict[uuid.UUID, str] = {}
    audit_id = AUDIT_LOG_ID
    # Bound once: the loop below runs once per stored event (docs/performance.md, "Session 7: verify, second pass").
    decrypt = cipher.decrypt if cipher is not None else None
    decompress = compressor.decompress if compressor is not None else None
    covered, record_topics, fast, event_time = CHAIN_COVERED_TOPICS, RECORD_TOPICS, _fast_record, _event_time
    bind_record, add_event = binding.record, binding.event
    while True:
        page = rows.page(start, PAGE)
        if not page:
            return
        for position, originator_id, version, topic, state in page:
            if topic not in covered:
                name = names.get(originator_id)
                if name is None:
                    name = names[originator_id] = str(originator_id)
                add_event(StoredFact(position, name, version, topic,
                                         event_digest(originator_id, version, topic, state)))
                continue
            if originator_id is not audit_id:  # the readers hand out one UUID object per aggregate: skip __eq__
                if originator_id != AUDIT_LOG_ID:
                    continue  # the checkpoints' own events: checked as the checkpoint list
                audit_id = originator_id
            decoded = None
            if topic in record_topics:
                if transformed:
                    try:
                        plain = decrypt(state) if decrypt is not None else state
                        decoded = fast(decompress(plain) if decompress is not None else plain)
                    except Exception:  # the mapper below fails the same way, or decodes what this could not
                        decoded = None
                else:
                    decoded = fast(state)
            if decoded is not None:
                record, when, leaf = decoded
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
            seq = record.get("seq")
            if seq == expected and not bind_record(record):
                return
            if not binding.in_legacy_era:
                # The row's one field outside the record is fixed by it: its stored time must be stored_at(record),
                # the eventTime in whole seconds; a changed one fails as the record. A record without a valid
                # eventTime matches no stored time (stored_at would give its default, which no row can hold).
                text = record.get("eventTime")
                if not (isinstance(when, datetime) and type(text) is str and when == event_time(text)):
                    record, leaf = {**record, "storedTimeChanged": True}, None
            if type(seq) is int and version != seq + 1:
                # So is its version (seq + 1), by which readers find a record (the actor of an event, a page).
                record, leaf = {**record, "storedVersionChanged": True}, None
            if isinstance(seq, int):
                expected = seq + 1
            yield record, leaf
        start = page[-1][0] + 1
