"""The one write path: save aggregates' new events and every view row they change in one transaction,
retrying on a concurrent writer (optimistic concurrency) a bounded number of times."""
from __future__ import annotations

from typing import Any, Callable, Sequence, TypeVar

from eventsourcing.domain import Aggregate
from eventsourcing.persistence import IntegrityError

from application.ledger import KeyLedger
from application.ports import KeyStateView, UnitOfWork
from domain.errors import ConflictError

T = TypeVar("T")
MAX_ATTEMPTS = 5


class LedgerWriter:
    def __init__(self, ledger: KeyLedger, uow: UnitOfWork, view: KeyStateView) -> None:
        self.ledger = ledger
        self._uow = uow
        self._view = view

    def commit(self, aggregates: Sequence[Aggregate], also: Callable[[Any], None] | None = None) -> None:
        """Events, snapshots, view rows and ``also`` (e.g. backing-key rows) commit together or not at all."""
        with self._uow.transaction() as tx:
            if also is not None:
                also(tx)
            recordings = self.ledger.save(*aggregates)
            self._view.project(tx, aggregates, recordings)

    def retrying(self, attempt: Callable[[], tuple[Sequence[Aggregate], T]],
                 also: Callable[[Any], None] | None = None) -> T:
        """Runs ``attempt`` (load, decide) and commits what it changed; on a version conflict, reloads."""
        for _ in range(MAX_ATTEMPTS):
            aggregates, result = attempt()
            changed = [a for a in aggregates if a.pending_events]
            if not changed:
                return result
            try:
                self.commit(changed, also)
                return result
            except IntegrityError:
                continue
        raise ConflictError("The key was changed by another request at the same time; retry the request.")
