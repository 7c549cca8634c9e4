"""The service's one clock: system time plus a forward-only offset kept in the database.

The offset exists so tests, and operators with direct database access (`keyledger clock advance`), can
move every process's time forward together, e.g. past a deletion window. No API can move it. Time never
runs backwards within a process, so event timestamps stay ordered.
"""
from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta, timezone

import sqlalchemy as sa

from infrastructure.storage import SqlUnitOfWork
from infrastructure.tables import clock_offset

REFRESH_SECONDS = 1.0


class DatabaseClock:
    def __init__(self, uow: SqlUnitOfWork, refresh_seconds: float = REFRESH_SECONDS) -> None:
        self._uow = uow
        self._refresh = refresh_seconds
        self._offset = 0.0
        self._read_at = float("-inf")
        self._last = datetime.min.replace(tzinfo=timezone.utc)
        self._lock = threading.Lock()

    def _current_offset(self) -> float:
        if time.monotonic() - self._read_at >= self._refresh:
            with self._uow.read() as session:
                value = session.execute(sa.select(clock_offset.c.offset_seconds).where(clock_offset.c.id == 1)).scalar()
            self._offset = float(value or 0.0)
            self._read_at = time.monotonic()
        return self._offset

    def now(self) -> datetime:
        with self._lock:
            now, offset = datetime.now(tz=timezone.utc), self._current_offset()
            if offset:  # nearly always 0.0 (only a test or an operator moves it): no timedelta made on every call
                now += timedelta(seconds=offset)
            if now > self._last:
                self._last = now
            return self._last

    def refresh(self) -> None:
        """Read the offset again on the next ``now()`` (after this process moved it)."""
        with self._lock:
            self._read_at = float("-inf")


class SqlClockOffset:
    """The stored offset (application/clock_service.py ClockOffsetStore)."""

    def __init__(self, uow: SqlUnitOfWork) -> None:
        self._uow = uow

    def advance(self, seconds: float) -> float:
        """Moves the service clock forward by ``seconds``; returns the new total offset."""
        if seconds <= 0:
            raise ValueError("the clock only moves forward")
        with self._uow.transaction() as tx:
            current = tx.execute(sa.select(clock_offset.c.offset_seconds).where(clock_offset.c.id == 1)).scalar()
            if current is None:
                tx.execute(clock_offset.insert().values(id=1, offset_seconds=seconds))
                return seconds
            tx.execute(clock_offset.update().where(clock_offset.c.id == 1).values(offset_seconds=current + seconds))
            return current + seconds
