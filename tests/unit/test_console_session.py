"""Console session tokens and CSRF tokens (api/console/session.py): what a hostile browser could send."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from api.console.session import SessionCodec, SessionRefused, signin_csrf_ok

NOW = datetime(2026, 11, 24, tzinfo=timezone.utc)


def codec(key: bytes = b"k" * 32) -> SessionCodec:
    return SessionCodec(key, 900)


def test_a_session_opens_until_it_expires_or_is_revoked() -> None:
    sessions = codec()
    token, session = sessions.issue("AKIAEXAMPLE", "us-east-1", NOW)
    assert sessions.open(token, NOW + timedelta(seconds=899)) == session
    assert "secret" not in token
    with pytest.raises(SessionRefused, match="expired"):
        sessions.open(token, NOW + timedelta(seconds=900))
    sessions.revoke(session, NOW)
    with pytest.raises(SessionRefused, match="signed out"):
        sessions.open(token, NOW)


def test_another_key_does_not_accept_it() -> None:
    token, _ = codec(b"a" * 32).issue("AKIAEXAMPLE", "us-east-1", NOW)
    with pytest.raises(SessionRefused, match="not valid"):
        codec(b"b" * 32).open(token, NOW)


@given(st.text(max_size=600))
def test_anything_else_is_refused_cleanly(token: str) -> None:
    with pytest.raises(SessionRefused):
        codec().open(token, NOW)


@given(st.integers(min_value=0, max_value=200), st.characters(codec="ascii"))
def test_any_altered_character_is_refused(position: int, replacement: str) -> None:
    sessions = codec()
    token, _ = sessions.issue("AKIAEXAMPLE", "us-east-1", NOW)
    position %= len(token)
    if token[position] == replacement:
        return
    with pytest.raises(SessionRefused):
        sessions.open(token[:position] + replacement + token[position + 1:], NOW)


def test_csrf_tokens_are_bound_to_their_session() -> None:
    sessions = codec()
    _, one = sessions.issue("AKIAEXAMPLE", "us-east-1", NOW)
    _, two = sessions.issue("AKIAEXAMPLE", "us-east-1", NOW)
    assert sessions.csrf_ok(one, sessions.csrf_token(one))
    assert not sessions.csrf_ok(one, sessions.csrf_token(two))
    assert not sessions.csrf_ok(one, None) and not sessions.csrf_ok(one, "")
    assert signin_csrf_ok("abc", "abc") and not signin_csrf_ok("abc", "abd") and not signin_csrf_ok(None, None)
