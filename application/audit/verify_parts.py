"""A full verify in parts (docs/audit.md, "Verify in parts"; decision 251): the ledger cut at signed checkpoints into
parts of about equal work, each proved on its own (infrastructure/verify_workers.py runs one process per part),
their verdicts joined only when every part proved OK; anything else is the one pass's to decide and word."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

from application.audit.ledger_rows import EventRows, RowsUntil
from application.audit.ledger_verify import LedgerVerifyResult, verify_ledger, verify_tail
from application.ledger import KeyLedger
from domain.audit.chain import Checkpoint
from domain.audit.log import AUDIT_LOG_ID


@dataclass(frozen=True)
class LedgerPart:
    """A stretch of the ledger one verify can prove on its own (docs/audit.md, "Verify in parts"): from just after
    the record a signed checkpoint covers (``after``; None: the ledger's first event) up to and including the row of
    the record the next part's checkpoint covers (``until_position``; None: to the end). ``checkpoints``: those
    matched in this stretch, in order (the last part's run to the end of the list)."""

    after: Checkpoint | None
    start_position: int
    until_position: int | None
    checkpoints: tuple[Checkpoint, ...]


# What verifying an event costs beside a record (its digest against decoding, re-encoding and hashing a record):
# about a quarter, measured on the bench's store. Parts are cut to equal work, not equal rows.
EVENT_WEIGHT = 0.25


def ledger_parts(checkpoints: Sequence[Checkpoint], records: int, position_of: Callable[[Any, int], int | None],
                 count: int, end_position: int | None = None) -> list[LedgerPart] | None:
    """``count`` parts of about equal work (records, and the other events at ``EVENT_WEIGHT`` each, counted from
    ``end_position``, the store's last position; of equal records without it), split at signed checkpoints; None
    when the ledger cannot be split (too few checkpoints, or a checkpoint's record has no place in the store: the
    one-pass verify then says why).

    Proving each part as ``verify_tail`` proves what follows a checkpoint proves the whole: the parts tile the
    store's positions; part i ends at the record of checkpoint c, which it matches against c (so c's chain is the
    log's); part i + 1 starts from c's chain with the same state the one pass would have there (no pending events:
    a record follows its events; the legacy era over, which part 0 must show). So every part OK means the one pass
    is OK. Anything else is left to the one pass, which names the first problem as it always has."""
    usable = sorted((cp for cp in checkpoints if 0 < cp.seq < records), key=lambda cp: cp.seq)
    if count < 2 or not usable:
        return None
    where: dict[int, int | None] = {}

    def position(cp: Checkpoint) -> int | None:  # of the record it covers; positions grow with seq
        if cp.seq not in where:
            where[cp.seq] = position_of(AUDIT_LOG_ID, cp.seq + 1)
        return where[cp.seq]

    cuts: list[Checkpoint] = []
    for i in range(1, count):
        if end_position is None:
            cut = min(usable, key=lambda cp: abs(cp.seq - records * i // count))
        else:  # the checkpoint nearest the share's end, by bisection (work grows with seq)
            def work(cp: Checkpoint) -> float | None:  # before and at the record the checkpoint covers
                at = position(cp)
                return None if at is None else cp.seq + EVENT_WEIGHT * (at - cp.seq)

            whole = records + EVENT_WEIGHT * max(0, end_position - records)
            target, low, high = whole * i / count, 0, len(usable) - 1
            while low < high:
                middle = (low + high) // 2
                done = work(usable[middle])
                if done is None:
                    return None
                low, high = (middle + 1, high) if done < target else (low, middle)
            near = [cp for cp in usable[max(0, low - 1):low + 1] if position(cp) is not None]
            if not near:
                return None
            cut = min(near, key=lambda cp: abs(work(cp) - target))  # type: ignore[operator]
        # Several checkpoints can cover one seq (an idle server's heartbeat): the part ending there matches them all.
        cut = [cp for cp in usable if cp.seq == cut.seq][-1]
        if not cuts or cut.seq > cuts[-1].seq:
            cuts.append(cut)
    if not cuts:
        return None
    positions = [position(cut) for cut in cuts]
    if any(p is None for p in positions):
        return None
    parts, start, after = [], 1, None
    for cut, position_ in zip(cuts, positions):
        low_seq = after.seq if after is not None else -1
        matched = tuple(cp for cp in checkpoints if low_seq < cp.seq <= cut.seq)
        parts.append(LedgerPart(after, start, position_, matched))
        start, after = position_ + 1, cut  # type: ignore[operator]
    last = cuts[-1]
    parts.append(LedgerPart(last, start, None, tuple(cp for cp in checkpoints if cp.seq > last.seq)))
    # Every stored checkpoint is checked by one part, in its stored order. One that did not decode (seq -1), or one
    # out of order, would be checked by none: the one pass names it.
    checked = [cp for part in parts for cp in part.checkpoints]
    if len(checked) != len(checkpoints) or any(a is not b for a, b in zip(checked, checkpoints)):
        return None
    return parts


def verify_part(ledger: KeyLedger, part: LedgerPart, public_key_raw32: bytes | None, rows: EventRows,
                progress: Callable[[int], None] | None = None) -> LedgerVerifyResult:
    """One part of ``ledger_parts``: the first as the one pass starts, the others as ``verify_tail`` from their
    checkpoint with the legacy era over. ``records`` counts the part's own records."""
    bounded = RowsUntil(rows, part.until_position) if part.until_position is not None else rows
    if part.after is None:
        return verify_ledger(ledger, part.checkpoints, public_key_raw32, progress, bounded)
    return verify_tail(ledger, part.after, part.start_position, part.checkpoints, public_key_raw32, bounded,
                       legacy_era_over=True, progress=progress)


def joined_parts(parts: Sequence[LedgerPart], results: Sequence[LedgerVerifyResult]) -> LedgerVerifyResult | None:
    """The whole ledger's verdict from its parts' when every part proved OK and the legacy era ended in the first
    part (as the later parts assumed); None otherwise: the one pass must decide (and word) it."""
    if len(results) != len(parts) or not all(r.ok for r in results):
        return None
    era_end = results[0].era_end_seq
    if len(parts) > 1 and (era_end is None or era_end > parts[1].after.seq):  # type: ignore[union-attr]
        return None
    return LedgerVerifyResult(True, sum(r.records for r in results), sum(r.events for r in results), None, None,
                              sum(r.checkpoints_checked for r in results), era_end_seq=era_end)
