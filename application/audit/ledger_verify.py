"""Verifying the whole ledger in one pass over the event store (docs/audit.md, "One ledger").

The audit records are checked as the chain module checks them (leaf, chain, seq, checkpoints). Every other
stored event is checked against the record of the call that committed it: a change's events and its record
are written in one transaction under the writers' lock, the events first, so in the store's order each
record follows exactly the events it names (``ledgerEvents``), and nothing else lies between. So one pass,
holding at most one transaction's events, proves both ways that every event is claimed by exactly one
record and that every claim matches a stored event, byte for byte (domain/audit/seals.py: event_digest).

A log written before records named their events ends its "legacy era" with the upgrade record
(``ledgerUpgrade``), whose digest covers every event stored before it that no record named.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from application.audit.ledger_rows import EventRows, NotificationRows, StoredFact, ledger_entries
from application.ledger import KeyLedger
from domain.audit.chain import (
    GENESIS,
    Checkpoint,
    VerifyResult,
    leaf_hash,
    next_chain,
    verify_checkpoint_signature,
    verify_leaves,
)
from domain.audit.log import AUDIT_LOG_ID, LEDGER_EVENTS, LEDGER_UPGRADE


def legacy_digest(digests: Sequence[str]) -> str:
    running = hashlib.sha256()
    for digest in digests:
        running.update(bytes.fromhex(digest))
    return running.hexdigest()


@dataclass
class LedgerVerifyResult:
    ok: bool
    records: int
    events: int
    first_bad_seq: int | None
    problem: str | None
    checkpoints_checked: int
    position: int | None = None  # the store position of the event at fault, when one is
    aggregate: str | None = None  # and the aggregate it belongs to
    era_end_seq: int | None = None  # the record from which on records name their events (None: not yet)

    @classmethod
    def of_chain(cls, chain: VerifyResult, events: int) -> LedgerVerifyResult:
        return cls(chain.ok, chain.records, events, chain.first_bad_seq, chain.problem, chain.checkpoints_checked)


@dataclass
class _Binding:
    """The records as the chain sees them, with the events between them matched against their claims."""

    legacy_allowed: bool
    in_legacy_era: bool = True
    era_end_seq: int | None = None  # the seq of the record that ended the legacy era
    pending: list[StoredFact] = field(default_factory=list)
    legacy: list[str] = field(default_factory=list)
    events: int = 0
    failure: tuple[int | None, str, StoredFact | None] | None = None  # (seq, problem, event at fault)

    def event(self, fact: StoredFact) -> None:
        self.events += 1
        self.pending.append(fact)

    def record(self, record: dict[str, Any]) -> bool:
        """Whether the record's claims match the events stored since the record before it."""
        seq = record.get("seq")
        upgrade = record.get(LEDGER_UPGRADE)
        claimed = record.get(LEDGER_EVENTS)
        if upgrade is not None:
            return self._upgrade(seq, upgrade)
        if claimed is None:
            if self.pending and self.legacy_allowed and self.in_legacy_era:
                self.legacy.extend(fact.digest for fact in self.pending)
                self.pending.clear()
                return True
            if self.pending:
                return self._fail(seq, f"{self.pending[0].named()} is named by no audit record: it was inserted "
                                  f"(record seq {seq}, the next record, names no events)", self.pending[0])
            return True
        self._end_era(seq)
        if not isinstance(claimed, list):
            return self._fail(seq, f"record seq {seq} names its events in a malformed list", None)
        return self._match(seq, claimed)

    def _upgrade(self, seq: Any, upgrade: Any) -> bool:
        self.legacy.extend(fact.digest for fact in self.pending)
        self.pending.clear()
        if not self.in_legacy_era or not isinstance(upgrade, dict):
            return self._fail(seq, f"record seq {seq} is an upgrade record where none can be", None)
        self._end_era(seq)
        if upgrade.get("events") != len(self.legacy) or upgrade.get("digest") != legacy_digest(self.legacy):
            return self._fail(seq, f"the events stored before the upgrade record seq {seq} are not the ones it "
                              f"covered ({upgrade.get('events')} then, {len(self.legacy)} now): an event from before "
                              "the upgrade was changed, inserted or deleted", None)
        return True

    def _end_era(self, seq: Any) -> None:
        if self.in_legacy_era:
            self.in_legacy_era, self.era_end_seq = False, seq if isinstance(seq, int) else None

    def _match(self, seq: Any, claimed: list[Any]) -> bool:
        stored = {(fact.aggregate, fact.version): fact for fact in self.pending}
        for claim in claimed:
            if not isinstance(claim, dict):
                return self._fail(seq, f"record seq {seq} names its events in a malformed list", None)
            where = (claim.get("aggregate"), claim.get("version"))
            fact = stored.pop(where, None)  # type: ignore[arg-type]
            if fact is None:
                return self._fail(seq, f"record seq {seq} names event version {where[1]} of aggregate {where[0]}, "
                                  "which is not stored where it must be: it was deleted, moved or renumbered", None)
            if fact.digest != claim.get("digest"):
                return self._fail(seq, f"{fact.named()} was modified: it does not match what record seq {seq} "
                                  "says the call committed", fact)
        if stored:
            fact = min(stored.values(), key=lambda f: f.position)
            return self._fail(seq, f"{fact.named()} is named by no audit record: it was inserted", fact)
        order = [(c.get("aggregate"), c.get("version")) for c in claimed]
        if order != [(f.aggregate, f.version) for f in self.pending]:
            return self._fail(seq, f"the events of record seq {seq} are stored out of order: they were reordered",
                              self.pending[0])
        self.pending.clear()
        return True

    def end(self) -> bool:
        if self.pending:
            fact = self.pending[0]
            return self._fail(None, f"{fact.named()} is named by no audit record: it was inserted after the last "
                              "record", fact)
        if self.legacy:
            return self._fail(None, f"{len(self.legacy)} events stored before records named their events have no "
                              "upgrade record covering them: they were inserted", None)
        return True

    def _fail(self, seq: Any, problem: str, fact: StoredFact | None) -> bool:
        self.failure = (seq if isinstance(seq, int) else None, problem, fact)
        return False


def verify_ledger(ledger: KeyLedger, checkpoints: Sequence[Checkpoint] = (), public_key_raw32: bytes | None = None,
                  progress: Callable[[int], None] | None = None, rows: EventRows | None = None) -> LedgerVerifyResult:
    """The whole ledger from its first stored event. ``rows``: how the event store is read (default: the event
    library's notification reader)."""
    binding = _Binding(legacy_allowed=True)
    entries = ledger_entries(ledger, binding, rows or NotificationRows(ledger), 1)
    chain = verify_leaves(entries, checkpoints, public_key_raw32, progress=progress)
    return _combined(chain, binding)


def verify_tail(ledger: KeyLedger, after: Checkpoint, start_position: int, checkpoints: Sequence[Checkpoint] = (),
                public_key_raw32: bytes | None = None, rows: EventRows | None = None, legacy_era_over: bool = False,
                progress: Callable[[int], None] | None = None) -> LedgerVerifyResult:
    """What was stored after a checkpoint: records from ``after.seq`` on, chained from its chain, and the
    events from store position ``start_position`` (just after the record it covers) on; ``checkpoints``: those
    signed after it, in order, each matched against the log as it passes their seq. ``records`` in the result
    counts the records after ``after``."""
    binding = _Binding(legacy_allowed=False, in_legacy_era=not legacy_era_over,
                       era_end_seq=after.seq if legacy_era_over else None)
    entries = ledger_entries(ledger, binding, rows or NotificationRows(ledger), start_position, after.seq)
    chain = verify_leaves(entries, checkpoints, public_key_raw32, progress, after_seq=after.seq,
                          after_chain=bytes.fromhex(after.chain), after_checkpoint=after if checkpoints else None)
    result = _combined(chain, binding)
    result.records = max(0, result.records - after.seq)
    return result


def anchor_problem(ledger: KeyLedger, checkpoint: Checkpoint, public_key_raw32: bytes | None,
                   archived_head: tuple[int, str] | None = None) -> str | None:
    """Why the log no longer holds what ``checkpoint`` covers (its record, whose content gives its leaf, whose
    chain follows the record before and is the checkpoint's), or its signature fails; None when it holds.
    ``archived_head``: (seq, chain) of the newest archived record, when records were archived (the record before
    the checkpoint's may be it)."""
    if public_key_raw32 is not None and not verify_checkpoint_signature(public_key_raw32, checkpoint):
        return f"the checkpoint at seq {checkpoint.seq} ({checkpoint.time}) is forged: its signature does not verify"
    anchor = [_record_of(ledger, n) for n in ledger.recorder.select_events(
        AUDIT_LOG_ID, gt=checkpoint.seq - 1, lte=checkpoint.seq + 1)]  # the records at seq - 1 and seq
    previous = anchor[0].get("chain") if len(anchor) == 2 and anchor[0] else GENESIS.hex()
    if len(anchor) == 1 and archived_head is not None and archived_head[0] == checkpoint.seq - 1:
        previous = archived_head[1]
    covered = anchor[-1] if anchor else None
    if covered is None or covered.get("seq") != checkpoint.seq:
        return (f"record seq {checkpoint.seq}, which the checkpoint of {checkpoint.time} covers, is missing: the log "
                "was truncated or rolled back")
    try:
        leaf = leaf_hash(covered)
        chain = next_chain(bytes.fromhex(previous), leaf).hex()
    except (TypeError, ValueError):
        leaf, chain = None, None
    if leaf is None or covered.get("leaf") != leaf.hex() or covered.get("chain") != chain or chain != checkpoint.chain:
        return f"record seq {checkpoint.seq} does not match the checkpoint of {checkpoint.time}: the log was rewritten"
    return None


def _record_of(ledger: KeyLedger, stored: Any) -> dict[str, Any] | None:
    try:
        record = getattr(ledger.mapper.to_domain_event(stored), "record", None)
    except Exception:  # a row that no longer decodes vouches for nothing; the caller names the seq
        return None
    return record if isinstance(record, dict) else None


def verify_since(ledger: KeyLedger, checkpoint: Checkpoint | None, public_key_raw32: bytes | None,
                 position_of: Callable[[Any, int], int | None],
                 archived: tuple[Checkpoint, int] | None = None) -> LedgerVerifyResult:
    """What start-up proves before serving: everything stored since the newest signed checkpoint (the whole
    ledger when there is none). Cost: the records and events since that checkpoint. ``archived``: the signed
    checkpoint the newest archived segment ends at and the store position of its last record; when the newest
    checkpoint is not after it, the tail is proved from it (the records it covers are gone from the store)."""
    if archived is not None and (checkpoint is None or checkpoint.seq <= archived[0].seq):
        start, position = archived
        if public_key_raw32 is not None and not verify_checkpoint_signature(public_key_raw32, start):
            return LedgerVerifyResult(False, 0, 0, start.seq, "the checkpoint the newest archived segment ends at "
                                      "is forged", 0)
        return verify_tail(ledger, start, position + 1, legacy_era_over=True)
    if checkpoint is None or checkpoint.seq == 0:
        return verify_ledger(ledger, [checkpoint] if checkpoint else [], public_key_raw32)

    def failed(problem: str) -> LedgerVerifyResult:
        return LedgerVerifyResult(False, 0, 0, checkpoint.seq, problem, 0)

    problem = anchor_problem(ledger, checkpoint, public_key_raw32,
                             (archived[0].seq, archived[0].chain) if archived is not None else None)
    if problem is not None:
        return failed(problem.replace("the checkpoint", "the newest checkpoint", 1))
    position = position_of(AUDIT_LOG_ID, checkpoint.seq + 1)
    if position is None:
        return failed(f"record seq {checkpoint.seq} has no place in the event store")
    return verify_tail(ledger, checkpoint, position + 1)


def _combined(chain: VerifyResult, binding: _Binding) -> LedgerVerifyResult:
    if binding.failure is None and chain.ok:
        binding.end()
    if binding.failure is not None and not chain.ok and chain.first_bad_seq is not None and (
            binding.failure[0] is None or chain.first_bad_seq < binding.failure[0]):
        binding.failure = None  # the chain's lookahead read past its own first problem
    if binding.failure is not None:
        seq, problem, fact = binding.failure
        # The stream stopped at the record at fault, so every record before it passed the chain's checks.
        return LedgerVerifyResult(False, chain.records, binding.events, seq, problem, chain.checkpoints_checked,
                                  fact.position if fact else None, fact.aggregate if fact else None)
    result = LedgerVerifyResult.of_chain(chain, binding.events)
    result.era_end_seq = binding.era_end_seq
    return result


__all__ = ["LedgerVerifyResult", "StoredFact", "verify_ledger", "verify_tail", "verify_since", "anchor_problem",
           "legacy_digest", "GENESIS", "LEDGER_UPGRADE"]
