"""Moving the service clock forward: for tests and drills, by operators with direct database access
(`keyledger clock advance`); no API reaches this. The offset is stored where every process reads it
(infrastructure/clock.py); this process sees its own change at once, the others within a second."""
from __future__ import annotations

from typing import Callable, Protocol


class ClockOffsetStore(Protocol):
    def advance(self, seconds: float) -> float:
        """Adds ``seconds`` (> 0) to the stored offset; returns the new total offset in seconds."""


class ClockService:
    def __init__(self, store: ClockOffsetStore, reread: Callable[[], None]) -> None:
        """``reread``: makes this process's clock read the offset again on its next use."""
        self._store = store
        self._reread = reread

    def advance(self, seconds: float) -> float:
        """Raises ValueError for a move that is not forward; returns the total offset in seconds."""
        if not seconds > 0:
            raise ValueError("the clock only moves forward")
        total = self._store.advance(seconds)
        self._reread()
        return total
