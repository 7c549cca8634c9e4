"""Durable, ordered, chained audit records, committed in groups.

Two ways in, one head; every record is bounded on its way in (application/audit/bounds.py), so what is
sealed and stored is the bounded record:
* ``transaction_with_record``: a key change's own record, saved in the key change's transaction.
* ``record`` / ``record_async``: every other call's record, queued; a committer thread writes whatever is
  queued in one transaction (group commit) and wakes each caller when its batch is durable. Nothing is
  answered before that, so a caller never holds a secret whose record could still be lost. A server hands
  its batches to the audit committer process instead (``hand_batches_to``; infrastructure/audit_committer.py),
  which seals and commits every server process's batches together, off their GILs (decision 264).
Both append after one head, through ``ChainAppends`` (application/audit/chain_appends.py): the head, the
writers' lock and the transactions that append are there; getting records to them is here.
"""
from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from typing import Any

from application.audit.bounds import bound_record
from application.audit.chain_appends import ChainAppends
from application.audit.group_commit import (
    AuditUnavailable,
    CommitterGone,
    GroupCommitStats,
    PendingRecord,
    settle,
)
from application.ledger import KeyLedger
from application.ports import (
    AuditIndex,
    BatchChannel,
    BatchCommitter,
    Clock,
    RecordAppends,
    UnitOfWork,
)


class AuditTrail(ChainAppends):
    def __init__(self, ledger: KeyLedger, uow: UnitOfWork, clock: Clock, *, window_seconds: float = 0.0,
                 max_batch: int = 256, index: AuditIndex | None = None, appends: RecordAppends | None = None) -> None:
        super().__init__(ledger, uow, clock, index=index, appends=appends)
        self._window = window_seconds
        self._max_batch = max_batch
        self._queue: queue.SimpleQueue[PendingRecord | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._commit_loop, name="keyledger-audit", daemon=True)
        self._committer: BatchCommitter | None = None  # the audit committer process, once handed to
        # The event loop's own way to it, and its group commit: records waiting while a batch is in flight.
        self._channel: BatchChannel | None = None
        self._waiting: list[PendingRecord] = []
        self._in_flight: list[PendingRecord] | None = None
        self.stats = GroupCommitStats()

    # -- every other record: group commit ----------------------------------------------------------

    def hand_batches_to(self, committer: BatchCommitter) -> None:
        """From now on the committer thread hands each batch to ``committer`` (another process) instead of
        committing it here. Key changes' own records still commit here, with their events."""
        self._committer = committer

    def hand_loop_batches_to(self, channel: BatchChannel) -> None:
        """From now on ``record_async`` on ``channel``'s event loop hands its batches over on that loop: the
        records that gathered while a batch was in flight go out together as the next one."""
        self._channel = channel

    @property
    def hands_batches_over(self) -> bool:
        """Whether this process's batches go to the committer process (not after it died)."""
        return self._committer is not None or self._channel is not None

    def start(self) -> None:
        if not self._thread.is_alive():
            self._thread.start()

    def stop(self) -> None:
        channel, self._channel = self._channel, None
        if channel is not None:  # the app's shutdown waited for its calls: normally none is left waiting
            channel.close()
            waiting, self._waiting = self._waiting, []
            if waiting:
                try:
                    channel.loop.call_soon_threadsafe(self._settle_on_loop, waiting, CommitterGone("stopping"))
                except RuntimeError:  # the loop was closed: nobody waits any more
                    pass
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join(timeout=10)
        committer, self._committer = self._committer, None
        if committer is not None:
            committer.close()

    def record(self, record: dict[str, Any]) -> None:
        """Blocks until the record is durable; raises AuditUnavailable if it cannot be."""
        record = bound_record(record)
        if not self._thread.is_alive():  # no committer (CLI): write directly
            failed: list[BaseException | None] = []
            self._commit([PendingRecord(record, failed.append)])
            if failed[0] is not None:
                raise AuditUnavailable(str(failed[0])) from failed[0]
            return
        finished = threading.Event()
        outcome: list[BaseException | None] = []

        def done(error: BaseException | None) -> None:
            outcome.append(error)
            finished.set()

        self._queue.put(PendingRecord(record, done))
        finished.wait()
        if outcome[0] is not None:
            raise AuditUnavailable(str(outcome[0])) from outcome[0]

    async def record_async(self, record: dict[str, Any]) -> None:
        channel = self._channel
        # On the channel's own thread the running loop is the channel's (a thread runs one loop at a time), and
        # asking asyncio would cost a system call on every call (Python 3.11 compares the loop's pid with getpid()).
        if channel is not None and channel.thread_id == threading.get_ident():
            loop = channel.loop
        else:
            loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        pending = PendingRecord(bound_record(record), None, loop, future)
        if channel is not None and channel.lost is not None and channel.loop is loop:
            self._committer_gone(CommitterGone(channel.lost))  # found between batches: this record was not sent
            channel = None
        if channel is not None and channel.loop is loop:
            self._waiting.append(pending)
            if self._in_flight is None:
                self._send_waiting(channel)
        else:
            self._queue.put(pending)
        await future

    # -- the event loop's hand-over (decision 267): runs on the channel's loop only ----------------------

    def _send_waiting(self, channel: BatchChannel) -> None:
        count = min(self._max_batch, channel.max_records)
        batch, self._waiting = self._waiting[:count], self._waiting[count:]
        self._in_flight = batch
        channel.send([pending.record for pending in batch], self._loop_batch_answered)

    def _loop_batch_answered(self, error: BaseException | None) -> None:
        batch, self._in_flight = self._in_flight or [], None
        if isinstance(error, CommitterGone) and self._channel is not None:  # not: stopped, or known gone
            self._committer_gone(error)
        elif error is None:
            self.appended = True
        self._settle_on_loop(batch, error)
        if not self._waiting:
            return
        if self._channel is not None:
            self._send_waiting(self._channel)
        else:  # the committer is gone: what waits is committed here, by the committer thread
            waiting, self._waiting = self._waiting, []
            for pending in waiting:
                self._queue.put(pending)

    def _settle_on_loop(self, batch: list[PendingRecord], error: BaseException | None) -> None:
        self._count(len(batch), error)
        settle([pending.future for pending in batch if pending.future is not None], error)

    def _committer_gone(self, error: BaseException) -> None:
        """Whether the batch in flight was committed is unknown: it fails closed, and this process commits its own
        records from now on, as a server without a committer process does."""
        logging.getLogger("keyledger.audit").error(
            "the audit committer process is gone (%s); this process commits its own records from now on", error)
        channel, self._channel = self._channel, None
        committer, self._committer = self._committer, None
        for gone in (channel, committer):
            if gone is not None:
                gone.close()

    def _commit_loop(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            deadline = time.monotonic() + self._window
            while len(batch) < self._max_batch:
                try:
                    timeout = deadline - time.monotonic()
                    item = self._queue.get(timeout=timeout) if timeout > 0 else self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    self._queue.put(None)
                    break
                batch.append(item)
            committer = self._committer
            if committer is None:
                self._commit(batch)
            else:
                self._settle(batch, self._hand_over(committer, batch))

    def _hand_over(self, committer: BatchCommitter, batch: list[PendingRecord]) -> BaseException | None:
        try:
            committer.commit([pending.record for pending in batch])
            self.appended = True
            return None
        except CommitterGone as exc:
            self._committer_gone(exc)
            return exc
        except Exception as exc:  # noqa: BLE001 - refused, or not to be handed over: this batch fails closed
            return exc

    def _commit(self, batch: list[PendingRecord]) -> None:
        self._settle(batch, self.commit_records([pending.record for pending in batch]))

    def _settle(self, batch: list[PendingRecord], error: BaseException | None) -> None:
        """Counts the batch and wakes its callers with its outcome."""
        self._count(len(batch), error)
        # asyncio waiters are settled with one wake-up of their loop per batch, not one per record.
        by_loop: dict[asyncio.AbstractEventLoop, list[asyncio.Future[None]]] = {}
        for pending in batch:
            if pending.done is not None:
                pending.done(error)
            elif pending.loop is not None and pending.future is not None:
                by_loop.setdefault(pending.loop, []).append(pending.future)
        for loop, futures in by_loop.items():
            try:
                loop.call_soon_threadsafe(settle, futures, error)
            except RuntimeError:  # the loop was closed: nobody waits any more
                pass

    def _count(self, size: int, error: BaseException | None) -> None:
        self.stats.batches += 1
        self.stats.records += size
        self.stats.largest = max(self.stats.largest, size)
        if error is not None:
            self.stats.failed_records += size
            self.stats.last_failure = type(error).__name__
            self.stats.last_failed_at = time.monotonic()
        else:
            self.stats.last_committed_at = time.monotonic()
