"""Reading a ledger part of whose records were archived (docs/audit.md, "Retention: archived segments").

With the segments, `verify` reads the event store and the segments merged by store position (``MergedRows``): the
rows are the ones the store held, so every check of the full verify applies unchanged, the binding of events to the
records that claim them included. Without them, it proves what the database holds from the archive's signed
checkpoint on (``verify_after_archive``) and says which records it did not read: never a silent pass.
"""
from __future__ import annotations

from typing import Any, Iterable, Iterator, Sequence

from eventsourcing.persistence import StoredEvent

from application.audit.ledger_rows import EventRows, StoredRow
from application.audit.ledger_verify import LedgerVerifyResult, verify_tail
from application.ledger import KeyLedger
from domain.audit.chain import GENESIS, Checkpoint, verify_checkpoint_signature
from domain.audit.log import AuditLog
from domain.audit.segments import checkpoint_of, manifest_hash, manifest_problem, run_problem


class SegmentMismatch(ValueError):
    """A segment and the event store hold different rows at one store position."""


class MergedRows:
    """``EventRows`` over the event store and the archived rows (in position order), as one store. A row in both
    (a segment an interrupted archive wrote, whose rows were not deleted yet) must be the same row."""

    def __init__(self, base: EventRows, archived: Iterable[StoredRow]) -> None:
        self._base, self._archived = base, iter(archived)
        self._buffer: list[StoredRow] = []
        self._done = False

    def page(self, start: int, limit: int) -> Sequence[StoredRow]:
        stored = list(self._base.page(start, limit))
        self._buffer = [row for row in self._buffer if row[0] >= start]
        while not self._done and len(self._buffer) < limit:
            row = next(self._archived, None)
            if row is None:
                self._done = True
            elif row[0] >= start:
                self._buffer.append(row)
        # Store rows after the last one read are not known yet: archived rows beyond it wait for the next page.
        horizon = stored[-1][0] if len(stored) == limit else None
        by_position = {row[0]: row for row in stored}
        for row in self._buffer:
            if horizon is not None and row[0] > horizon:
                break
            same = by_position.setdefault(row[0], row)
            if same is not row and (same[2], same[3], same[4], same[1]) != (row[2], row[3], row[4], row[1]):
                raise SegmentMismatch(f"store position {row[0]} holds one row in the database and another in its "
                                      "segment")
        merged = [by_position[p] for p in sorted(by_position)][:limit]
        return merged


def coverage_problem(archived: Sequence[dict[str, Any]], segments: Sequence[dict[str, Any]]) -> str | None:
    """Whether the segments given are one unbroken run from record 1 that holds every segment the database says it
    archived. (Each segment was checked on its own when it was read: manifest, signature, body digest.)"""
    problem = run_problem(segments)
    if problem is not None:
        return problem
    given = {manifest_hash(m) for m in segments}
    for manifest in archived:
        if manifest_hash(manifest) not in given:
            return (f"records {manifest['first_seq']}-{manifest['last_seq']} were archived in a segment that is not "
                    "among those given (dropped or replaced)")
    return None


def segment_rows(bodies: Iterable[Iterator[StoredRow]]) -> Iterator[StoredRow]:
    for rows in bodies:
        yield from rows


def segment_records(ledger: KeyLedger, rows: Iterable[StoredRow], up_to_seq: int) -> Iterator[dict[str, Any]]:
    """The records of archived rows, decoded as the event store's would be, up to ``up_to_seq``."""
    for _, originator, version, topic, state in rows:
        if version - 1 > up_to_seq:
            return
        try:
            event = ledger.mapper.to_domain_event(StoredEvent(originator, version, topic, state))
        except Exception:
            yield {"seq": version - 1, "undecodable": True}
            continue
        if isinstance(event, AuditLog.RecordAppended):
            yield event.record


def chain_start(archived: Sequence[dict[str, Any]], checkpoints: Sequence[Checkpoint]
                ) -> tuple[int, bytes, Checkpoint | None, list[Checkpoint]]:
    """Where a chain check of the database's own records starts: (seq, chain) after the newest archived segment,
    its checkpoint, and the checkpoints after it (all of them, from the genesis, when nothing is archived)."""
    if not archived:
        return 0, GENESIS, None, list(checkpoints)
    start = checkpoint_of(archived[-1])
    newer = list(checkpoints[checkpoints.index(start) + 1:]) if start in checkpoints else list(checkpoints)
    return start.seq, bytes.fromhex(start.chain), start, newer


def verify_after_archive(ledger: KeyLedger, archived: Sequence[dict[str, Any]], checkpoints: Sequence[Checkpoint],
                         public_key_raw32: bytes | None, rows: EventRows | None = None) -> LedgerVerifyResult:
    """Without the segments: what the database holds after the newest archived segment, chained from its signed
    checkpoint, which must be among ``checkpoints`` (those after it are matched against the log). ``records``
    counts the records after it; the caller says which were not read."""
    newest = archived[-1]
    start = checkpoint_of(newest)

    def failed(problem: str) -> LedgerVerifyResult:
        return LedgerVerifyResult(False, 0, 0, newest["last_seq"], problem, 0)

    # The database's record of the archive is signed (each manifest) and one unbroken run: without the signing key,
    # nobody who can write the database can pass off deleted records as archived ones.
    for manifest in archived:
        problem = manifest_problem(manifest, public_key_raw32)
        if problem is not None:
            return failed(f"the database's record of the segment of records {manifest.get('first_seq')}-"
                          f"{manifest.get('last_seq')} {problem}")
    problem = run_problem(archived)
    if problem is not None:
        return failed(f"the database's record of its archive: {problem}")
    if public_key_raw32 is not None and not verify_checkpoint_signature(public_key_raw32, start):
        return failed(f"the checkpoint the archive of records up to seq {start.seq} ends at is forged")
    if start not in checkpoints:
        return failed(f"the checkpoint the archive of records up to seq {start.seq} ends at is not among the "
                      "checkpoints verified against: they were replaced, or the archive belongs to another ledger")
    newer = list(checkpoints[checkpoints.index(start) + 1:])
    return verify_tail(ledger, start, newest["last_position"] + 1, newer, public_key_raw32, rows,
                       legacy_era_over=True)
