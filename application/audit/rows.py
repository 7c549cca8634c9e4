"""Group-committed audit records as event-store rows: byte for byte the rows that saving the
``AuditLog.RecordAppended`` events through the library would write, made without the events.

Why: the committer thread shares the GIL with the event loop, and per record the library path built an
event (trigger_event, mutate), copied its attributes and JSON-encoded them (the mapper), and wrapped the
result twice more (StoredEvent, Recording with its Notification) for bookkeeping the audit log never uses:
its aggregate is not snapshotted, cached or read back from memory, and the application has no ``_notify``.

What the library stores for one event is ``originator_id``, ``originator_version``, the event class's topic,
and as state the transcoder's JSON of the event's other attributes, in the order the event holds them:
``{"timestamp": <the transcoder's datetime form>, "record": <the sealed record>}``. The timestamp part is
made by the transcoder itself, once per batch (one timestamp per batch, as before). The record part needs no
transcoder: ``seal`` has already encoded it as canonical JSON, which refuses every value that is not plain
JSON, and the transcoder's JSON of plain JSON is the one a json encoder with its settings gives.

The mapper's compressor, when it has one (infrastructure/compression.py), is applied to each state as the mapper
applies it. ``RecordRows.exact`` compares the rows with the library's own mapping of the same events once, at
start: a mapper configured otherwise (a cipher, another transcoder) makes it False, and the committer then keeps
to the library path.
"""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Sequence
from uuid import UUID

from eventsourcing.persistence import Mapper
from eventsourcing.utils import get_topic

from application.audit.record_json import canonical_json, plain_records, stored_json
from domain.audit.chain import seal_run
from domain.audit.log import AUDIT_LOG_ID, AuditLog, stored_at

Row = tuple[UUID, int, str, bytes]  # a StoredEvent's fields: originator_id, originator_version, topic, state

# Records for the start-up comparison: every JSON type, nesting, non-ASCII and escaped text, and keys the
# sealed record sets itself, out of their usual order.
_SAMPLES: tuple[dict[str, Any], ...] = (
    {"eventName": "Encrypt", "userIdentity": {"type": "IAMUser", "arn": "arn:aws:iam::1:user/é"},
     "requestParameters": {"encryptionContext": {"z": "ü\u2028\"\\\n", "a": "日本"}}, "responseElements": None,
     "readOnly": True, "managementEvent": False, "resources": [{"ARN": "x", "n": 1}], "count": -3, "f": 1.5},
    {"chain": "00", "seq": 9, "leaf": "11", "a": [], "b": {}, "c": "\x00\x7f", "d": [[1, [None]], {"k": True}]},
)


class RecordRows:
    def __init__(self, mapper: Mapper) -> None:
        self.topic = get_topic(AuditLog.RecordAppended)
        self._transcoder = mapper.transcoder
        self._compress = mapper.compressor.compress if mapper.compressor is not None else None
        self.exact = self._agrees_with(mapper)

    def rows(self, records: Sequence[dict[str, Any]], head: tuple[int, str], at: datetime) \
            -> tuple[list[Row], tuple[int, str]]:
        """``records`` sealed after ``head`` (seq, chain) at ``at``, as rows; and the head after them."""
        seq, chain = head
        plain = plain_records(records)
        said = iter(plain)  # seal_run spells each record once, in order
        sealed = seal_run(records, bytes.fromhex(chain), seq + 1, lambda one: canonical_json(one, next(said)))
        # The transcoder's JSON settings (eventsourcing.persistence.JSONTranscoder), spelled by stored_json. No
        # circular-reference check is needed: a sealed record went through canonical JSON, which raises on one.
        encode, topic, transcoder, compress = stored_json, self.topic, self._transcoder, self._compress
        prefixes: dict[Any, bytes] = {}  # a batch's records share a few eventTimes: one encoding each
        rows = []
        for record, known_plain in zip(sealed, plain):
            when = record.get("eventTime")
            if not isinstance(when, str):  # stored at ``at`` whatever it is (stored_at), and it may not be hashable
                when = None
            prefix = prefixes.get(when)
            if prefix is None:
                # {"timestamp":{...}} without its closing brace: the transcoder's own spelling of the timestamp.
                prefix = prefixes[when] = transcoder.encode({"timestamp": stored_at(record, at)})[:-1] + b',"record":'
            state = prefix + encode(record, known_plain) + b"}"
            rows.append((AUDIT_LOG_ID, record["seq"] + 1, topic, compress(state) if compress else state))
        return rows, ((sealed[-1]["seq"], sealed[-1]["chain"]) if sealed else head)

    def _agrees_with(self, mapper: Mapper) -> bool:
        at = datetime(2024, 2, 29, 23, 59, 59, 999999, tzinfo=timezone.utc)
        log = AuditLog.at_head(41, "ab" * 32)
        for record in _SAMPLES:
            log.append(record, at)
        library = [mapper.to_stored_event(event) for event in log.collect_events()]
        expected = [(e.originator_id, e.originator_version, e.topic, e.state) for e in library]
        return self.rows(list(_SAMPLES), (41, "ab" * 32), at)[0] == expected
