"""The audit log as aggregates: one AuditLog whose events are the records (version = seq + 1, so the
event store's uniqueness constraint on (id, version) makes a fork impossible), and one AuditCheckpoints
whose events are the signed checkpoints."""
from __future__ import annotations

import uuid
from datetime import datetime, timezone
from typing import Any

from eventsourcing.domain import Aggregate

from domain.audit.chain import GENESIS, seal

AUDIT_LOG_ID = uuid.UUID("5d1b8f4e-7a0c-4e55-9b2f-6f3a1c0d8e21")
AUDIT_CHECKPOINTS_ID = uuid.UUID("9a4c2e71-3b8d-4f06-a1e5-0c7d9b2f4a63")
# The record field that names the events the call committed: [{"aggregate", "version", "digest"}].
LEDGER_EVENTS = "ledgerEvents"
# The record of a ledger written before records named their events: {"events": n, "digest": hex} of them all.
LEDGER_UPGRADE = "ledgerUpgrade"


# The last eventTime parsed and its value: the audit committer parses it twice per batch (row and index), and
# consecutive batches mostly fall in the same second; strptime is about 8 µs of the committer's GIL time each.
_last_parsed: tuple[str, datetime] = ("", datetime.min)


def stored_at(record: dict[str, Any], default: datetime) -> datetime:
    """The time an audit row is stored with: its record's eventTime (whole seconds, UTC), so that the row's
    one field outside the record is fixed by the record and `verify` can check it."""
    global _last_parsed
    text = record.get("eventTime")
    if isinstance(text, str):
        last = _last_parsed  # one tuple, replaced whole: safe to read from any thread
        if last[0] == text:
            return last[1]
        try:
            parsed = datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
        except ValueError:
            return default
        _last_parsed = (text, parsed)
        return parsed
    return default


class AuditLog(Aggregate):
    class Started(Aggregate.Created):
        pass

    class RecordAppended(Aggregate.Event):
        record: dict[str, Any]

        def apply(self, log: AuditLog) -> None:
            log.seq = self.record["seq"]
            log.chain = self.record["chain"]

    def __init__(self) -> None:
        self.seq = 0
        self.chain = GENESIS.hex()

    @classmethod
    def start(cls, at: datetime) -> AuditLog:
        return cls._create(cls.Started, id=AUDIT_LOG_ID, timestamp=at)

    @classmethod
    def at_head(cls, seq: int, chain_hex: str) -> AuditLog:
        """The log positioned after record ``seq`` without replaying it: appending needs only the head."""
        log = cls.__new__(cls)
        log.__base_init__(AUDIT_LOG_ID, seq + 1, datetime.now(tz=timezone.utc))
        log.seq, log.chain = seq, chain_hex
        return log

    def append(self, record: dict[str, Any], at: datetime) -> dict[str, Any]:
        sealed = seal(record, bytes.fromhex(self.chain), self.seq + 1)
        self.trigger_event(self.RecordAppended, timestamp=stored_at(record, at), record=sealed)
        return sealed


class AuditCheckpoints(Aggregate):
    class Started(Aggregate.Created):
        pass

    class CheckpointSigned(Aggregate.Event):
        checkpoint: dict[str, Any]

        def apply(self, checkpoints: AuditCheckpoints) -> None:
            checkpoints.last = self.checkpoint

    def __init__(self) -> None:
        self.last: dict[str, Any] | None = None

    @classmethod
    def start(cls, at: datetime) -> AuditCheckpoints:
        return cls._create(cls.Started, id=AUDIT_CHECKPOINTS_ID, timestamp=at)

    def add(self, checkpoint: dict[str, Any], at: datetime) -> None:
        self.trigger_event(self.CheckpointSigned, timestamp=at, checkpoint=checkpoint)
