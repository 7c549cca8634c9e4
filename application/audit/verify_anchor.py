"""Incremental `verify` (docs/audit.md, "Incremental verify"): start from the newest checkpoint that an earlier
verify proved against the log, and read only what was stored after it.

What was proved is remembered by the operator who ran the verify, in a state file of theirs (``VerifiedAnchor``):
the checkpoint itself (signed) and the store position of the record it covers. Nothing in the database says what was verified, so nobody who can write only the database can move the
starting point. The newest checkpoint in the database is not a substitute: the service signs whatever head the
database holds, so a log rewritten in the database before the next checkpoint would be signed as it is; only a
checkpoint that a verify matched against the records vouches for what lies before it.

Covered: every row stored at a store position after the anchor record's, every record after its seq (chained from
the checkpoint's chain), every checkpoint signed since (linked to the anchor, signed, matched against the log), and
the anchor record itself (still there, at the same position, with the checkpoint's chain). Not covered: rows at or
before the anchor changed since the earlier verify. That is what a full verify is for; run one periodically.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, Sequence

from application.audit.ledger_rows import EventRows
from application.audit.ledger_verify import LedgerVerifyResult, anchor_problem, verify_tail
from application.ledger import KeyLedger
from domain.audit.chain import Checkpoint, checkpoint_from_json, checkpoint_to_json
from domain.audit.log import AUDIT_CHECKPOINTS_ID, AUDIT_LOG_ID, AuditCheckpoints

STATE_VERSION = 1
PAGE = 1000


@dataclass(frozen=True)
class VerifiedAnchor:
    checkpoint: Checkpoint  # the newest checkpoint the verify matched against the log
    position: int  # the store position (notification id) of the record it covers
    verified_at: str  # when that verify ran

    def to_json(self) -> str:
        return json.dumps({"version": STATE_VERSION, "checkpoint": json.loads(checkpoint_to_json(self.checkpoint)),
                           "position": self.position, "verifiedAt": self.verified_at}, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str) -> VerifiedAnchor:
        try:
            obj = json.loads(text)
            if not isinstance(obj, dict) or obj.get("version") != STATE_VERSION:
                raise ValueError(f"not a version {STATE_VERSION} verify state")
            checkpoint = checkpoint_from_json(json.dumps(obj["checkpoint"]))
            position, at = obj["position"], obj["verifiedAt"]
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"not a verify state: {exc}") from None
        if isinstance(position, bool) or not isinstance(position, int) or position < 1 or not isinstance(at, str):
            raise ValueError("not a verify state: a field has the wrong type")
        return cls(checkpoint, position, at)


def proved_anchor(result: LedgerVerifyResult, checkpoints: Sequence[Checkpoint],
                  position_of: Callable[[Any, int], int | None], now: str) -> VerifiedAnchor | None:
    """Where the next incremental verify may start after ``result`` (which passed, with ``checkpoints`` matched
    against the log): the newest of them, if records named their events by the record it covers (an incremental
    verify cannot resume inside a legacy era, whose proof is one digest over all of it)."""
    if not result.ok or not checkpoints:
        return None
    newest = checkpoints[-1]
    if newest.seq == 0 or result.era_end_seq is None or result.era_end_seq > newest.seq:
        return None
    position = position_of(AUDIT_LOG_ID, newest.seq + 1)
    return VerifiedAnchor(newest, position, now) if position is not None else None


def checkpoints_after(newest_first: Iterable[Checkpoint], anchor: Checkpoint) -> list[Checkpoint] | None:
    """The checkpoints after ``anchor``, oldest first, from a walk from the newest back to it; None when the walk
    never meets it (the checkpoints were replaced, or they are another ledger's). Cost: the checkpoints since."""
    newer = []
    for checkpoint in newest_first:
        if checkpoint == anchor:
            return newer[::-1]
        newer.append(checkpoint)
    return None


def stored_newest_first(ledger: KeyLedger) -> Iterator[Checkpoint]:
    """The database's checkpoints, newest first, a page at a time."""
    upper: int | None = None
    while True:
        page = ledger.recorder.select_events(AUDIT_CHECKPOINTS_ID, desc=True, lte=upper, limit=PAGE)
        for stored in page:
            event = ledger.mapper.to_domain_event(stored)
            if isinstance(event, AuditCheckpoints.CheckpointSigned):
                yield Checkpoint(**event.checkpoint)
        if len(page) < PAGE:
            return
        upper = page[-1].originator_version - 1


def verify_incremental(ledger: KeyLedger, anchor: VerifiedAnchor, newer: Sequence[Checkpoint],
                       public_key_raw32: bytes | None, position_of: Callable[[Any, int], int | None],
                       rows: EventRows | None = None, progress: Callable[[int], None] | None = None,
                       archived_head: tuple[int, str] | None = None) -> LedgerVerifyResult:
    """What was stored after ``anchor``, and the checkpoints ``newer`` than it; see the module docstring. Cost:
    the rows after the anchor record and those checkpoints, whatever the log's length before."""
    checkpoint = anchor.checkpoint

    def failed(problem: str) -> LedgerVerifyResult:
        return LedgerVerifyResult(False, 0, 0, checkpoint.seq, problem, 0)

    problem = anchor_problem(ledger, checkpoint, public_key_raw32, archived_head)
    if problem is not None:
        return failed(f"{problem} (the checkpoint an earlier verify proved, on {anchor.verified_at})")
    position = position_of(AUDIT_LOG_ID, checkpoint.seq + 1)
    if position != anchor.position:
        return failed(f"record seq {checkpoint.seq} is no longer at store position {anchor.position}, where the "
                      f"verify of {anchor.verified_at} found it: rows before it were moved, inserted or deleted")
    return verify_tail(ledger, checkpoint, position + 1, newer, public_key_raw32, rows, True, progress)
