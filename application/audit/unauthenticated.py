"""Requests that fail before the caller is identified (no, malformed or refused credentials; headers or body
over their limits) are recorded, but a flood of them cannot grow the audit log without bound.

Per window (KEYLEDGER_AUDIT_UNAUTHENTICATED_WINDOW_SECONDS, 60): the first ``per_source`` failures of each
source address, and at most ``total`` of all sources together, get a record of their own; every other failure
is counted, and when the window ends one summary record (eventName ``UnauthenticatedRequestsSummary``) says how
many there were, from which sources, with which errors, for which operations. The summary is written by the
server's timer even if no further request arrives, and at graceful shutdown.

Per source address a token bucket (KEYLEDGER_QUOTA_UNAUTHENTICATED_PER_SECOND) limits how many failures are
answered with their own error: past it they are answered ThrottlingException, and only counted. It is consulted
only once authentication has failed, so a caller whose requests authenticate is never held back by someone
else's failures from the same address.

State is bounded too: at most ``MAX_TRACKED_SOURCES`` addresses per window (later ones share one entry) and
``LISTED_SOURCES`` named in a summary. Called from the event loop; the timer's thread flushes, so one lock.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Callable

from application.audit.records import EVENT_SOURCE, EVENT_VERSION, iso, new_ids
from application.quotas import RATE_EXCEEDED, TokenBucket
from domain.errors import KmsError, ThrottlingError

SUMMARY_EVENT = "UnauthenticatedRequestsSummary"
MAX_TRACKED_SOURCES = 4096
LISTED_SOURCES = 32
OTHER_SOURCES = "(other sources)"
UNKNOWN_OPERATION = "(unknown)"
# What a failure before identification can be answered with; ThrottlingException replaces only the first
# four (authentication itself failed), never a refused body or headers (the connection state needs those).
AUTHENTICATION_FAILURES = frozenset({"MissingAuthenticationTokenException", "IncompleteSignatureException",
                                     "InvalidSignatureException", "UnrecognizedClientException"})


@dataclass
class _Source:
    recorded: int = 0
    counted: int = 0
    bucket: TokenBucket | None = None


@dataclass
class _Window:
    started: float
    started_at: datetime
    sources: dict[str, _Source] = field(default_factory=dict)
    recorded: int = 0
    counted: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    operations: dict[str, int] = field(default_factory=dict)


class UnauthenticatedFailures:
    def __init__(self, *, window_seconds: float, per_source: int, total: int, per_second: float,
                 now: Callable[[], datetime], monotonic: Callable[[], float] = time.monotonic) -> None:
        self.window_seconds = window_seconds
        self._per_source, self._total, self._per_second = per_source, total, per_second
        self._now, self._monotonic = now, monotonic
        self._lock = threading.Lock()
        self._window: _Window | None = None
        self._pending: list[dict[str, Any]] = []  # summaries of windows that ended, not yet handed out
        self.summaries_written = 0

    def refused(self, source: str | None, error: KmsError, operation: str | None) -> tuple[KmsError, bool]:
        """A request from ``source`` failed with ``error`` before its caller was identified. ``operation``: the
        KMS operation it named, if it named one that exists (the caller's own spelling is never kept here).
        Returns the error to answer (ThrottlingException once the source's failures pass their rate) and
        whether the request gets a record of its own (otherwise it is counted in the window's summary)."""
        now = self._monotonic()
        with self._lock:
            window = self._current(now)
            state = window.sources.get(source or "")
            if state is None:
                key = (source or "") if len(window.sources) < MAX_TRACKED_SOURCES else OTHER_SOURCES
                state = window.sources.setdefault(key, _Source())
            if self._per_second > 0 and error.code in AUTHENTICATION_FAILURES:
                if state.bucket is None:
                    state.bucket = TokenBucket(self._per_second, now)
                if not state.bucket.take(now):
                    error = ThrottlingError(RATE_EXCEEDED)
            own = (error.code != ThrottlingError.code and state.recorded < self._per_source
                   and window.recorded < self._total)
            if own:
                state.recorded += 1
                window.recorded += 1
            else:
                state.counted += 1
                window.counted += 1
                window.errors[error.code] = window.errors.get(error.code, 0) + 1
                name = operation or UNKNOWN_OPERATION
                window.operations[name] = window.operations.get(name, 0) + 1
            return error, own

    def _current(self, now: float) -> _Window:
        window = self._window
        if window is None or now - window.started >= self.window_seconds:
            if window is not None and window.counted:
                self._pending.append(self._summary(window))
            window = self._window = _Window(started=now, started_at=self._now())
        return window

    # -- summaries ---------------------------------------------------------------------------------

    def due(self, force: bool = False) -> list[dict[str, Any]]:
        """The summary records to write now: of every window that has ended (all of them if ``force``,
        at shutdown). Each is handed out once."""
        with self._lock:
            pending, self._pending = self._pending, []
            window = self._window
            if window is not None and (force or self._monotonic() - window.started >= self.window_seconds):
                if window.counted:
                    pending.append(self._summary(window))
                self._window = None
        return pending

    def flush(self, write: Callable[[dict[str, Any]], None], force: bool = False) -> int:
        """Writes the due summaries with ``write`` (the trail's blocking record); returns how many."""
        written = 0
        for summary in self.due(force):
            write(summary)
            written += 1
        self.summaries_written += written
        return written

    def _summary(self, window: _Window) -> dict[str, Any]:
        ended = self._now()
        by_count = sorted(((k, s.counted) for k, s in window.sources.items() if s.counted), key=lambda kv: -kv[1])
        listed = dict(by_count[:LISTED_SOURCES])
        rest = sum(count for _, count in by_count[LISTED_SOURCES:])
        if rest:
            listed[OTHER_SOURCES] = listed.get(OTHER_SOURCES, 0) + rest
        request_id, event_id = new_ids(2)
        return {
            "eventVersion": EVENT_VERSION, "eventTime": iso(ended), "eventSource": EVENT_SOURCE,
            "eventName": SUMMARY_EVENT, "awsRegion": None, "userIdentity": {"invokedBy": EVENT_SOURCE},
            "sourceIPAddress": EVENT_SOURCE, "userAgent": EVENT_SOURCE, "requestParameters": None,
            "responseElements": None, "errorCode": None, "errorMessage": None, "requestID": request_id,
            "eventID": event_id, "readOnly": True, "resources": [], "eventType": "AwsServiceEvent",
            "managementEvent": True, "eventCategory": "Management",
            "additionalEventData": {
                "aggregatedCount": window.counted,
                "recordedIndividually": window.recorded,
                "window": {"start": iso(window.started_at), "end": iso(ended), "seconds": self.window_seconds},
                "sources": listed,
                "sourceCount": len(by_count),
                "errorCodes": dict(window.errors),
                "operations": dict(window.operations),
            },
        }
