"""Time arguments (api/moments.py): every accepted form, and one clear error for anything else."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from api.moments import MomentError, parse_moment, resolve_moment

NOW = datetime(2026, 11, 24, 10, 30, 15, 123456, tzinfo=timezone.utc)


@pytest.mark.parametrize("text, expected", [
    ("now", NOW), ("NOW", NOW),
    ("2026-11-01T00:00:00Z", datetime(2026, 11, 1, tzinfo=timezone.utc)),
    ("2026-11-01T02:00:00+02:00", datetime(2026, 11, 1, tzinfo=timezone.utc)),
    ("2026-11-01", datetime(2026, 11, 1, tzinfo=timezone.utc)),
    ("1795000000", datetime.fromtimestamp(1795000000, timezone.utc)),
    ("1795000000.5", datetime.fromtimestamp(1795000000.5, timezone.utc)),
    ("-1h", NOW - timedelta(hours=1)), ("7d ago", NOW - timedelta(days=7)), ("30m ago", NOW - timedelta(minutes=30)),
    ("- 2 weeks", NOW - timedelta(weeks=2)), ("+15m", NOW + timedelta(minutes=15)), ("90s ago", NOW - timedelta(seconds=90)),
    ("today", datetime(2026, 11, 24, tzinfo=timezone.utc)), ("yesterday", datetime(2026, 11, 23, tzinfo=timezone.utc)),
])
def test_accepted_forms(text: str, expected: datetime) -> None:
    assert resolve_moment(text, NOW) == expected


@pytest.mark.parametrize("text", ["", "   ", "tomorrowish", "7d", "-7d ago", "1y ago", "2026-13-01", "99999999999999",
                                  "1e9", "x" * 500, "-1h; DROP TABLE", "nan", "inf"])
def test_anything_else_is_one_clear_error(text: str) -> None:
    with pytest.raises(MomentError) as info:
        parse_moment(text)
    message = str(info.value)
    assert "is not a time: use RFC 3339" in message and "7d ago" in message
    assert len(message) < 300  # a long input is not echoed whole


@given(st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(2999, 1, 1), timezones=st.just(timezone.utc)))
def test_rfc3339_and_epoch_round_trip(moment: datetime) -> None:
    assert resolve_moment(moment.isoformat().replace("+00:00", "Z"), NOW) == moment
    since = moment - datetime(1970, 1, 1, tzinfo=timezone.utc)
    assert resolve_moment(f"{since.days * 86400 + since.seconds}.{since.microseconds:06d}", NOW) == moment


@given(st.integers(min_value=0, max_value=10_000), st.sampled_from(["s", "m", "h", "d", "w"]))
def test_relative_forms_agree(amount: int, unit: str) -> None:
    assert resolve_moment(f"-{amount}{unit}", NOW) == resolve_moment(f"{amount}{unit} ago", NOW) <= NOW


def test_relative_beyond_any_history_is_refused_not_a_crash() -> None:
    with pytest.raises(MomentError):
        resolve_moment("-999999999w", NOW)
