"""Appending to the audit log's chain: the head, and the transactions that append sealed records after it.

The head (seq, chain) is read after taking the event store's writer lock, inside the transaction that appends, and
held under one in-process lock until that transaction ends: servers in other processes on the same database
(``KEYLEDGER_WORKERS``, or several hosts on PostgreSQL) append one after the other instead of failing on the log's
version. A version conflict is still retried, should one happen. Two kinds of transaction append:
* a key change's own, with its record (``transaction_with_record``, application/audit/change_record.py);
* a batch of other calls' records (``commit_records``): the committer's own transaction on its driver connection
  when it has one (decision 269), else the library's. application/audit/trail.py gathers those batches.
"""
from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Any, Iterator

from eventsourcing.persistence import IntegrityError, StoredEvent

from application.audit.change_record import RecordOfChange
from application.audit.rows import RecordRows
from application.calls import Call
from application.ledger import KeyLedger
from application.ports import AppendTransaction, AuditIndex, Clock, RecordAppends, UnitOfWork
from domain.audit.chain import GENESIS
from domain.audit.log import AUDIT_LOG_ID, AuditLog

MAX_ATTEMPTS = 5


class ChainAppends:
    def __init__(self, ledger: KeyLedger, uow: UnitOfWork, clock: Clock, *, index: AuditIndex | None = None,
                 appends: RecordAppends | None = None) -> None:
        self._ledger = ledger
        self._index = index  # rows that find records by key, principal, event, error and time; same transaction
        self._uow = uow
        self._clock = clock
        self._head_lock = threading.RLock()
        self._head: tuple[int, str] | None = None  # (seq, chain) of the last record we know committed
        self.appended = False  # this process appended a record (it signs a checkpoint over it when it closes)
        # Batches go in as rows made directly (application/audit/rows.py) when those are provably the rows
        # the library would write and the recorder takes rows; otherwise through the library.
        rows = RecordRows(ledger.mapper)
        self._rows = rows if rows.exact and hasattr(ledger.recorder, "insert_rows") else None
        # The audit committer process's own transactions (decision 269): only for rows made directly.
        self._appends = appends if self._rows is not None else None

    # -- head ------------------------------------------------------------------------------------

    def _load_head(self) -> tuple[int, str]:
        stored = self._ledger.recorder.select_events(AUDIT_LOG_ID, desc=True, limit=1)
        if not stored:
            try:
                self._ledger.save(AuditLog.start(self._clock.now()))
            except IntegrityError:
                pass  # another process started it
            return self._load_head()
        return self._head_after(stored[0])

    def _head_after(self, stored: StoredEvent) -> tuple[int, str]:
        """(seq, chain) after the log's stored event ``stored``, its newest."""
        event = self._ledger.mapper.to_domain_event(stored)
        if isinstance(event, AuditLog.RecordAppended):
            return event.record["seq"], event.record["chain"]
        return 0, GENESIS.hex()

    def _begin_append(self, tx: Any) -> tuple[int, str]:
        """Inside transaction ``tx`` (the caller holds ``_head_lock`` until it ends): takes the writers'
        lock, then reads the head, so no other process can append between our reading the head and our
        commit: several servers on one database neither fork the log nor conflict on it."""
        self._uow.lock_writers(tx)
        # The log's version is seq + 1. Unless another process appended since our last append, the head
        # we hold is current and one index lookup says so; otherwise read and decode the last record.
        if self._head is None or self._uow.last_version(tx, AUDIT_LOG_ID) != self._head[0] + 1:
            self._head = self._load_head()
        return self._head

    # -- a key change's own record ---------------------------------------------------------------

    @contextmanager
    def transaction_with_record(self, call: Call, aggregates: list[Any]) -> Iterator[RecordOfChange]:
        """Wraps a key-change transaction. Yields the change's record: inside the transaction, ``begin(tx)``
        first (it takes the writers' lock and reads the head), then the change's events are saved, then
        ``seal(recordings)`` appends the call's record naming those events (their digests) and saves it."""
        record = RecordOfChange(self, call, aggregates)
        with self._head_lock:
            try:
                yield record
            except BaseException:
                self._head = None  # reload next time
                raise
            if record.log is not None:  # the transaction committed with the record
                self._head = (record.log.seq, record.log.chain)
                self.appended = True
                call.committed = True

    # -- a batch of records -------------------------------------------------------------------------

    def _indexed(self, tx: Any, records: list[dict[str, Any]], first_seq: int) -> None:
        if self._index is not None:
            self._index.add(tx, records, first_seq)

    def _append(self, tx: Any, head: tuple[int, str], records: list[dict[str, Any]],
                own: AppendTransaction | None = None) -> tuple[int, str]:
        """Inside the transaction that took the writers' lock (``own`` when it is one of the committer's own): the
        records sealed after ``head`` and inserted, all with one timestamp, and their index rows; returns the new
        head."""
        now = self._clock.now()
        if self._rows is not None:
            rows, after = self._rows.rows(records, head, now)
            if own is not None:
                own.insert_rows(rows)
            else:
                self._ledger.recorder.insert_rows(rows)  # type: ignore[attr-defined]
        else:
            log = AuditLog.at_head(*head)
            for record in records:
                log.append(record, now)
            self._ledger.save(log)
            after = (log.seq, log.chain)
        self._indexed(tx, records, head[0] + 1)
        return after

    def commit_records(self, records: list[dict[str, Any]]) -> BaseException | None:
        """Seals and commits ``records`` in one transaction after the head; returns why not, or None once
        they are durable. The committer thread's work, and the audit committer process's."""
        error: BaseException | None = None
        for _ in range(MAX_ATTEMPTS):
            try:
                with self._head_lock:
                    try:
                        head = self._commit_once(records)
                    except BaseException:
                        self._head = None  # reload next time
                        raise
                    self._head = head  # committed
                    self.appended = True
                error = None
                break
            except IntegrityError as exc:  # another process appended first: reload the head, retry
                error = exc
            except Exception as exc:  # storage down, read-only, disk full: fail closed
                error = exc
                break
        return error

    def _commit_once(self, records: list[dict[str, Any]]) -> tuple[int, str]:
        """One transaction that appends ``records``; the head after them once it has committed."""
        if self._appends is not None:
            with self._appends.transaction() as driver_tx:
                head = self._begin_own_append(driver_tx)
                if head is not None:
                    return self._append(driver_tx, head, records, own=driver_tx)
            # The log has not started: the library's transaction below starts it (once, ever).
        with self._uow.transaction() as tx:
            return self._append(tx, self._begin_append(tx), records)

    def _begin_own_append(self, tx: AppendTransaction) -> tuple[int, str] | None:
        """``_begin_append`` inside one of the committer's own transactions, which took the writers' lock as it
        began; None when the log has no event yet."""
        last = tx.last_version(AUDIT_LOG_ID)
        if last is None:
            return None
        if self._head is None or last != self._head[0] + 1:
            stored = tx.stored_state(AUDIT_LOG_ID, last)
            if stored is None:
                return None
            self._head = self._head_after(StoredEvent(AUDIT_LOG_ID, last, *stored))
        return self._head
