"""Time arguments as people write them: RFC 3339, epoch seconds, ``now``, ``today``, ``yesterday``, and
relative forms (``-1h``, ``30m ago``, ``7d ago``, ``+15m``). Parsed once, before any work, into a
``Moment`` that is resolved against the service clock (which ``keyledger clock advance`` may have moved),
so "1h ago" means an hour before the service's now, the now that history and the audit log are kept in.

Every form that is not understood gives one error naming the accepted forms, never a traceback."""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

MAX_RELATIVE_SECONDS = 200 * 366 * 86400
MAX_TEXT = 64  # a time written by a person is short; anything longer is refused before it is parsed
_UNITS = {"s": 1, "sec": 1, "secs": 1, "second": 1, "seconds": 1,
          "m": 60, "min": 60, "mins": 60, "minute": 60, "minutes": 60,
          "h": 3600, "hr": 3600, "hrs": 3600, "hour": 3600, "hours": 3600,
          "d": 86400, "day": 86400, "days": 86400, "w": 604800, "week": 604800, "weeks": 604800}
_RELATIVE = re.compile(r"(?P<sign>[-+])?\s*(?P<amount>\d{1,9}(?:\.\d{1,6})?)\s*(?P<unit>[a-z]+)(?:\s+(?P<ago>ago))?",
                       re.IGNORECASE)
_EPOCH = re.compile(r"\d{1,12}(?:\.\d{1,9})?")
ACCEPTED = ("RFC 3339 (2026-11-24T10:00:00Z), epoch seconds (1795000000), now, today, yesterday, "
            "or a relative time (-1h, 30m ago, 7d ago, +15m)")


class MomentError(ValueError):
    """A time argument that is none of the accepted forms."""

    def __init__(self, text: str) -> None:
        shown = text if len(text) <= 40 else text[:40] + "..."
        super().__init__(f"{shown!r} is not a time: use {ACCEPTED}.")


@dataclass(frozen=True)
class Moment:
    """An absolute instant, or an offset from the service's now (``relative``), or midnight UTC ``days``
    before today (``day_offset``)."""

    text: str
    absolute: datetime | None = None
    relative: timedelta | None = None
    day_offset: int | None = None

    def resolve(self, now: datetime) -> datetime:
        if self.absolute is not None:
            return self.absolute
        if self.day_offset is not None:
            midnight = now.astimezone(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
            return midnight - timedelta(days=self.day_offset)
        return now + (self.relative or timedelta(0))


def parse_moment(text: str) -> Moment:
    """Raises MomentError for anything else (also for epoch seconds out of range)."""
    value = (text or "").strip()
    if not value or len(value) > MAX_TEXT:
        raise MomentError(text or "")
    lowered = value.lower()
    if lowered == "now":
        return Moment(value, relative=timedelta(0))
    if lowered in ("today", "yesterday"):
        return Moment(value, day_offset=0 if lowered == "today" else 1)
    if _EPOCH.fullmatch(value):
        whole, _, fraction = value.partition(".")
        try:  # exact to the microsecond: a float would lose digits for far dates
            moment = datetime.fromtimestamp(int(whole), tz=timezone.utc)
            return Moment(value, absolute=moment + timedelta(microseconds=round(float("0." + (fraction or "0")) * 1e6)))
        except (OverflowError, OSError, ValueError):
            raise MomentError(text) from None
    relative = _RELATIVE.fullmatch(value)
    if relative:
        unit = _UNITS.get(relative["unit"].lower())
        sign, ago = relative["sign"], relative["ago"]
        # "7d" alone could mean either way: the past needs "-" or "ago", the future "+"; not both.
        if unit is None or (sign is None and ago is None) or (sign is not None and ago is not None):
            raise MomentError(text)
        seconds = float(relative["amount"]) * unit
        if seconds > MAX_RELATIVE_SECONDS:  # beyond any history, and beyond what datetime can hold
            raise MomentError(text)
        try:
            offset = timedelta(seconds=seconds if sign == "+" else -seconds)
        except OverflowError:
            raise MomentError(text) from None
        return Moment(value, relative=offset)
    try:
        moment = datetime.fromisoformat(value[:-1] + "+00:00" if value[-1:] in ("Z", "z") else value)
    except ValueError:
        raise MomentError(text) from None
    return Moment(value, absolute=moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc))


def resolve_moment(text: str, now: datetime) -> datetime:
    return parse_moment(text).resolve(now)
