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

import bisect
import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Iterator, Protocol

from application.audit.ledger_rows import StoredRow, ledger_entries
from application.audit.records import new_ids
from application.audit.verify_anchor import stored_newest_first
from application.calls import KMS_SOURCE, Call, Operator
from application.ledger import KeyLedger
from application.writer import LedgerWriter
from domain.audit.chain import (
    GENESIS,
    Checkpoint,
    checkpoint_to_json,
    next_chain,
)
from domain.audit.log import AUDIT_LOG_ID, LEDGER_EVENTS, LEDGER_UPGRADE
from domain.audit.segments import (
    SEGMENT_FORMAT,
    checkpoint_of,
    manifest_hash,
    sign_manifest,
)
from domain.errors import ValidationError

MAX_RECORDS = 200_000  # per run: the segment's body is built in memory (about 0.25 kB per record compressed)
EVENT_NAME = "ArchiveAuditRecords"

Row = tuple[int, int, str, bytes]  # position, version, topic, state


class ArchiveStore(Protocol):
    def archived(self) -> list[dict[str, Any]]: ...
    def first_seq_at_or_after(self, before: datetime) -> int | None: ...
    def head_seq(self) -> int: ...
    def audit_rows(self, first_seq: int, last_seq: int) -> Iterator[Row]: ...
    def remove(self, tx: Any, manifest: dict[str, Any], name: str, claims: list[tuple[int, int]]) -> None: ...


class SegmentFiles(Protocol):
    def encode(self, rows: list[Row]) -> bytes: ...
    def write(self, directory: Path, manifest: dict[str, Any], body: bytes) -> Path: ...
    def orphan(self, directory: Path, first_seq: int) -> tuple[Path, dict[str, Any]] | None: ...


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
        resumed = orphan is not None and orphan[1]["last_seq"] <= limit
        if orphan is not None and not resumed:
            orphan[0].unlink()  # an interrupted run's segment for more than may go now: its rows are all still stored
        if resumed:
            assert orphan is not None
            checkpoint = checkpoint_of(orphan[1])
        else:
            found = self._checkpoint_at_or_below(limit)
            if found is None or found.seq < first:
                return None
            checkpoint = found
        rows = list(self._store.audit_rows(first, checkpoint.seq))
        claims: list[tuple[int, int]] = []
        era_over = self._check_chain(rows, first, done["chain_out"] if done else GENESIS.hex(), checkpoint,
                                     bool(done and done["era_over"]), claims)
        body = self._files.encode(rows)
        manifest = sign_manifest(self._signing_key, {
            "format": SEGMENT_FORMAT, "first_seq": first, "last_seq": checkpoint.seq,
            "first_position": rows[0][0], "last_position": rows[-1][0], "records": len(rows),
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
        return ArchiveResult(first, checkpoint.seq, len(rows), path, path.stat().st_size, resumed)

    def _last_archivable(self, before: datetime, first: int, max_records: int) -> int:
        """The last seq that may go: every record up to it is older than ``before`` (records are archived as a
        prefix, so one out-of-order eventTime stops the prefix there), at most ``max_records`` after ``first``."""
        newer = self._store.first_seq_at_or_after(before)
        last = newer - 1 if newer is not None else self._store.head_seq()
        return min(last, first + max_records - 1)

    def _checkpoint_at_or_below(self, seq: int) -> Checkpoint | None:
        """The newest signed checkpoint at or below ``seq`` (cost: the checkpoints signed after it)."""
        for checkpoint in stored_newest_first(self._ledger):
            if checkpoint.seq <= seq:
                return checkpoint
        return None

    def _check_chain(self, rows: list[Row], first: int, chain_hex: str, checkpoint: Checkpoint, era_over: bool,
                     claims: list[tuple[int, int]]) -> bool:
        """Refuses to archive records that do not verify up to the checkpoint (archiving must not turn damage into
        a segment that looks like a faithful copy); whether records name their events by the last one. Adds to
        ``claims`` (store position, seq) of each record that names events (replay finds their seqs there)."""
        chain = bytes.fromhex(chain_hex)
        entries = ledger_entries(self._ledger, _NoBinding(), _ListedRows(rows), rows[0][0] if rows else 1, first - 1)
        positions = iter(rows)
        for expected, (record, leaf) in enumerate(entries, start=first):
            position = next(positions)[0]
            chain = next_chain(chain, leaf) if leaf else chain
            if record.get("seq") != expected or not leaf or record.get("leaf") != leaf.hex() or \
                    record.get("chain") != chain.hex():
                raise ValidationError(f"Record seq {expected} (store position {position}) does not verify: nothing "
                                      "was archived. Run 'keyledger audit verify'.")
            era_over = era_over or LEDGER_EVENTS in record or LEDGER_UPGRADE in record
            if record.get(LEDGER_EVENTS) or LEDGER_UPGRADE in record:
                claims.append((position, expected))
        if not rows or next(positions, None) is not None or chain.hex() != checkpoint.chain:
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


class _ListedRows:
    """``EventRows`` over rows already read (the audit log's, in position order)."""

    def __init__(self, rows: list[Row]) -> None:
        self._rows = rows
        self._positions = [row[0] for row in rows]

    def page(self, start: int, limit: int) -> list[StoredRow]:
        at = bisect.bisect_left(self._positions, start)
        return [(p, AUDIT_LOG_ID, v, t, state) for p, v, t, state in self._rows[at:at + limit]]


class _NoBinding:
    """The records alone: the events they name are the verify's to match (they stay in the store)."""

    in_legacy_era = True  # no stored-time check either: `verify` makes it, before and after archiving

    def event(self, fact: Any) -> None:
        pass

    def record(self, record: dict[str, Any]) -> bool:
        return True
