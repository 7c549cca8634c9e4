"""What makes every stored fact provable besides the audit chain (docs/audit.md, "One ledger"):

* ``event_digest``: the SHA-256 of one stored event row, exactly as stored (aggregate id, version, topic,
  state bytes). The audit record of the call that committed the event names it with this digest, so the
  chain, and the checkpoints signed over it, cover every event: `verify` needs no secret to check it.
* ``event_tag``: an HMAC of the same fields under the ledger's row key (a random key kept root-wrapped), kept
  at the end of the stored state. The service checks it on every read, so an event forged in the database
  fails the call that would read it instead of being believed until the next `verify`.
* ``RowSeal``: the same HMAC over a read-model row (the key-state view, aliases, grants, principals,
  access keys): what authorization reads is either an event checked as above or a row whose tag proves the
  service wrote it.

The 0x02 and 0x03 prefixes keep these from ever hashing like a record leaf (0x00) or a checkpoint (0x01).
"""
from __future__ import annotations

import hashlib
import hmac
import json
import struct
import uuid
from typing import Any, Callable, Mapping

_EVENT_PREFIX, _ROW_PREFIX = b"\x02", b"\x03"
TAG_MARK = b"\x00KLT1"  # ends a tagged state: JSON state never holds a NUL byte, so an untagged one cannot
TAG_BYTES = 32
_TAGGED_SUFFIX = TAG_BYTES + len(TAG_MARK)


_VERSION_AND_TOPIC_LENGTH = struct.Struct(">QI")


def _event_fields(originator_id: uuid.UUID, version: int, topic: str, state: bytes) -> bytes:
    topic_bytes = topic.encode("utf-8")
    return (originator_id.bytes + _VERSION_AND_TOPIC_LENGTH.pack(version, len(topic_bytes)) + topic_bytes
            + bytes(state))


def event_digest(originator_id: uuid.UUID, version: int, topic: str, state: bytes) -> str:
    """Hex SHA-256 of a stored event row as stored (its tag included): what an audit record claims."""
    return hashlib.sha256(_EVENT_PREFIX + _event_fields(originator_id, version, topic, state)).hexdigest()


def event_tag(key: bytes, originator_id: uuid.UUID, version: int, topic: str, payload: bytes) -> bytes:
    # hmac.digest: OpenSSL's one-shot HMAC, without building an hmac object per event.
    return hmac.digest(key, _EVENT_PREFIX + _event_fields(originator_id, version, topic, payload), "sha256")


def event_tagger(key: bytes, originator_id: uuid.UUID, topic: str) -> Callable[[int, bytes], bytes]:
    """``event_tag`` for the events of one aggregate and topic, as a function of (version, payload). Replay checks
    runs of one aggregate's events: the HMAC is keyed and fed the prefix and aggregate id once, and copied for each
    event, which is then fed the rest. The same message byte for byte, in ``_event_fields``' spelling, so the same
    tag; only the key's setup and the id's encoding are not repeated."""
    topic_bytes = topic.encode("utf-8")
    rest, pack = len(topic_bytes), _VERSION_AND_TOPIC_LENGTH.pack
    keyed = hmac.new(key, _EVENT_PREFIX + originator_id.bytes, "sha256")

    def tag(version: int, payload: bytes) -> bytes:
        mac = keyed.copy()
        mac.update(pack(version, rest) + topic_bytes)
        mac.update(payload)
        return mac.digest()
    return tag


def tag_state(key: bytes, originator_id: uuid.UUID, version: int, topic: str, payload: bytes) -> bytes:
    return payload + event_tag(key, originator_id, version, topic, payload) + TAG_MARK


def split_tagged(state: bytes) -> tuple[bytes, bytes | None]:
    """(payload, tag), or (state, None) for a state that carries no tag."""
    if len(state) >= _TAGGED_SUFFIX and state.endswith(TAG_MARK):
        return state[:-_TAGGED_SUFFIX], state[-_TAGGED_SUFFIX:-len(TAG_MARK)]
    return state, None


def _plain(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {"bytes": bytes(value).hex()}
    if isinstance(value, float) and value.is_integer():
        return int(value)  # 5.0 read back from a database as 5 is the same value
    return value


class RowSeal:
    """Tags of read-model rows: HMAC-SHA256 over the table's name and every column but the tag itself,
    as canonical JSON. A row copied to another table, or to another primary key, no longer matches."""

    COLUMN = "row_tag"
    # Root-wrapped values are authenticated by their own wrapping (AES-GCM bound to the row's id) and are
    # re-wrapped in place by a root-key rotation, which must not have to re-tag every row it touches.
    OUTSIDE_TAG = frozenset({COLUMN, "wrapped_secret", "wrapped"})

    def __init__(self, key: bytes) -> None:
        if len(key) != 32:
            raise ValueError("the row key is 32 bytes")
        self._key = key

    def tag(self, table: str, values: Mapping[str, Any]) -> str:
        body = {name: _plain(value) for name, value in values.items() if name not in self.OUTSIDE_TAG}
        text = json.dumps([table, body], sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return hmac.digest(self._key, _ROW_PREFIX + text.encode("utf-8"), "sha256").hex()

    def sealed(self, table: str, values: Mapping[str, Any]) -> dict[str, Any]:
        return {**values, self.COLUMN: self.tag(table, values)}

    def matches(self, table: str, row: Mapping[str, Any]) -> bool:
        found = row.get(self.COLUMN)
        return isinstance(found, str) and hmac.compare_digest(found, self.tag(table, row))
