"""The parts of group commit (application/audit/trail.py) that its callers and the committer process share: a record
waiting to be made durable, how its waiter is told the outcome, the batches' counts, and the ways it can fail."""
from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, Callable


def settle(futures: list[asyncio.Future[None]], error: BaseException | None) -> None:
    for future in futures:
        if not future.done():
            future.set_exception(AuditUnavailable(str(error))) if error else future.set_result(None)


class AuditUnavailable(Exception):
    """The record could not be made durable; the call must fail closed."""


class CommitterRefused(Exception):
    """The committer process could not make a batch durable (its reason, the exception's kind and text)."""


class CommitterGone(Exception):
    """The committer process cannot be reached: whether the batch in flight was committed is unknown."""


@dataclass
class PendingRecord:
    record: dict[str, Any]
    done: Callable[[BaseException | None], None] | None  # None: an asyncio waiter, settled per loop
    loop: asyncio.AbstractEventLoop | None = None
    future: asyncio.Future[None] | None = None


@dataclass
class GroupCommitStats:
    batches: int = 0
    records: int = 0
    largest: int = 0
    failed_records: int = 0  # records that could not be made durable: their calls answered KMSInternalException
    # The last outcome, for readiness (application/health.py): time.monotonic() of the last batch that
    # failed and of the last that committed, and the failure's kind (an exception class name, nothing more).
    last_failed_at: float | None = None
    last_committed_at: float | None = None
    last_failure: str | None = None
