"""domain/crypto/primitives.py: the library calls, and the record's JSON spellings that keep the GIL.

The primitives were computed in pieces to keep the GIL until decision 267 took the committer thread out of the serving
process (decision 47, amended); these tests keep checking that they give exactly what the library gives, at the
sizes where the pieces used to split."""
from __future__ import annotations

import hashlib
import os
import sys
import threading

import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.crypto.primitives import aes_gcm_decrypt, aes_gcm_encrypt, random_bytes, sha256_hex

KEY, IV = bytes(range(32)), bytes(range(12))
PIECE = 2047  # the piece size of before decision 267: around it, and the libraries' 2 KiB threshold
EDGES = [0, 1, PIECE - 1, PIECE, PIECE + 1, 2048, 2049, 2 * PIECE, 4096, 3 * PIECE + 5, 65536]


@pytest.mark.parametrize("size", EDGES)
def test_same_bytes_as_the_one_shot_calls_at_the_edges(size: int) -> None:
    data, aad = os.urandom(size), os.urandom(size % 97)
    assert sha256_hex(data) == hashlib.sha256(data).hexdigest()
    sealed = aes_gcm_encrypt(KEY, IV, data, aad)
    assert sealed == AESGCM(KEY).encrypt(IV, data, aad)
    assert aes_gcm_decrypt(KEY, IV, sealed, aad) == data


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=9000), aad=st.binary(max_size=300), key=st.binary(min_size=32, max_size=32),
       iv=st.binary(min_size=12, max_size=12))
def test_same_bytes_as_the_one_shot_calls(data: bytes, aad: bytes, key: bytes, iv: bytes) -> None:
    assert sha256_hex(data) == hashlib.sha256(data).hexdigest()
    sealed = aes_gcm_encrypt(key, iv, data, aad)
    assert sealed == AESGCM(key).encrypt(iv, data, aad)
    assert aes_gcm_decrypt(key, iv, sealed, aad) == AESGCM(key).decrypt(iv, sealed, aad) == data


@settings(max_examples=100, deadline=None)
@given(data=st.binary(min_size=1, max_size=6000), flip=st.integers(min_value=0), aad=st.binary(max_size=40))
def test_any_altered_byte_fails_the_tag_like_the_one_shot_call(data: bytes, flip: int, aad: bytes) -> None:
    sealed = bytearray(aes_gcm_encrypt(KEY, IV, data, aad))
    sealed[flip % len(sealed)] ^= 0x01
    with pytest.raises(InvalidTag):
        aes_gcm_decrypt(KEY, IV, bytes(sealed), aad)
    with pytest.raises(InvalidTag):
        aes_gcm_decrypt(KEY, IV, aes_gcm_encrypt(KEY, IV, data, aad), aad + b"x")


def test_too_short_to_hold_a_tag_fails_like_the_one_shot_call() -> None:
    with pytest.raises(InvalidTag):
        aes_gcm_decrypt(KEY, IV, b"short", b"")


def test_random_bytes_are_fresh_and_sized() -> None:
    draws = {random_bytes(16) for _ in range(1000)}
    assert len(draws) == 1000 and all(len(d) == 16 for d in draws)
    assert random_bytes(0) == b"" and len(random_bytes(1024)) == 1024


def _switches_while(work, times: int = 200, until_switch: bool = False) -> int:
    """How many times a spinning thread got to run while ``work`` ran ``times`` times on this thread. Work that
    keeps the GIL lets it run only when the switch interval forces a switch, and the interval is set far
    above the time the work takes; work that lets go of the GIL lets it run at once."""
    ran, stop = [0], threading.Event()

    def spin() -> None:
        while not stop.is_set():
            ran[0] += 1

    previous = sys.getswitchinterval()
    sys.setswitchinterval(0.2)
    spinner = threading.Thread(target=spin)
    try:
        spinner.start()
        while ran[0] == 0:  # the spinner has run: from here on it waits for the GIL we hold
            pass
        before = ran[0]
        for _ in range(times):
            work()
            if until_switch and ran[0] != before:
                break
        return ran[0] - before
    finally:
        stop.set()
        sys.setswitchinterval(previous)
        spinner.join()


def test_the_record_json_keeps_the_gil() -> None:
    """The record's two JSON spellings keep the GIL (a committer thread still seals records where there is no
    committer process). The check can see a release: a one-shot hash of a megabyte lets go."""
    from application.audit.record_json import canonical_json, stored_json

    big = os.urandom(1 << 20)
    assert _switches_while(lambda: hashlib.sha256(big).digest(), times=500, until_switch=True) > 0
    record = {"eventName": "Encrypt", "seq": 7, "readOnly": True, "errorCode": None, "userAgent": "x" * 300,
              "requestParameters": {"keyId": "arn:aws:kms:us-east-1:111122223333:key/k", "encryptionContext": {"a": "b"}},
              "resources": [{"ARN": "arn:aws:kms:us-east-1:111122223333:key/k", "type": "AWS::KMS::Key"}]}
    assert _switches_while(lambda: canonical_json(record)) == 0
    assert _switches_while(lambda: stored_json(record)) == 0
