"""domain/crypto/primitives.py: the library calls, and the record's JSON spellings that keep the GIL.

The primitives were computed in pieces to keep the GIL until decision 267 took the committer thread out of the serving
process (decisions 47 and 270): the bytes they made then, around the piece size, are checked against what they make
now."""
from __future__ import annotations

import hashlib
import os
import sys
import threading

import pytest
from cryptography.exceptions import InvalidTag
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.crypto.primitives import aes_gcm_decrypt, aes_gcm_encrypt, random_bytes, sha256_hex

KEY, IV = bytes(range(32)), bytes(range(12))
# What the 2047-byte-piece implementation of before decision 270 made (tree f2e03f6), at sizes around the piece and the
# libraries' 2 KiB threshold: SHA-256 of the sealed bytes, and sha256_hex of the data. Ciphertexts made then must be
# the ciphertexts made now (and open now), byte for byte.
MADE_BEFORE = {
    0: ("9e19ab48b590c46c50de27f3d6008e2f7cbf4579163d29ea6f456d43b9b08037",
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
    1: ("505f0b218dd423458e9e554ee29aac85f7ae4120037ccb77a243a16b4d89fd38",
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"),
    2046: ("46ba84c7bd0afc9bef352ace2a6d8c41d6e484312485916dde0802fbe9fcafd7",
           "9e6d36e83941062534393eea11f2af77b1325ce39bcfeec89c6da1e83024c7fd"),
    2047: ("64ed43a779403011619d593040da71a89e6a3a772455c980253b8bf77ffe8035",
           "3ba160b0f349cc49579bffe0908dc5e4e68218398be81a13bec008fe6ba3fcd3"),
    2048: ("f833f6c7a6177769345966e72314f88649f47b209a8518ed9c444810981ab403",
           "b2a8170614e23194ae2951423d601987f518ce2f11205d7b0b708080103b9f76"),
    2049: ("e237dea3bdcdd6c9679c77e4872a2dcfc8e68a35fa6813e98bfacab42ee13547",
           "26e1e2808e3a6cf967ca03f6749a063c5ed55f92f5874653a1faabed78346f00"),
    4094: ("fb25b5f0aa75e17ee93d250b84955ece17321d7a4ae119430a6ae45af8763ce3",
           "b59244d088ec16026e6a51c41208f75c58d4784ec0f9a73552a01730618487a4"),
    4096: ("b04ed400c0ef730ecada216a283ef597d72b84634e0966142b554ba22b4539cd",
           "d67c656e01756650d77717b0839985a056ec28ffe174601d690fc407a2ceffca"),
    6146: ("f408577b89e99c22b717d2c7bc268cf6608fb525b3946c9b6940e57d13ab4cd9",
           "b7f12691c406fad7b357ed6bc9ad7e366fe8c0b2a64d675a2c580e81b071a8a5"),
    65536: ("e6f16f14b2a2ccfe33361a84ca93daff425a2ca83f17411dfbaa4fdc6f463f79",
            "4b640d85ab3ba30fd02c9fc9db4a8928f416322ad27022ea58a65aaee68a4df2"),
}


@pytest.mark.parametrize("size", sorted(MADE_BEFORE))
def test_the_bytes_made_before_are_made_now_and_open(size: int) -> None:
    data, aad = bytes(i % 251 for i in range(size)), bytes(range(size % 97))
    sealed = aes_gcm_encrypt(KEY, IV, data, aad)
    assert (hashlib.sha256(sealed).hexdigest(), sha256_hex(data)) == MADE_BEFORE[size]
    assert aes_gcm_decrypt(KEY, IV, sealed, aad) == data


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=9000), aad=st.binary(max_size=300), key=st.binary(min_size=32, max_size=32),
       iv=st.binary(min_size=12, max_size=12))
def test_what_is_sealed_opens(data: bytes, aad: bytes, key: bytes, iv: bytes) -> None:
    sealed = aes_gcm_encrypt(key, iv, data, aad)
    assert len(sealed) == len(data) + 16 and aes_gcm_decrypt(key, iv, sealed, aad) == data


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
