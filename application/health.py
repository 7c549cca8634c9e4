"""Whether this process can do its work: the readiness behind ``GET /healthz`` and ``/healthz/ready``.

Ready means a call would be answered normally now: the service is not sealed, the database takes a write
(the storage probe: a one-row write under the writers' lock, with a short lock timeout, so a locked
database, a full or read-only disk and an unreachable server all show), and the audit trail's last commit
did not fail since storage last proved writable. Liveness (``/healthz/live``) asks none of this: a process
that answers is alive, and restarting it would not unlock a database.

The probe runs in a thread of its own, never on the event loop, at most once per ``cache_seconds``
whatever the number of health requests (they share its result, and a request that comes while one runs
waits for that one), so polling /healthz cannot load the database. A probe that does not finish within its
timeout answers "not ready" and is not started again until it has finished.
"""
from __future__ import annotations

import asyncio
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, Protocol


class StorageProbe(Protocol):
    def check(self) -> str | None:
        """Writes the probe row in a transaction of its own, waiting at most the probe's timeout for the
        writers' lock; None when that committed, else why not, in words fit for an unauthenticated
        answer (no address, no credential, no SQL)."""


class AuditOutcome(Protocol):
    """The audit trail's group-commit statistics (application/audit/trail.py GroupCommitStats)."""

    last_failed_at: float | None  # time.monotonic() of the last batch that could not be made durable
    last_committed_at: float | None
    last_failure: str | None


@dataclass(frozen=True)
class Readiness:
    status: str  # "ready" | "not ready" | "sealed"
    reason: str | None = None

    @property
    def ready(self) -> bool:
        return self.status == "ready"

    def body(self) -> dict[str, str]:
        return {"status": self.status, **({"reason": self.reason} if self.reason else {})}


@dataclass(frozen=True)
class _ProbeResult:
    reason: str | None  # None: the write committed
    finished_at: float


class HealthService:
    def __init__(self, sealed_reason: Callable[[], str | None], storage: StorageProbe | None,
                 audit: AuditOutcome | None, *, probe_timeout: float = 1.0, cache_seconds: float = 1.0,
                 clock: Callable[[], float] = time.monotonic, on_close: Callable[[], None] | None = None) -> None:
        """``probe_timeout``: how long the probe waits for the database's writers' lock; a health request
        waits for the probe a second longer, so that the database's own answer (locked, read-only...)
        arrives first when there is one."""
        self._sealed_reason = sealed_reason
        self._storage = storage
        self._audit = audit
        self._probe_timeout = probe_timeout
        self._cache_seconds = cache_seconds
        self._clock = clock
        self._on_close = on_close
        self._executor: ThreadPoolExecutor | None = None
        self._running: Future[_ProbeResult] | None = None
        self._last: _ProbeResult | None = None
        self._last_good_at: float | None = None  # when a probe last committed

    async def readiness(self) -> Readiness:
        sealed = self._sealed_reason()
        if sealed:
            return Readiness("sealed", sealed)
        if self._storage is not None:
            probe = await self._probe()
            if probe.reason is not None:
                return Readiness("not ready", probe.reason)
        audit = self._audit
        if audit is not None and audit.last_failed_at is not None:
            recovered = max(audit.last_committed_at or -1.0, self._last_good_at or -1.0)
            if audit.last_failed_at > recovered:
                return Readiness("not ready", f"the audit trail's last commit failed ({audit.last_failure})")
        return Readiness("ready")

    async def _probe(self) -> _ProbeResult:
        last = self._last
        if last is not None and self._clock() - last.finished_at < self._cache_seconds:
            return last
        running = self._running
        if running is None:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="keyledger-health")
            running = self._running = self._executor.submit(self._check)
            running.add_done_callback(self._finished)
        try:
            return await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(running)), self._probe_timeout + 1.0)
        except asyncio.TimeoutError:
            return _ProbeResult(f"the database did not answer the health probe within "
                                f"{self._probe_timeout + 1.0:g} s", self._clock())

    def _check(self) -> _ProbeResult:
        assert self._storage is not None
        try:
            reason = self._storage.check()
        except Exception as exc:  # a probe that fails unexpectedly is a failed probe, not a 500
            reason = f"the database probe failed ({type(exc).__name__})"
        return _ProbeResult(reason, self._clock())

    def _finished(self, future: Future[_ProbeResult]) -> None:
        # In the probe's thread: the result is kept before the next probe may start.
        if future.cancelled():  # closed while it waited to run
            return
        result = future.result()
        self._last = result
        if result.reason is None:
            self._last_good_at = result.finished_at
        if self._running is future:
            self._running = None

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
        if self._on_close is not None:
            self._on_close()
