"""Reading the audit log back, and signing checkpoints of it.

A checkpoint is due every N records or T seconds (also when idle, so a silent truncation of the tail is
bounded in time). It is saved as an event of the AuditCheckpoints aggregate (its version makes the
checkpoint sequence fork-free across processes) and appended to a file outside the database.
"""
from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Iterator, Protocol

from eventsourcing.persistence import IntegrityError

from application.audit.records import iso
from application.ledger import KeyLedger
from application.ports import Clock
from domain.audit.chain import GENESIS, Checkpoint, checkpoint_from_json, checkpoint_to_json, make_checkpoint
from domain.audit.log import AUDIT_CHECKPOINTS_ID, AUDIT_LOG_ID, AuditCheckpoints, AuditLog

PAGE = 1000


class CheckpointSink(Protocol):
    def append(self, line: str) -> None: ...

    def lines(self) -> list[str]: ...


def audit_records(ledger: KeyLedger, after_seq: int = 0) -> Iterator[dict[str, Any]]:
    """Every record in seq order, streamed a page at a time. A stored event that no longer decodes is
    yielded as a stub that can never verify, so `verify` names its seq instead of crashing."""
    version = after_seq + 1
    while True:
        page = ledger.recorder.select_events(AUDIT_LOG_ID, gt=version, limit=PAGE)
        if not page:
            return
        for stored in page:
            try:
                event = ledger.mapper.to_domain_event(stored)
                yield event.record if isinstance(event, AuditLog.RecordAppended) else {"seq": stored.originator_version - 1}
            except Exception:
                yield {"seq": stored.originator_version - 1, "undecodable": True}
        version = page[-1].originator_version


def stored_checkpoints(ledger: KeyLedger) -> list[Checkpoint]:
    return [checkpoint for _, checkpoint in signed_checkpoints_after(ledger, 1)]


def signed_checkpoints_after(ledger: KeyLedger, version: int) -> Iterator[tuple[int, Checkpoint]]:
    """The checkpoints stored after the checkpoint aggregate's ``version``, with their versions, a page
    at a time."""
    while True:
        page = ledger.recorder.select_events(AUDIT_CHECKPOINTS_ID, gt=version, limit=PAGE)
        for stored in page:
            event = ledger.mapper.to_domain_event(stored)
            if isinstance(event, AuditCheckpoints.CheckpointSigned):
                yield stored.originator_version, Checkpoint(**event.checkpoint)
        if len(page) < PAGE:
            return
        version = page[-1].originator_version


def audit_head(ledger: KeyLedger) -> tuple[int, str]:
    stored = ledger.recorder.select_events(AUDIT_LOG_ID, desc=True, limit=1)
    if stored:
        event = ledger.mapper.to_domain_event(stored[0])
        if isinstance(event, AuditLog.RecordAppended):
            return event.record["seq"], event.record["chain"]
    return 0, GENESIS.hex()


class Checkpointer:
    def __init__(self, ledger: KeyLedger, clock: Clock, signing_key: bytes, sink: CheckpointSink,
                 every_records: int, every_seconds: float) -> None:
        self._ledger = ledger
        self._clock = clock
        self._signing_key = signing_key
        self._sink = sink
        self._every_records = every_records
        self._every = timedelta(seconds=every_seconds)

    def _last(self) -> tuple[int, Checkpoint | None]:
        stored = self._ledger.recorder.select_events(AUDIT_CHECKPOINTS_ID, desc=True, limit=1)
        if not stored:
            try:
                self._ledger.save(AuditCheckpoints.start(self._clock.now()))
            except IntegrityError:
                pass
            return 1, None
        event = self._ledger.mapper.to_domain_event(stored[0])
        last = Checkpoint(**event.checkpoint) if isinstance(event, AuditCheckpoints.CheckpointSigned) else None
        return stored[0].originator_version, last

    def newest(self) -> Checkpoint | None:
        """The newest signed checkpoint (one index lookup)."""
        return self._last()[1]

    def checkpoint_if_behind(self) -> Checkpoint | None:
        """Signs one when records exist that no checkpoint covers (at start and at graceful shutdown)."""
        last = self.newest()
        seq, _ = audit_head(self._ledger)
        return self.checkpoint_if_due(force=True) if last is None or seq > last.seq else None

    def checkpoint_if_due(self, force: bool = False) -> Checkpoint | None:
        version, last = self._last()
        seq, chain = audit_head(self._ledger)
        now = self._clock.now()
        due = force or last is None or seq - last.seq >= self._every_records or (
            now - datetime.fromisoformat(last.time.replace("Z", "+00:00")) >= self._every)
        if not due:
            return None
        checkpoint = make_checkpoint(self._signing_key, seq, chain, iso(now), last)
        holder = AuditCheckpoints.__new__(AuditCheckpoints)
        holder.__base_init__(AUDIT_CHECKPOINTS_ID, version, now)
        holder.last = None
        holder.add(checkpoint.__dict__, now)
        try:
            self._ledger.save(holder)
        except IntegrityError:
            return None  # another process signed this one
        self.sync_file()
        return checkpoint

    def sync_file(self) -> None:
        """Appends every stored checkpoint the file lacks, in order. A crash between saving a checkpoint
        and appending it (or another process signing it) leaves a suffix missing; this restores it, so the
        file stays a complete chain and an untouched log keeps verifying."""
        in_file = set()
        for line in self._sink.lines():
            try:
                in_file.add(checkpoint_from_json(line).signature)
            except ValueError:
                continue  # a damaged line stays for `verify` to report; it must not stop the service
        for checkpoint in stored_checkpoints(self._ledger):
            if checkpoint.signature not in in_file:
                self._sink.append(checkpoint_to_json(checkpoint))
