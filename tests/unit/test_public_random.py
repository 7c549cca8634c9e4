"""Pooled random bytes (domain/crypto/primitives.py, decision 275): secrets (``random_bytes``) and a blob's IV and
KDF nonce (``public_random_bytes``) are cut from chunks read from the kernel. Each slice must be handed out once,
whichever thread asks and after a fork (a repeated nonce and IV would repeat a blob's derived key and key stream, a
repeated data key would be another caller's), and the secret pool keeps nothing it handed out."""
from __future__ import annotations

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.crypto import ciphertext, primitives
from domain.crypto.primitives import public_random_bytes, random_bytes
from tests.draws import taken_at_once, taken_in_a_child

POOLS = pytest.mark.parametrize("draw", [random_bytes, public_random_bytes], ids=["secret", "public"])


@POOLS
@settings(max_examples=40, deadline=None)
@given(sizes=st.lists(st.integers(min_value=1, max_value=300), min_size=1, max_size=60))
def test_every_take_has_the_length_asked_and_none_repeats(draw, sizes: list[int]) -> None:
    taken = [draw(size) for size in sizes] + [draw(28) for _ in range(400)]
    assert [len(value) for value in taken[:len(sizes)]] == sizes
    long_enough = [value for value in taken if len(value) >= 12]  # shorter ones may repeat by chance
    assert len(set(long_enough)) == len(long_enough)


@POOLS
def test_threads_taking_at_once_never_get_the_same_bytes(draw) -> None:
    every = taken_at_once(lambda: [draw(28) for _ in range(2)])
    assert len(every) == 24000 and len(set(every)) == 24000


@POOLS
def test_a_forked_child_never_hands_out_what_its_parent_does(draw) -> None:
    draw(28)  # this process now holds a chunk with bytes still to hand out
    childs = set(taken_in_a_child(lambda: [draw(28) for _ in range(64)]))
    assert len(childs) == 64
    assert not childs & {draw(28) for _ in range(64)}


def test_the_secret_pool_keeps_nothing_it_handed_out() -> None:
    taken = [random_bytes(32) for _ in range(40)]
    pool = primitives._secret
    handed_out = bytes(pool._chunk[:pool._at])
    assert handed_out == bytes(len(handed_out)) and len(handed_out) >= 32
    assert not any(value in bytes(pool._chunk) for value in taken)


def test_two_blobs_of_the_same_plaintext_never_share_a_nonce_or_iv() -> None:
    key, material = os.urandom(32), os.urandom(16)
    blobs = [ciphertext.encrypt(key, "1234abcd-12ab-34cd-56ef-1234567890ab", material, b"same", None)
             for _ in range(2000)]
    fresh = {blob[33:33 + 28] for blob in blobs}  # after version, key id and material id: the nonce and the IV
    assert len(fresh) == len(blobs)
    assert all(ciphertext.decrypt(key, blob, None) == b"same" for blob in blobs[:50])
