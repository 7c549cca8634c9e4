"""The symmetric ciphertext blob (docs/key-hierarchy.md):

    version(1) | key id(16) | material id(16) | kdf nonce(16) | iv(12) | ciphertext | tag(16)

The whole header is authenticated; any parse or tag failure is InvalidCiphertextException; the per-call key
is SP 800-108 KDF in counter mode (HMAC-SHA256) over (backing key, random nonce).
"""
from __future__ import annotations

import hashlib
import hmac
import os
import struct
import uuid

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.kbkdf import KBKDFHMAC, CounterLocation, Mode
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.crypto import ciphertext
from domain.crypto.ciphertext import HEADER_LEN, OVERHEAD, decrypt, derive_call_key, encrypt, parse_header
from domain.errors import InvalidCiphertextError

BACKING_KEY = bytes(range(32))
KEY_ID = uuid.UUID("1234abcd-12ab-34cd-56ef-1234567890ab")
MATERIAL_ID = bytes.fromhex("00112233445566778899aabbccddeeff")
CONTEXT = {"purpose": "test", "tenant": "ü-42"}
PLAINTEXT = b"attack at dawn, bring snacks"


@pytest.fixture(scope="module")
def blob() -> bytes:
    return encrypt(BACKING_KEY, KEY_ID, MATERIAL_ID, PLAINTEXT, CONTEXT)


def _flip(data: bytes, index: int, mask: int = 0xFF) -> bytes:
    return data[:index] + bytes([data[index] ^ mask]) + data[index + 1:]


def test_round_trip(blob):
    assert decrypt(BACKING_KEY, blob, CONTEXT) == PLAINTEXT
    assert decrypt(BACKING_KEY, blob, dict(reversed(list(CONTEXT.items())))) == PLAINTEXT


def test_round_trip_without_context_none_and_empty_are_the_same():
    blob = encrypt(BACKING_KEY, KEY_ID, MATERIAL_ID, PLAINTEXT, None)
    assert decrypt(BACKING_KEY, blob, None) == PLAINTEXT
    assert decrypt(BACKING_KEY, blob, {}) == PLAINTEXT


def test_layout(blob):
    assert blob[0] == 1
    assert blob[1:17] == KEY_ID.bytes
    assert blob[17:33] == MATERIAL_ID
    assert HEADER_LEN == 1 + 16 + 16 + 16 + 12 == 61
    assert len(blob) == len(PLAINTEXT) + 77
    header = parse_header(blob)
    assert header.key_id == KEY_ID
    assert header.material_id == MATERIAL_ID


@pytest.mark.parametrize("size", [0, 1, 16, 100, 4096])
def test_overhead_is_exactly_77_bytes(size):
    assert OVERHEAD == 77
    assert len(encrypt(BACKING_KEY, KEY_ID, MATERIAL_ID, os.urandom(size), CONTEXT)) == size + 77


def test_each_encryption_uses_fresh_nonce_and_iv():
    a = encrypt(BACKING_KEY, KEY_ID, MATERIAL_ID, PLAINTEXT, CONTEXT)
    b = encrypt(BACKING_KEY, KEY_ID, MATERIAL_ID, PLAINTEXT, CONTEXT)
    assert a[:33] == b[:33]
    assert a[33:49] != b[33:49]  # kdf nonce
    assert a[49:61] != b[49:61]  # iv
    assert a[61:] != b[61:]


@pytest.mark.parametrize("index", range(61))
def test_flipping_any_header_byte_is_invalid_ciphertext(blob, index):
    with pytest.raises(InvalidCiphertextError):
        decrypt(BACKING_KEY, _flip(blob, index), CONTEXT)


@pytest.mark.parametrize("index", range(61))
def test_flipping_one_bit_of_any_header_byte_is_invalid_ciphertext(blob, index):
    with pytest.raises(InvalidCiphertextError):
        decrypt(BACKING_KEY, _flip(blob, index, 0x01), CONTEXT)


@pytest.mark.parametrize("offset", [0, 1, len(PLAINTEXT) // 2, len(PLAINTEXT) - 1,  # body
                                    len(PLAINTEXT), len(PLAINTEXT) + 7, len(PLAINTEXT) + 15])  # tag
def test_flipping_body_or_tag_bytes_is_invalid_ciphertext(blob, offset):
    index = HEADER_LEN + offset
    with pytest.raises(InvalidCiphertextError):
        decrypt(BACKING_KEY, _flip(blob, index), CONTEXT)
    with pytest.raises(InvalidCiphertextError):
        decrypt(BACKING_KEY, _flip(blob, index, 0x80), CONTEXT)


def test_version_2_is_a_custom_key_store_blob_that_software_decrypt_refuses(blob):
    # Version 2 is the format of keys held in a token (docs/custom-key-stores.md): it parses, names its key, and
    # the software path refuses it, so a blob cannot be steered from one path to the other by its version byte.
    changed = bytes([2]) + blob[1:]
    assert parse_header(changed).in_store
    with pytest.raises(InvalidCiphertextError):
        decrypt(BACKING_KEY, changed, CONTEXT)


def test_version_3_names_a_multi_region_key_and_the_version_byte_is_authenticated(blob):
    # Version 3 is version 1's layout naming a multi-Region key by its mrk- id (decision 156): it parses, and
    # the version byte, part of the AAD, cannot be changed without the tag failing.
    mrk_blob = encrypt(BACKING_KEY, "mrk-" + "ab" * 16, b"\x01" * 16, b"data", CONTEXT)
    assert mrk_blob[0] == 3 and parse_header(mrk_blob).public_key_id == "mrk-" + "ab" * 16
    assert decrypt(BACKING_KEY, mrk_blob, CONTEXT) == b"data"
    for changed in (bytes([1]) + mrk_blob[1:], bytes([3]) + blob[1:]):
        with pytest.raises(InvalidCiphertextError):
            decrypt(BACKING_KEY, changed, CONTEXT)


@pytest.mark.parametrize("version", [0, 4, 0x7F, 0xFF])
def test_other_version_byte_is_refused_by_parse_header_and_decrypt(blob, version):
    changed = bytes([version]) + blob[1:]
    with pytest.raises(InvalidCiphertextError):
        parse_header(changed)
    with pytest.raises(InvalidCiphertextError):
        decrypt(BACKING_KEY, changed, CONTEXT)


@pytest.mark.parametrize("length", [0, 1, 17, 33, 60, 61, 76])
def test_truncated_below_overhead_is_refused_by_parse_header(blob, length):
    with pytest.raises(InvalidCiphertextError):
        parse_header(blob[:length])
    with pytest.raises(InvalidCiphertextError):
        decrypt(BACKING_KEY, blob[:length], CONTEXT)


@pytest.mark.parametrize("cut", [1, 2, 16, len(PLAINTEXT)])
def test_truncated_body_is_invalid_ciphertext(blob, cut):
    with pytest.raises(InvalidCiphertextError):
        decrypt(BACKING_KEY, blob[:-cut], CONTEXT)


def test_appended_bytes_are_invalid_ciphertext(blob):
    with pytest.raises(InvalidCiphertextError):
        decrypt(BACKING_KEY, blob + b"\x00", CONTEXT)


@pytest.mark.parametrize("context", [
    None, {}, {"purpose": "test"}, {"purpose": "Test", "tenant": "ü-42"}, {"purpose": "test", "tenant": "u-42"},
    {**CONTEXT, "extra": ""}, {"purpose": "test", "tenant": "ü-42 "},
])
def test_wrong_context_is_invalid_ciphertext(blob, context):
    with pytest.raises(InvalidCiphertextError):
        decrypt(BACKING_KEY, blob, context)


def test_context_given_at_encrypt_but_absent_at_decrypt_and_vice_versa():
    blob = encrypt(BACKING_KEY, KEY_ID, MATERIAL_ID, PLAINTEXT, None)
    with pytest.raises(InvalidCiphertextError):
        decrypt(BACKING_KEY, blob, {"a": "b"})


def test_ambiguous_context_concatenations_do_not_decrypt():
    blob = encrypt(BACKING_KEY, KEY_ID, MATERIAL_ID, PLAINTEXT, {"ab": "c"})
    with pytest.raises(InvalidCiphertextError):
        decrypt(BACKING_KEY, blob, {"a": "bc"})


def test_wrong_backing_key_is_invalid_ciphertext(blob):
    with pytest.raises(InvalidCiphertextError):
        decrypt(bytes(32), blob, CONTEXT)


def test_errors_carry_the_aws_code(blob):
    with pytest.raises(InvalidCiphertextError) as info:
        decrypt(BACKING_KEY, _flip(blob, 40), CONTEXT)
    assert info.value.code == "InvalidCiphertextException"
    assert BACKING_KEY.hex() not in info.value.message


# --- per-call key derivation ------------------------------------------------------------------------------


def test_derive_call_key_differs_per_nonce_and_per_backing_key():
    nonces = [os.urandom(16) for _ in range(20)] + [bytes(16), b"\x00" * 15 + b"\x01"]
    keys = {derive_call_key(BACKING_KEY, n) for n in nonces}
    assert len(keys) == len(nonces)
    assert all(len(k) == 32 for k in keys)
    nonce = bytes(16)
    assert derive_call_key(BACKING_KEY, nonce) == derive_call_key(BACKING_KEY, nonce)
    assert derive_call_key(BACKING_KEY, nonce) != derive_call_key(bytes(32), nonce)
    assert derive_call_key(BACKING_KEY, nonce) != BACKING_KEY


def _sp800_108_counter_hmac_sha256(key: bytes, label: bytes, context: bytes, length: int = 32) -> bytes:
    """NIST SP 800-108 KDF in counter mode, PRF = HMAC-SHA256, r = 32, fixed input =
    Label || 0x00 || Context || [L]_32, counter before the fixed input. Written independently of the code
    under test."""
    fixed = label + b"\x00" + context + struct.pack(">I", length * 8)
    out = b""
    counter = 1
    while len(out) < length:
        out += hmac.new(key, struct.pack(">I", counter) + fixed, hashlib.sha256).digest()
        counter += 1
    return out[:length]


def test_derive_call_key_is_sp800_108_counter_mode_hmac_sha256():
    label = ciphertext.CALL_KEY_LABEL
    for nonce in (bytes(16), bytes(range(16)), os.urandom(16)):
        assert derive_call_key(BACKING_KEY, nonce) == _sp800_108_counter_hmac_sha256(BACKING_KEY, label, nonce)


@settings(max_examples=50, deadline=None)
@given(st.binary(min_size=32, max_size=32), st.binary(min_size=16, max_size=16))
def test_derive_call_key_equals_cryptography_kbkdf(backing_key, nonce):
    # derive_call_key is one HMAC; the KDF object it replaced must derive the very same key.
    kdf = KBKDFHMAC(algorithm=hashes.SHA256(), mode=Mode.CounterMode, length=32, rlen=4, llen=4,
                    location=CounterLocation.BeforeFixed, label=ciphertext.CALL_KEY_LABEL, context=nonce, fixed=None)
    assert derive_call_key(backing_key, nonce) == kdf.derive(backing_key)


def test_blob_decrypts_with_the_independently_derived_key(blob):
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    from domain.crypto.encryption_context import canonical_encryption_context

    nonce, iv = blob[33:49], blob[49:61]
    call_key = _sp800_108_counter_hmac_sha256(BACKING_KEY, ciphertext.CALL_KEY_LABEL, nonce)
    aad = blob[:61] + canonical_encryption_context(CONTEXT)
    assert AESGCM(call_key).decrypt(iv, blob[61:], aad) == PLAINTEXT


# --- property -------------------------------------------------------------------------------------------

contexts = st.one_of(st.none(), st.dictionaries(st.text(min_size=1, max_size=12), st.text(max_size=12), max_size=6))


@settings(max_examples=200, deadline=None)
@given(plaintext=st.binary(min_size=0, max_size=4096), context=contexts, key_id=st.uuids(),
       material_id=st.binary(min_size=16, max_size=16), backing_key=st.binary(min_size=32, max_size=32))
def test_round_trip_property(plaintext, context, key_id, material_id, backing_key):
    blob = encrypt(backing_key, key_id, material_id, plaintext, context)
    assert len(blob) == len(plaintext) + OVERHEAD
    header = parse_header(blob)
    assert header.key_id == key_id and header.material_id == material_id
    assert decrypt(backing_key, blob, dict(context or {})) == plaintext


@settings(max_examples=100, deadline=None)
@given(plaintext=st.binary(min_size=1, max_size=64), context=contexts, data=st.data())
def test_any_single_byte_change_is_invalid_ciphertext_property(plaintext, context, data):
    blob = encrypt(BACKING_KEY, KEY_ID, MATERIAL_ID, plaintext, context)
    index = data.draw(st.integers(min_value=0, max_value=len(blob) - 1), label="index")
    mask = data.draw(st.integers(min_value=1, max_value=255), label="mask")
    with pytest.raises(InvalidCiphertextError):
        decrypt(BACKING_KEY, _flip(blob, index, mask), context)
