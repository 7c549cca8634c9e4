"""Grant tokens (domain/keys/grant_tokens.py): what one names comes back out; any other string, any change to a
token, or a token made under another secret is InvalidGrantTokenException."""
from __future__ import annotations

import base64
import uuid

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from domain.errors import InvalidGrantTokenError
from domain.keys import grant_tokens

secrets = st.binary(min_size=32, max_size=32)
key_ids = st.uuids().map(str)
grant_ids = st.binary(min_size=32, max_size=32).map(bytes.hex)
ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


@given(secrets, key_ids, grant_ids)
def test_round_trip(secret, key_id, grant_id):
    token = grant_tokens.encode(secret, key_id, grant_id)
    assert grant_tokens.decode(secret, token) == (key_id, grant_id)
    assert set(token) <= set(ALPHABET) and len(token) <= 8192  # GrantTokenType: 1..8192 characters


@given(secrets, key_ids, grant_ids)
def test_every_token_of_a_grant_is_new_and_names_the_same_grant(secret, key_id, grant_id):
    first, second = (grant_tokens.encode(secret, key_id, grant_id) for _ in range(2))
    assert first != second
    assert grant_tokens.decode(secret, first) == grant_tokens.decode(secret, second)


@given(secrets, key_ids, grant_ids, st.data())
def test_any_changed_character_is_refused(secret, key_id, grant_id, data):
    token = grant_tokens.encode(secret, key_id, grant_id)
    position = data.draw(st.integers(0, len(token) - 1))
    replacement = data.draw(st.sampled_from(ALPHABET).filter(lambda c: c != token[position]))
    with pytest.raises(InvalidGrantTokenError):
        grant_tokens.decode(secret, token[:position] + replacement + token[position + 1:])


@given(secrets, key_ids, grant_ids, st.data())
def test_any_changed_byte_is_refused(secret, key_id, grant_id, data):
    raw = bytearray(base64.urlsafe_b64decode(grant_tokens.encode(secret, key_id, grant_id) + "=="))
    position = data.draw(st.integers(0, len(raw) - 1))
    raw[position] ^= data.draw(st.integers(1, 255))
    with pytest.raises(InvalidGrantTokenError):
        grant_tokens.decode(secret, base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode())


@given(secrets, secrets, key_ids, grant_ids)
def test_another_secret_refuses_the_token(secret, other, key_id, grant_id):
    assume(secret != other)
    with pytest.raises(InvalidGrantTokenError):
        grant_tokens.decode(other, grant_tokens.encode(secret, key_id, grant_id))


@given(secrets, key_ids, grant_ids, st.integers(1, 40))
def test_truncated_or_extended_tokens_are_refused(secret, key_id, grant_id, cut):
    token = grant_tokens.encode(secret, key_id, grant_id)
    for changed in (token[:-cut], token + token[:cut], token + "=", " " + token):
        with pytest.raises(InvalidGrantTokenError):
            grant_tokens.decode(secret, changed)


@given(secrets, st.text(max_size=300))
def test_arbitrary_text_is_refused(secret, text):
    with pytest.raises(InvalidGrantTokenError):
        grant_tokens.decode(secret, text)


def test_the_token_names_nothing_in_clear_and_says_nothing_of_the_secret():
    secret, key_id, grant_id = b"s" * 32, str(uuid.uuid4()), "ab" * 32
    token = grant_tokens.encode(secret, key_id, grant_id, nonce=b"n" * 16)
    assert grant_tokens.encode(secret, key_id, grant_id, nonce=b"n" * 16) == token  # deterministic given the nonce
    assert secret.hex() not in token and base64.urlsafe_b64encode(secret).decode().rstrip("=") not in token


@pytest.mark.parametrize("grant_id", ["", "AB" * 32, "ab" * 31, "zz" * 32, "ab" * 33])
def test_encode_takes_only_aws_shaped_grant_ids(grant_id):
    with pytest.raises(ValueError):
        grant_tokens.encode(b"s" * 32, str(uuid.uuid4()), grant_id)
