"""Root-key wrapping of backing keys (docs/key-hierarchy.md): AES-256-GCM under the current root version,
AAD = purpose | key id | material id; any held root version unwraps."""
from __future__ import annotations

import os
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.crypto.wrapping import RootKeyring, UnwrapError

ROOT_1, ROOT_2, ROOT_3 = bytes([1]) * 32, bytes([2]) * 32, bytes([3]) * 32
KEY_ID = "1234abcd-12ab-34cd-56ef-1234567890ab"
MATERIAL_ID = "00112233445566778899aabbccddeeff"
SECRET = os.urandom(32)
PURPOSE = "backing-key"


def _wrap(keyring: RootKeyring, secret: bytes = SECRET) -> bytes:
    return keyring.wrap(secret, purpose=PURPOSE, key_id=KEY_ID, material_id=MATERIAL_ID)


def _unwrap(keyring: RootKeyring, wrapped: bytes, **aad) -> bytes:
    args = {"purpose": PURPOSE, "key_id": KEY_ID, "material_id": MATERIAL_ID, **aad}
    return keyring.unwrap(wrapped, **args)


def test_wrap_unwrap_round_trip():
    keyring = RootKeyring({1: ROOT_1}, current=1)
    wrapped = _wrap(keyring)
    assert _unwrap(keyring, wrapped) == SECRET
    assert SECRET not in wrapped


def test_wrapped_layout_version_iv_sealed():
    keyring = RootKeyring({7: ROOT_1}, current=7)
    wrapped = _wrap(keyring)
    assert struct.unpack(">I", wrapped[:4]) == (7,)
    assert len(wrapped) == 4 + 12 + len(SECRET) + 16


def test_each_wrap_uses_a_fresh_iv():
    keyring = RootKeyring({1: ROOT_1}, current=1)
    a, b = _wrap(keyring), _wrap(keyring)
    assert a[4:16] != b[4:16] and a != b


def test_material_id_defaults_to_empty():
    keyring = RootKeyring({1: ROOT_1}, current=1)
    wrapped = keyring.wrap(SECRET, purpose="audit-signing-key", key_id="service")
    assert keyring.unwrap(wrapped, purpose="audit-signing-key", key_id="service") == SECRET
    with pytest.raises(UnwrapError):
        keyring.unwrap(wrapped, purpose="audit-signing-key", key_id="service", material_id="x")


@pytest.mark.parametrize("changed", [
    {"purpose": "import-private-key"},
    {"purpose": "backing-keY"},
    {"purpose": ""},
    {"key_id": "1234abcd-12ab-34cd-56ef-1234567890ac"},
    {"key_id": ""},
    {"material_id": "00112233445566778899aabbccddeefe"},
    {"material_id": ""},
])
def test_aad_binds_purpose_key_id_and_material_id(changed):
    keyring = RootKeyring({1: ROOT_1}, current=1)
    wrapped = _wrap(keyring)
    with pytest.raises(UnwrapError):
        _unwrap(keyring, wrapped, **changed)


def test_aad_fields_are_length_prefixed():
    """Moving a boundary between purpose, key id and material id must not authenticate."""
    keyring = RootKeyring({1: ROOT_1}, current=1)
    wrapped = keyring.wrap(SECRET, purpose="ab", key_id="c", material_id="d")
    for purpose, key_id, material_id in (("a", "bc", "d"), ("abc", "", "d"), ("ab", "", "cd"), ("ab", "cd", "")):
        with pytest.raises(UnwrapError):
            keyring.unwrap(wrapped, purpose=purpose, key_id=key_id, material_id=material_id)


@pytest.mark.parametrize("version", [0, 2, 99, 2**32 - 1])
def test_unknown_root_version_is_unwrap_error(version):
    keyring = RootKeyring({1: ROOT_1}, current=1)
    wrapped = struct.pack(">I", version) + _wrap(keyring)[4:]
    with pytest.raises(UnwrapError):
        _unwrap(keyring, wrapped)


def test_version_only_held_elsewhere_is_unwrap_error():
    newer = RootKeyring({1: ROOT_1, 2: ROOT_2}, current=2)
    older = RootKeyring({1: ROOT_1}, current=1)
    with pytest.raises(UnwrapError):
        _unwrap(older, _wrap(newer))


@pytest.mark.parametrize("length", [0, 1, 4, 16, 31])
def test_truncated_below_minimum_is_unwrap_error(length):
    keyring = RootKeyring({1: ROOT_1}, current=1)
    with pytest.raises(UnwrapError):
        _unwrap(keyring, _wrap(keyring)[:length])


@pytest.mark.parametrize("cut", [1, 16, 32])
def test_truncated_tail_is_unwrap_error(cut):
    keyring = RootKeyring({1: ROOT_1}, current=1)
    with pytest.raises(UnwrapError):
        _unwrap(keyring, _wrap(keyring)[:-cut])


def test_tampered_bytes_are_unwrap_error():
    keyring = RootKeyring({1: ROOT_1}, current=1)
    wrapped = _wrap(keyring)
    for index in range(4, len(wrapped)):
        tampered = wrapped[:index] + bytes([wrapped[index] ^ 1]) + wrapped[index + 1:]
        with pytest.raises(UnwrapError):
            _unwrap(keyring, tampered)


def test_same_version_number_with_other_root_bytes_is_unwrap_error():
    wrapped = _wrap(RootKeyring({1: ROOT_1}, current=1))
    with pytest.raises(UnwrapError):
        _unwrap(RootKeyring({1: ROOT_2}, current=1), wrapped)


def test_multi_version_keyring_wraps_with_current_and_unwraps_older():
    v1 = RootKeyring({1: ROOT_1}, current=1)
    v2 = RootKeyring({1: ROOT_1, 2: ROOT_2}, current=2)
    v3 = RootKeyring({1: ROOT_1, 2: ROOT_2, 3: ROOT_3}, current=3)
    old_1, old_2 = _wrap(v1), _wrap(v2)
    new = _wrap(v3)
    assert struct.unpack(">I", old_2[:4]) == (2,)
    assert struct.unpack(">I", new[:4]) == (3,)
    for wrapped in (old_1, old_2, new):
        assert _unwrap(v3, wrapped) == SECRET
    # the current version is really used: a keyring without it cannot read the new value
    with pytest.raises(UnwrapError):
        _unwrap(v2, new)
    # re-wrapping (root rotation) moves a value to the current version
    assert struct.unpack(">I", _wrap(v3, _unwrap(v3, old_1))[:4]) == (3,)


def test_dropping_an_old_version_makes_its_values_unreadable():
    """Destroying an old root version bounds how long a backup can recover material (docs/key-hierarchy.md)."""
    old = _wrap(RootKeyring({1: ROOT_1}, current=1))
    after = RootKeyring({2: ROOT_2}, current=2)
    with pytest.raises(UnwrapError):
        _unwrap(after, old)


def test_unwrap_error_message_has_no_secret():
    keyring = RootKeyring({1: ROOT_1}, current=1)
    with pytest.raises(UnwrapError) as info:
        _unwrap(keyring, _wrap(keyring), purpose="other")
    message = str(info.value)
    assert ROOT_1.hex() not in message and SECRET.hex() not in message


@settings(max_examples=100, deadline=None)
@given(secret=st.binary(max_size=512), purpose=st.text(max_size=20), key_id=st.text(max_size=40),
       material_id=st.text(max_size=40), version=st.integers(min_value=0, max_value=2**32 - 1))
def test_round_trip_property(secret, purpose, key_id, material_id, version):
    keyring = RootKeyring({version: ROOT_3}, current=version)
    wrapped = keyring.wrap(secret, purpose=purpose, key_id=key_id, material_id=material_id)
    assert keyring.unwrap(wrapped, purpose=purpose, key_id=key_id, material_id=material_id) == secret
