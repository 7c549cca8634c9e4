"""Replaying the projections (``keyledger replay``, ``keyledger history replay``): rebuild them from the
event log and prove the result, against the live tables or, for a past moment, against the point-in-time
answers for that moment (two derivations that must agree). The tables are projections/replay.py's."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Callable, Protocol

from application.history.point_in_time import PointInTime

Progress = Callable[[int, int], None]  # (last notification id read, highest notification id)


class ProjectionRebuilder(Protocol):
    def events_written(self) -> int:
        """The highest notification id in the event log."""

    def rebuild_and_compare(self, into: str | None, keep: bool, progress: Progress | None,
                            workers: int = 1) -> tuple[Any, list[str]]:
        """Rebuilds beside the live tables (or into the database ``into``) and compares with the live ones:
        (stats, differences). Tables rebuilt beside the live ones are dropped when equal, unless ``keep``.
        ``workers`` > 1: that many processes replay at once (a command-line caller only: it forks)."""

    def rebuild_until(self, moment: datetime, url: str, progress: Progress | None) -> Any:
        """The projections as they were at ``moment``, in the database ``url``; returns the stats."""

    def differences_from_answers(self, url: str, answers: list[dict[str, Any]]) -> list[str]: ...


@dataclass(frozen=True)
class ReplayOutcome:
    stats: Any  # events, keys, aliases, principals, rows and seconds (projections.replay.ReplayStats)
    differences: list[str] = field(default_factory=list)
    written_during: bool = False  # events were appended while it ran: the differences may be only that
    location: str | None = None  # where the world at a past moment was written


class ProjectionReplay:
    def __init__(self, rebuilder: ProjectionRebuilder, history: PointInTime,
                 location_for: Callable[[datetime], str]) -> None:
        """``location_for``: the database a past moment's world goes to when the operator names none."""
        self._rebuilder = rebuilder
        self._history = history
        self._location_for = location_for

    def against_live(self, *, into: str | None = None, keep: bool = False,
                     progress: Progress | None = None, workers: int = 1) -> ReplayOutcome:
        head = self._rebuilder.events_written()
        stats, differences = self._rebuilder.rebuild_and_compare(into, keep, progress, workers)
        return ReplayOutcome(stats, differences, bool(differences) and self._rebuilder.events_written() != head)

    def at(self, moment: datetime, *, into: str | None = None, progress: Progress | None = None) -> ReplayOutcome:
        self._history.keys_at(moment)  # refuses a moment in the future before any work
        url = into or self._location_for(moment)
        stats = self._rebuilder.rebuild_until(moment, url, progress)
        differences = self._rebuilder.differences_from_answers(url, self._history.keys_at(moment))
        return ReplayOutcome(stats, differences, location=url)
