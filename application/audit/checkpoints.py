"""Reading the audit log back, and signing checkpoints of it.

A checkpoint is due every N records, or T seconds after the newest one when records followed it, or after a
heartbeat interval when nothing did (so an idle server does not pile up checkpoints that say nothing new, yet
its signed time still moves). It is saved as an event of the AuditCheckpoints aggregate (its version makes the
checkpoint sequence fork-free across processes) and appended to a file outside the database, when the node keeps
one: every node of a deployment may keep its own, each a complete copy written by that node alone.

Every step costs the same however many checkpoints exist (docs/audit.md): the newest checkpoint and the audit
head are one index lookup each, and the file is only appended to after reading its last line.
"""
from __future__ import annotations

from contextlib import AbstractContextManager
from datetime import datetime, timedelta
from typing import Any, Iterator, Protocol

from eventsourcing.persistence import IntegrityError

from application.audit.records import iso
from application.ledger import KeyLedger
from application.ports import Clock
from domain.audit.chain import (
    GENESIS,
    Checkpoint,
    checkpoint_from_json,
    checkpoint_hash,
    checkpoint_public_key,
    checkpoint_to_json,
    make_checkpoint,
    verify_checkpoint_signature,
)
from domain.audit.log import AUDIT_CHECKPOINTS_ID, AUDIT_LOG_ID, AuditCheckpoints, AuditLog
from domain.errors import TamperedStateError

PAGE = 1000
REPAIR_FIRST_PAGE = 8  # a missing suffix of the file is almost always one checkpoint (a crash between two steps)


class CheckpointSink(Protocol):
    def append_all(self, lines: list[str]) -> None: ...

    def last_line(self) -> str | None: ...

    def lines(self) -> list[str]: ...

    def exclusive(self) -> AbstractContextManager[None]: ...


def audit_records(ledger: KeyLedger, after_seq: int = 0, limit: int | None = None) -> Iterator[dict[str, Any]]:
    """Every record in seq order after ``after_seq`` (at most ``limit``), streamed a page at a time. A stored event
    that no longer decodes is yielded as a stub that can never verify, so `verify` names its seq instead of
    crashing."""
    version = after_seq + 1
    left = limit
    while left is None or left > 0:
        page = ledger.recorder.select_events(AUDIT_LOG_ID, gt=version, limit=min(PAGE, left or PAGE))
        if not page:
            return
        for stored in page:
            try:
                event = ledger.mapper.to_domain_event(stored)
                yield event.record if isinstance(event, AuditLog.RecordAppended) else {"seq": stored.originator_version - 1}
            except Exception:
                yield {"seq": stored.originator_version - 1, "undecodable": True}
        version = page[-1].originator_version
        if left is not None:
            left -= len(page)


def decoded_checkpoint(ledger: KeyLedger, stored: Any) -> Checkpoint | None:
    """The checkpoint a stored row of the checkpoints' aggregate holds (None for its Started event). A row changed
    in the database so that it no longer decodes is a checkpoint that nothing can verify (seq -1: "malformed"), so
    `verify`, start-up and `status` name it instead of failing with a traceback (issue 12)."""
    try:
        event = ledger.mapper.to_domain_event(stored)
        if not isinstance(event, AuditCheckpoints.CheckpointSigned):
            return None if stored.originator_version == 1 else _undecodable(stored)
        return Checkpoint(**event.checkpoint)
    except Exception:  # any way a changed row can fail to decode
        return None if stored.originator_version == 1 else _undecodable(stored)


def _undecodable(stored: Any) -> Checkpoint:
    return Checkpoint(seq=-1, chain="", time=f"stored checkpoint version {stored.originator_version} does not decode",
                      previous=None, signature="")


def stored_checkpoints(ledger: KeyLedger) -> list[Checkpoint]:
    return [checkpoint for _, checkpoint in signed_checkpoints_after(ledger, 1)]


def signed_checkpoints_after(ledger: KeyLedger, version: int) -> Iterator[tuple[int, Checkpoint]]:
    """The checkpoints stored after the checkpoint aggregate's ``version``, with their versions, a page
    at a time."""
    while True:
        page = ledger.recorder.select_events(AUDIT_CHECKPOINTS_ID, gt=version, limit=PAGE)
        for stored in page:
            checkpoint = decoded_checkpoint(ledger, stored)
            if checkpoint is not None:
                yield stored.originator_version, checkpoint
        if len(page) < PAGE:
            return
        version = page[-1].originator_version


def audit_head(ledger: KeyLedger) -> tuple[int, str]:
    """The newest record's seq and chain: what a checkpoint signs. A newest record changed in the database so that
    it no longer decodes, or holds no seq and chain, fails closed (TamperedStateError): nothing is signed over it,
    and `verify` names it."""
    stored = ledger.recorder.select_events(AUDIT_LOG_ID, desc=True, limit=1)
    if stored:
        try:
            event = ledger.mapper.to_domain_event(stored[0])
            record = event.record if isinstance(event, AuditLog.RecordAppended) else None
        except Exception:  # any way a changed row can fail to decode
            record = {}
        if record is not None:
            seq, chain = (record.get("seq"), record.get("chain")) if type(record) is dict else (None, None)
            if type(seq) is not int or type(chain) is not str:
                raise TamperedStateError(f"the audit log's newest record (version {stored[0].originator_version})")
            return seq, chain
    return 0, GENESIS.hex()


def audit_record_count(ledger: KeyLedger) -> int:
    """How many records the audit log holds, from its newest event's version (the first is its Started event),
    without decoding that record: what `verify` counts its work and cuts its parts by. A record changed so that
    it no longer decodes is for `verify` to name, not a reason to fail before it starts."""
    stored = ledger.recorder.select_events(AUDIT_LOG_ID, desc=True, limit=1)
    return stored[0].originator_version - 1 if stored else 0


class Checkpointer:
    def __init__(self, ledger: KeyLedger, clock: Clock, signing_key: bytes, sink: CheckpointSink | None,
                 every_records: int, every_seconds: float, heartbeat_seconds: float | None = None) -> None:
        """``sink``: this node's checkpoint file; None when it keeps none (the database holds every checkpoint)."""
        self._ledger = ledger
        self._clock = clock
        self._signing_key = signing_key
        self._public_key = checkpoint_public_key(signing_key)
        self._sink = sink
        # Why the file is left alone (it holds another database's checkpoints), or None.
        self.file_problem: str | None = None
        self._every_records = every_records
        self._every = timedelta(seconds=every_seconds)
        self._heartbeat = timedelta(seconds=max(heartbeat_seconds or every_seconds, every_seconds))

    def _last(self) -> tuple[int, Checkpoint | None]:
        stored = self._ledger.recorder.select_events(AUDIT_CHECKPOINTS_ID, desc=True, limit=1)
        if not stored:
            try:
                self._ledger.save(AuditCheckpoints.start(self._clock.now()))
            except IntegrityError:
                pass
            return 1, None
        return stored[0].originator_version, decoded_checkpoint(self._ledger, stored[0])

    def newest(self) -> Checkpoint | None:
        """The newest signed checkpoint (one index lookup)."""
        return self._last()[1]

    def checkpoint_if_behind(self) -> Checkpoint | None:
        """Signs one when records exist that no checkpoint covers (at start and at graceful shutdown)."""
        last = self.newest()
        seq, _ = audit_head(self._ledger)
        return self.checkpoint_if_due(force=True) if last is None or seq > last.seq else None

    def is_due(self, last: Checkpoint | None, seq: int, now: datetime) -> bool:
        """Every N records; T seconds after the newest checkpoint when records followed it; and a heartbeat
        when nothing did. `verify`'s uncovered-tail rule is the mirror of this (docs/audit.md)."""
        if last is None or seq - last.seq >= self._every_records:
            return True
        age = now - parse_iso(last.time)
        return (seq > last.seq and age >= self._every) or age >= self._heartbeat

    def checkpoint_if_due(self, force: bool = False) -> Checkpoint | None:
        version, last = self._last()
        seq, chain = audit_head(self._ledger)
        now = self._clock.now()
        if not force and not self.is_due(last, seq, now):
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

    def sync_file(self) -> int:
        """Appends the stored checkpoints that follow the file's last line, in order; returns how many. A crash
        between saving a checkpoint and appending it (or another process signing one) leaves a suffix missing;
        this restores it, at start and with every checkpoint, so the file stays a complete chain and an untouched
        log keeps verifying. Cost: the missing suffix, not the file. Only a file whose last line is not a stored
        checkpoint (a damaged line) falls back to comparing the whole file once; what it appends then ends with
        the newest checkpoint, so the next call is cheap again. A file whose last checkpoint another key signed is
        another database's: it is never written to (``file_problem`` says why)."""
        if self._sink is None or self.file_problem is not None:
            return 0
        with self._sink.exclusive():
            last_line = self._sink.last_line()
            if self._signed_elsewhere(last_line):
                self.file_problem = ("it holds checkpoints that this database's checkpoint key did not sign: it "
                                     "belongs to another database, and this node will not write to it")
                return 0
            missing = self._missing_after(last_line)
            if missing is None:
                missing = self._missing_in_whole_file()
            self._sink.append_all([checkpoint_to_json(checkpoint) for checkpoint in missing])
            return len(missing)

    def _signed_elsewhere(self, last_line: str | None) -> bool:
        try:
            checkpoint = checkpoint_from_json(last_line) if last_line is not None else None
        except ValueError:
            return False  # a damaged line is repaired after (and `verify` reports it); it proves no other owner
        return checkpoint is not None and not verify_checkpoint_signature(self._public_key, checkpoint)

    def _missing_after(self, last_line: str | None) -> list[Checkpoint] | None:
        """The stored checkpoints after the one the file ends with, newest last; None if the file's last line
        is no stored checkpoint."""
        known = None
        if last_line is not None:
            try:
                known = checkpoint_from_json(last_line).signature
            except ValueError:
                return None
        newer: list[Checkpoint] = []
        upper: int | None = None
        limit = REPAIR_FIRST_PAGE
        while True:
            page = self._ledger.recorder.select_events(AUDIT_CHECKPOINTS_ID, desc=True, lte=upper, limit=limit)
            for stored in page:
                checkpoint = decoded_checkpoint(self._ledger, stored)
                if checkpoint is None:
                    continue  # the aggregate's Started event: every stored checkpoint is newer than the file
                if checkpoint.seq < 0:  # changed in the database: never copied into the file; `verify` names it
                    raise TamperedStateError(f"the audit checkpoint stored as version {stored.originator_version}")
                if checkpoint.signature == known:
                    return newer[::-1]
                newer.append(checkpoint)
            if len(page) < limit:
                return newer[::-1] if known is None else None
            upper, limit = page[-1].originator_version - 1, PAGE

    def _missing_in_whole_file(self) -> list[Checkpoint]:
        in_file = set()
        for line in self._sink.lines():
            try:
                in_file.add(checkpoint_from_json(line).signature)
            except ValueError:
                continue  # a damaged line stays for `verify` to report; it must not stop the service
        return [checkpoint for checkpoint in stored_checkpoints(self._ledger) if checkpoint.signature not in in_file]


def parse_iso(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def stored_copy_problems(stored: list[Checkpoint], judged: list[Checkpoint], public_key_raw32: bytes | None) -> list[str]:
    """When `verify` judged the log against a checkpoint file (which must hold every checkpoint from the first), the
    database's own copy of the checkpoints is still a stored fact (issue 12). Position by position, each must be the
    file's; one signed after the file's newest (a file that lags by a second) must carry a valid signature and
    follow the one before it. The first that is neither is named (decision 191)."""
    if not judged:
        return []
    for i, cp in enumerate(stored):
        where = f"checkpoint #{i + 1} (seq {cp.seq}, {cp.time})"
        if i < len(judged):
            if cp != judged[i]:
                return [f"the database's copy of {where} is not the checkpoint file's #{i + 1}: a checkpoint was "
                        "changed, inserted or deleted in the database"]
            continue
        follows = cp.previous == checkpoint_hash(stored[i - 1]) and cp.seq >= stored[i - 1].seq
        if not follows or (public_key_raw32 is not None and not verify_checkpoint_signature(public_key_raw32, cp)):
            return [f"the database's {where}, newer than the checkpoint file, is not signed or does not follow the "
                    "checkpoint before it: it was changed or inserted in the database"]
    if len(stored) < len(judged):
        cp = judged[len(stored)]
        return [f"the database holds no copy of checkpoint #{len(stored) + 1} (seq {cp.seq}, {cp.time}): it was "
                "deleted from the database"]
    return []
