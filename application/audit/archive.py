"""`keyledger audit archive --before T` (docs/audit.md, "Retention: archived segments"): old records move out of the
event store into a signed, compressed segment file, and the database keeps going from the archived head.

One run archives one segment: the records from the first one not archived up to the newest signed checkpoint whose
records are all older than T, at most ``max_records`` of them (bounded work per run). Only records a signed
checkpoint covers leave, so the database keeps a signed chain value to continue from (the checkpoint), and the
segment carries that checkpoint too. Key events stay: point in time over key state is untouched; the records that
claim them (decision 8's binding) go with the segment, and `verify --segments` checks the binding across both.

Order, for a crash at any moment: (1) the rows are read and their chain checked against the checkpoint, (2) the
segment file is written (temporary name, fsync, rename), (3) one transaction records the archive call (its own
audit record, naming the segment's digest) and deletes the rows and their audit-index rows and registers the
segment. A crash before (3) leaves the rows where they were and a segment file nothing refers to; the next run
finds it and finishes it (the same rows give the same body), so records are never lost or archived twice.
"""
from __future__ import annotations

import hashlib
import json
from collections import deque
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Iterator, Protocol

from application.audit.ledger_rows import StoredRow, ledger_entries
from application.audit.records import new_ids
from application.calls import KMS_SOURCE, Call, Operator
from application.ledger import KeyLedger
from application.writer import LedgerWriter
from domain.audit.chain import (
    GENESIS,
    Checkpoint,
    checkpoint_to_json,
    next_chain,
)
from domain.audit.log import AUDIT_CHECKPOINTS_ID, AUDIT_LOG_ID, LEDGER_EVENTS, LEDGER_UPGRADE, AuditCheckpoints
from domain.audit.segments import (
    SEGMENT_FORMAT,
    checkpoint_of,
    manifest_hash,
    manifest_problem,
    sign_manifest,
)
from domain.errors import ValidationError

MAX_RECORDS = 200_000  # per run: one transaction deletes them; the compressed body (~150 B a record) is in memory
EVENT_NAME = "ArchiveAuditRecords"

Row = tuple[int, int, str, bytes]  # position, version, topic, state


class ArchiveStore(Protocol):
    def archived(self) -> list[dict[str, Any]]: ...
    def first_seq_at_or_after(self, before: datetime) -> int | None: ...
    def head_seq(self) -> int: ...
    def audit_rows(self, first_seq: int, last_seq: int) -> Iterator[Row]: ...
    def remove(self, tx: Any, manifest: dict[str, Any], name: str, claims: list[tuple[int, int]]) -> None: ...


class SegmentEncoder(Protocol):
    def add(self, row: Row) -> None: ...
    def finish(self) -> bytes: ...


class SegmentFiles(Protocol):
    def encoder(self) -> SegmentEncoder: ...
    def write(self, directory: Path, manifest: dict[str, Any], body: bytes) -> Path: ...
    def orphan(self, directory: Path, first_seq: int) -> tuple[Path, dict[str, Any]] | None: ...
    def set_aside(self, path: Path) -> Path: ...


@dataclass(frozen=True)
class ArchiveResult:
    first_seq: int
    last_seq: int
    records: int
    segment: Path
    segment_bytes: int
    resumed: bool


class AuditArchive:
    def __init__(self, ledger: KeyLedger, writer: LedgerWriter, store: ArchiveStore, files: SegmentFiles,
                 signing_key: bytes, public_key: bytes, now: Callable[[], datetime], region: str,
                 account_id: str) -> None:
        self._ledger, self._writer, self._store, self._files = ledger, writer, store, files
        self._signing_key, self._public_key, self._now = signing_key, public_key, now
        self._region, self._account_id = region, account_id
        self.before_remove: Callable[[Path], None] | None = None  # tests: a crash after the segment is written

    def archive(self, operator: Operator, before: datetime, directory: Path,
                max_records: int = MAX_RECORDS) -> ArchiveResult | None:
        """Archive the next segment; None when no signed checkpoint covers a record older than ``before``."""
        if not 1 <= max_records <= MAX_RECORDS:
            raise ValidationError(f"--max-records must be between 1 and {MAX_RECORDS}.")
        if before > self._now():
            raise ValidationError("--before is in the future: only records already written can be archived.")
        archived = self._store.archived()
        done = archived[-1] if archived else None
        first = done["last_seq"] + 1 if done else 1
        limit = self._last_archivable(before, first, max_records)
        orphan = self._files.orphan(directory, first)
        unsound = manifest_problem(orphan[1], self._public_key) if orphan is not None else None
        if orphan is not None and unsound is not None:
            raise ValidationError(f"The segment file {orphan[0]} {unsound}: move it aside and archive again.")
        resumed = orphan is not None and orphan[1]["last_seq"] <= limit
        if orphan is not None and not resumed:
            # An interrupted run's segment reaching past what may go now. Set aside, never deleted: should the
            # database's record of the archive have been removed, it could be the only copy of its records.
            self._files.set_aside(orphan[0])
        if resumed:
            assert orphan is not None
            checkpoint = checkpoint_of(orphan[1])
        else:
            found = self._checkpoint_at_or_below(limit)
            if found is None or found.seq < first:
                return None
            checkpoint = found
        encoder = self._files.encoder()
        rows = _StreamedRows(self._store.audit_rows(first, checkpoint.seq), encoder.add)
        claims: list[tuple[int, int]] = []
        era_over = self._check_chain(rows, first, done["chain_out"] if done else GENESIS.hex(), checkpoint,
                                     bool(done and done["era_over"]), claims)
        body = encoder.finish()
        manifest = sign_manifest(self._signing_key, {
            "format": SEGMENT_FORMAT, "first_seq": first, "last_seq": checkpoint.seq,
            "first_position": rows.first_position, "last_position": rows.last_position, "records": rows.count,
            "chain_in": done["chain_out"] if done else GENESIS.hex(), "chain_out": checkpoint.chain,
            "checkpoint": json.loads(checkpoint_to_json(checkpoint)),
            "previous": manifest_hash(done) if done else None, "body_sha256": hashlib.sha256(body).hexdigest(),
            "body_bytes": len(body), "era_over": era_over})
        if resumed:
            assert orphan is not None
            path, kept = orphan
            if kept != manifest:
                raise ValidationError(f"The segment file {path} does not hold the stored records {first}-"
                                      f"{checkpoint.seq}: move it aside and archive again.")
            manifest = kept
        else:
            path = self._files.write(directory, manifest, body)
        if self.before_remove is not None:
            self.before_remove(path)
        self._commit(operator, manifest, path, before, claims)
        return ArchiveResult(first, checkpoint.seq, rows.count, path, path.stat().st_size, resumed)

    def _last_archivable(self, before: datetime, first: int, max_records: int) -> int:
        """The last seq that may go: every record up to it is older than ``before`` (records are archived as a
        prefix, so one out-of-order eventTime stops the prefix there), at most ``max_records`` after ``first``."""
        newer = self._store.first_seq_at_or_after(before)
        last = newer - 1 if newer is not None else self._store.head_seq()
        return min(last, first + max_records - 1)

    def _checkpoint_at_or_below(self, seq: int) -> Checkpoint | None:
        """The newest signed checkpoint at or below ``seq``: a binary search over the checkpoints' versions (their
        seqs never go down), so a run costs a few lookups however many checkpoints were signed since."""
        newest = self._ledger.recorder.select_events(AUDIT_CHECKPOINTS_ID, desc=True, limit=1)
        low, high, found = 2, newest[0].originator_version if newest else 1, None  # version 1: the aggregate's start
        while low <= high:
            middle = (low + high) // 2
            checkpoint = self._checkpoint_version(middle)
            if checkpoint is not None and checkpoint.seq <= seq:
                found, low = checkpoint, middle + 1
            else:
                high = middle - 1
        return found

    def _checkpoint_version(self, version: int) -> Checkpoint | None:
        stored = self._ledger.recorder.select_events(AUDIT_CHECKPOINTS_ID, gt=version - 1, lte=version)
        event = self._ledger.mapper.to_domain_event(stored[0]) if stored else None
        return Checkpoint(**event.checkpoint) if isinstance(event, AuditCheckpoints.CheckpointSigned) else None

    def _check_chain(self, rows: _StreamedRows, first: int, chain_hex: str, checkpoint: Checkpoint, era_over: bool,
                     claims: list[tuple[int, int]]) -> bool:
        """Refuses to archive records that do not verify up to the checkpoint (archiving must not turn damage into
        a segment that looks like a faithful copy); whether records name their events by the last one. Adds to
        ``claims`` (store position, seq) of each record that names events (replay finds their seqs there)."""
        chain = bytes.fromhex(chain_hex)
        entries = ledger_entries(self._ledger, _NoBinding(), rows, 1, first - 1)
        for expected, (record, leaf) in enumerate(entries, start=first):
            position = rows.positions.popleft() if rows.positions else 0
            chain = next_chain(chain, leaf) if leaf else chain
            if record.get("seq") != expected or not leaf or record.get("leaf") != leaf.hex() or \
                    record.get("chain") != chain.hex():
                raise ValidationError(f"Record seq {expected} (store position {position}) does not verify: nothing "
                                      "was archived. Run 'keyledger audit verify'.")
            era_over = era_over or LEDGER_EVENTS in record or LEDGER_UPGRADE in record
            if record.get(LEDGER_EVENTS) or LEDGER_UPGRADE in record:
                claims.append((position, expected))
        if not rows.count or rows.positions or chain.hex() != checkpoint.chain:
            raise ValidationError(f"The records up to seq {checkpoint.seq} do not match its signed checkpoint: "
                                  "nothing was archived. Run 'keyledger audit verify'.")
        if not era_over:
            raise ValidationError("Records stored before the ledger's upgrade (before records named their events) "
                                  "cannot be archived: archive up to a later time.")
        return era_over

    def _commit(self, operator: Operator, manifest: dict[str, Any], path: Path, before: datetime,
                claims: list[tuple[int, int]]) -> None:
        request_id, event_id = new_ids(2)
        call = Call.operator_call(EVENT_NAME, operator=operator, at=self._now(), request_id=request_id,
                                  event_id=event_id, source=KMS_SOURCE, region=self._region,
                                  account_id=self._account_id, request_parameters={
                                      "before": before.strftime("%Y-%m-%dT%H:%M:%SZ"),
                                      "firstSeq": manifest["first_seq"], "lastSeq": manifest["last_seq"],
                                      "records": manifest["records"], "segment": path.name,
                                      "manifestHash": manifest_hash(manifest), "chainOut": manifest["chain_out"]})
        call.authorized = call.authorized_by_rule = True  # an operator call, allowed by rule (the authorizer's)
        self._writer.commit(call, [], also=[lambda tx: self._store.remove(tx, manifest, path.name, claims)])


class _StreamedRows:
    """``EventRows`` over the rows being archived as the store hands them out, a page at a time: each row goes to
    the segment's encoder as the chain check reads it, so a run holds one page and the compressed body in memory."""

    def __init__(self, rows: Iterator[Row], sink: Callable[[Row], None]) -> None:
        self._rows, self._sink = rows, sink
        self.positions: deque[int] = deque()  # of the rows handed out whose records were not checked yet
        self.count, self.first_position, self.last_position = 0, 0, 0

    def page(self, start: int, limit: int) -> list[StoredRow]:
        out: list[StoredRow] = []
        for row in self._rows:
            position, version, topic, state = row
            self._sink(row)
            self.positions.append(position)
            self.count += 1
            self.first_position = self.first_position or position
            self.last_position = position
            out.append((position, AUDIT_LOG_ID, version, topic, state))
            if len(out) == limit:
                break
        return out


class _NoBinding:
    """The records alone: the events they name are the verify's to match (they stay in the store)."""

    in_legacy_era = True  # no stored-time check either: `verify` makes it, before and after archiving

    def event(self, fact: Any) -> None:
        pass

    def record(self, record: dict[str, Any]) -> bool:
        return True
