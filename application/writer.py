"""The one write path: save aggregates' new events and every row they change in one transaction,
retrying on a concurrent writer (optimistic concurrency) a bounded number of times."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Generic, Sequence, TypeVar

from eventsourcing.domain import Aggregate
from eventsourcing.persistence import IntegrityError

from application.audit.trail import AuditTrail
from application.calls import Call
from application.ledger import KeyLedger
from application.ports import KeyStateView, UnitOfWork
from domain.errors import ConflictError, InternalError

T = TypeVar("T")
MAX_ATTEMPTS = 5
Also = Callable[[Any], None]


@dataclass
class Outcome(Generic[T]):
    """What one attempt decided: the aggregates it changed, its answer, and rows to write with them."""

    aggregates: Sequence[Aggregate]
    result: T = None  # type: ignore[assignment]
    also: list[Also] = field(default_factory=list)
    after: list[Callable[[], None]] = field(default_factory=list)  # run once the transaction committed


class LedgerWriter:
    def __init__(self, ledger: KeyLedger, uow: UnitOfWork, view: KeyStateView, audit: AuditTrail) -> None:
        self.ledger = ledger
        self._uow = uow
        self._view = view
        self._audit = audit

    def commit(self, call: Call, aggregates: Sequence[Aggregate], also: Sequence[Also] = ()) -> None:
        """Events, snapshots, view rows, ``also`` (e.g. backing-key rows) and the audit record of ``call``,
        which names every event saved (docs/audit.md, "One ledger"), commit together or not at all."""
        if call is None:  # type: ignore[comparison-overlap]
            raise InternalError("Every change is made by a call and recorded; this one had no call.")
        if call.committed:
            raise InternalError(f"{call.operation} tried to commit a second change under one record.")
        with self._audit.transaction_with_record(call, list(aggregates)) as record:
            with self._uow.transaction() as tx:
                record.begin(tx)  # first: it takes the writers' lock before reading the audit head
                for write in also:
                    write(tx)
                recordings = self.ledger.save(*aggregates)
                record.seal(recordings)
                self._view.project(tx, aggregates, recordings, audit_seq=record.seq)
        self._view.forget(aggregates)

    def retrying(self, call: Call, attempt: Callable[[], Outcome[T]]) -> T:
        """Runs ``attempt`` (load, decide) and commits what it changed with ``call``'s record; on a version
        conflict, reloads."""
        for _ in range(MAX_ATTEMPTS):
            outcome = attempt()
            changed = [a for a in outcome.aggregates if a.pending_events]
            if not changed:
                return outcome.result
            try:
                self.commit(call, changed, outcome.also)
            except IntegrityError:
                continue
            for step in outcome.after:
                step()
            return outcome.result
        raise ConflictError("The key was changed by another request at the same time; retry the request.")
