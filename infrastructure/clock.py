"""The service's one clock. Everything that needs 'now' asks this object."""
from __future__ import annotations

from datetime import datetime, timezone


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(tz=timezone.utc)
