"""Canonical encryption context (docs/key-hierarchy.md): pairs sorted by UTF-8 key bytes, each key and value
length-prefixed, so distinct contexts never share bytes; absent and {} are the same, as in AWS."""
from __future__ import annotations

import random
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.crypto.encryption_context import MAX_CONTEXT_BYTES
from domain.crypto.encryption_context import canonical_encryption_context as canonical
from domain.errors import ValidationError


def decode(data: bytes) -> dict[str, str]:
    """Inverse of the canonical form, written from its description: count, then (len, key, len, value)*.
    Being able to decode every output back to its input is what makes the encoding injective."""
    (count,), pos = struct.unpack_from(">I", data, 0), 4
    out: dict[str, str] = {}
    previous_key: bytes | None = None
    for _ in range(count):
        (klen,) = struct.unpack_from(">I", data, pos)
        key = data[pos + 4:pos + 4 + klen]
        pos += 4 + klen
        (vlen,) = struct.unpack_from(">I", data, pos)
        value = data[pos + 4:pos + 4 + vlen]
        pos += 4 + vlen
        assert previous_key is None or previous_key < key, "pairs must be sorted by UTF-8 key bytes, no duplicates"
        previous_key = key
        out[key.decode("utf-8")] = value.decode("utf-8")
    assert pos == len(data), "trailing bytes"
    return out


def test_length_prefixing_keeps_ab_c_and_a_bc_apart():
    assert canonical({"ab": "c"}) != canonical({"a": "bc"})
    assert canonical({"a": "b", "c": "d"}) != canonical({"a": "bcd"})
    assert canonical({"a": ""}) != canonical({})
    assert canonical({"": "a"}) != canonical({"a": ""})


def test_exact_bytes():
    assert canonical({"a": "bc"}) == (struct.pack(">I", 1) + struct.pack(">I", 1) + b"a" + struct.pack(">I", 2) + b"bc")
    assert canonical({}) == struct.pack(">I", 0)


def test_order_insensitive():
    pairs = [(f"k{i}", f"v{i}") for i in range(20)]
    expected = canonical(dict(pairs))
    rng = random.Random(7)
    for _ in range(10):
        rng.shuffle(pairs)
        assert canonical(dict(pairs)) == expected


def test_none_equals_empty():
    assert canonical(None) == canonical({})


def test_case_sensitive():
    assert canonical({"Key": "v"}) != canonical({"key": "v"})
    assert canonical({"k": "V"}) != canonical({"k": "v"})


def test_unicode_keys_sort_by_utf8_bytes():
    # U+FFFF (EF BF BF) sorts before U+10000 (F0 90 80 80) in UTF-8; in UTF-16 code units the astral
    # character (D800 DC00) would come first. "Z" < "a" < "é" (C3 A9) < "中" (E4 B8 AD).
    context = {"\U00010000": "astral", "中": "cjk", "a": "lower", "\uffff": "bmp-last", "é": "e-acute", "Z": "upper"}
    keys = list(decode(canonical(context)))
    assert keys == ["Z", "a", "é", "中", "\uffff", "\U00010000"]
    assert keys == sorted(context, key=lambda k: k.encode("utf-8"))


def test_values_are_utf8():
    assert canonical({"k": "é"}).endswith(struct.pack(">I", 2) + "é".encode("utf-8"))


def test_size_limit_is_8192_utf8_bytes():
    assert MAX_CONTEXT_BYTES == 8192
    canonical({"k": "v" * 8191})  # 8192 bytes: accepted
    with pytest.raises(ValidationError):
        canonical({"k": "v" * 8192})
    with pytest.raises(ValidationError):
        canonical({f"k{i:04}": "v" * 100 for i in range(80)})  # 80 * 105 bytes
    canonical({"k": "é" * 4095 + "x"})  # 1 + 8190 + 1 bytes
    with pytest.raises(ValidationError):
        canonical({"k": "é" * 4096})  # 4097 characters but 8193 bytes


def test_size_error_is_a_validation_exception():
    with pytest.raises(ValidationError) as info:
        canonical({"k": "v" * 9000})
    assert info.value.code == "ValidationException"


texts = st.text(max_size=8)
small_texts = st.text(alphabet="ab\u00e9\U00010000", max_size=3)
contexts = st.dictionaries(texts, texts, max_size=6)
small_contexts = st.dictionaries(small_texts, small_texts, max_size=3)


@settings(max_examples=300)
@given(a=contexts, b=contexts)
def test_canonical_equal_iff_contexts_equal(a, b):
    assert (canonical(a) == canonical(b)) == (a == b)


@settings(max_examples=500)
@given(a=small_contexts, b=small_contexts)
def test_canonical_equal_iff_contexts_equal_small_alphabet(a, b):
    """A tiny alphabet makes near-collisions (shifted boundaries, reordered pairs) frequent."""
    assert (canonical(a) == canonical(b)) == (a == b)


@settings(max_examples=300)
@given(context=contexts)
def test_canonical_decodes_back(context):
    assert decode(canonical(context)) == context


@given(context=contexts, seed=st.integers())
def test_insertion_order_never_matters(context, seed):
    items = list(context.items())
    random.Random(seed).shuffle(items)
    assert canonical(dict(items)) == canonical(context)


@given(text=st.text(min_size=1, max_size=12), data=st.data())
def test_same_concatenation_split_differently_never_collides(text, data):
    """{k1: v1} and {k2: v2} with k1+v1 == k2+v2 (what separator-free emulators bind) differ canonically."""
    i = data.draw(st.integers(min_value=0, max_value=len(text)), label="i")
    j = data.draw(st.integers(min_value=0, max_value=len(text)).filter(lambda j: j != i), label="j")
    assert canonical({text[:i]: text[i:]}) != canonical({text[:j]: text[j:]})
