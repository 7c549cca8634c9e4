"""BYOK helpers: the wire format customers produce with OpenSSL unwraps for every algorithm and wrapping
key size, import tokens refuse any tampering or reuse on another key, and the import rules match AWS."""
from __future__ import annotations

import hashlib
import hmac
import json
import os
import shutil
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding
from cryptography.hazmat.primitives.keywrap import aes_key_wrap_with_padding
from hypothesis import given, settings
from hypothesis import strategies as st

_ROOT = str(Path(__file__).resolve().parents[2])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from domain.errors import (  # noqa: E402
    ExpiredImportTokenError,
    InvalidCiphertextError,
    InvalidImportTokenError,
    UnsupportedOperationError,
    ValidationError,
)
from domain.keys import byok as ki  # noqa: E402

KEY_ID = "1234abcd-12ab-34cd-56ef-1234567890ab"
TOKEN_KEY = bytes(range(32))
T0 = datetime(2025, 3, 1, 12, 0, tzinfo=timezone.utc)
ALGORITHMS = list(ki.WRAPPING_ALGORITHMS)
SPECS = list(ki.WRAPPING_KEY_SPECS)


@pytest.fixture(scope="module")
def wrapping_keys() -> dict[str, tuple[bytes, bytes]]:
    # RSA 4096 generation is slow: one pair per spec for the whole module, plus a stranger for wrong-key tests.
    return {spec: ki.new_wrapping_key(spec) for spec in SPECS} | {"other": ki.new_wrapping_key("RSA_2048")}


def raw_client_wrap(public_der: bytes, algorithm: str, material: bytes) -> bytes:
    """The documented format built from bare primitives, independent of the module under test."""
    public = serialization.load_der_public_key(public_der)
    h = hashes.SHA1 if algorithm.endswith("SHA_1") else hashes.SHA256
    oaep = padding.OAEP(mgf=padding.MGF1(h()), algorithm=h(), label=None)
    if algorithm.startswith("RSAES_OAEP"):
        return public.encrypt(material, oaep)
    aes_key = os.urandom(32)
    return public.encrypt(aes_key, oaep) + aes_key_wrap_with_padding(aes_key, material)


# --- key pairs and unwrapping ---------------------------------------------------------------------------


@pytest.mark.parametrize("spec", SPECS)
def test_wrapping_key_pair_is_pkcs8_and_spki_of_the_right_size(wrapping_keys, spec):
    private_der, public_der = wrapping_keys[spec]
    private = serialization.load_der_private_key(private_der, None)
    assert private.key_size == ki.WRAPPING_KEY_SPECS[spec]
    assert private.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo) == public_der


@pytest.mark.parametrize("spec", SPECS)
@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_symmetric_material_round_trips(wrapping_keys, algorithm, spec):
    private_der, public_der = wrapping_keys[spec]
    material = os.urandom(32)
    wrapped = raw_client_wrap(public_der, algorithm, material)
    modulus = ki.WRAPPING_KEY_SPECS[spec] // 8
    # RSA_AES output is RSA block | AES-KWP(32 bytes) = 40 bytes.
    assert len(wrapped) == (modulus + 40 if algorithm.startswith("RSA_AES") else modulus)
    assert ki.unwrap_key_material(private_der, algorithm, wrapped) == material


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl CLI")
@pytest.mark.parametrize("md", ["sha1", "sha256"])
def test_material_wrapped_with_the_openssl_cli_unwraps(wrapping_keys, tmp_path, md):
    # The commands AWS's developer guide gives customers (Step 3: Encrypt the key material).
    private_der, public_der = wrapping_keys["RSA_3072"]
    material, aes_key = os.urandom(100), os.urandom(32)
    for name, data in {"pub.der": public_der, "aes.bin": aes_key, "mat.bin": material}.items():
        (tmp_path / name).write_bytes(data)
    run = lambda *args: subprocess.run(["openssl", *args], cwd=tmp_path, check=True, capture_output=True)  # noqa: E731
    run("pkeyutl", "-encrypt", "-pubin", "-inkey", "pub.der", "-keyform", "DER", "-in", "aes.bin", "-out",
        "aes.wrapped", "-pkeyopt", "rsa_padding_mode:oaep", "-pkeyopt", f"rsa_oaep_md:{md}",
        "-pkeyopt", f"rsa_mgf1_md:{md}")
    run("enc", "-id-aes256-wrap-pad", "-iv", "A65959A6", "-K", aes_key.hex(), "-in", "mat.bin", "-out", "mat.wrapped")
    blob = (tmp_path / "aes.wrapped").read_bytes() + (tmp_path / "mat.wrapped").read_bytes()
    algorithm = "RSA_AES_KEY_WRAP_SHA_1" if md == "sha1" else "RSA_AES_KEY_WRAP_SHA_256"
    assert ki.unwrap_key_material(private_der, algorithm, blob) == material


@pytest.mark.parametrize("algorithm", ["RSA_AES_KEY_WRAP_SHA_1", "RSA_AES_KEY_WRAP_SHA_256"])
def test_p521_private_key_under_rsa_2048_needs_rsa_aes_key_wrap(wrapping_keys, algorithm):
    pkcs8 = ec.generate_private_key(ec.SECP521R1()).private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    private_der, public_der = wrapping_keys["RSA_2048"]
    wrapped = raw_client_wrap(public_der, algorithm, pkcs8)
    assert ki.unwrap_key_material(private_der, algorithm, wrapped) == pkcs8
    with pytest.raises(ValueError):  # too large for one OAEP block: the client cannot even produce it
        raw_client_wrap(public_der, "RSAES_OAEP_SHA_256", pkcs8)


@settings(max_examples=40, deadline=None)
@given(material=st.binary(min_size=1, max_size=2000))
def test_rsa_aes_key_wrap_carries_any_length(wrapping_keys, material):
    private_der, public_der = wrapping_keys["RSA_2048"]
    wrapped = raw_client_wrap(public_der, "RSA_AES_KEY_WRAP_SHA_256", material)
    assert ki.unwrap_key_material(private_der, "RSA_AES_KEY_WRAP_SHA_256", wrapped) == material


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_wrong_private_key_is_invalid_ciphertext(wrapping_keys, algorithm):
    wrapped = raw_client_wrap(wrapping_keys["RSA_2048"][1], algorithm, os.urandom(32))
    with pytest.raises(InvalidCiphertextError, match="could not be unwrapped"):
        ki.unwrap_key_material(wrapping_keys["other"][0], algorithm, wrapped)


@pytest.mark.parametrize("wrapped_with, unwrapped_with", [
    ("RSAES_OAEP_SHA_1", "RSAES_OAEP_SHA_256"), ("RSA_AES_KEY_WRAP_SHA_256", "RSA_AES_KEY_WRAP_SHA_1"),
    ("RSAES_OAEP_SHA_256", "RSA_AES_KEY_WRAP_SHA_256"), ("RSA_AES_KEY_WRAP_SHA_256", "RSAES_OAEP_SHA_256")])
def test_wrong_algorithm_is_invalid_ciphertext(wrapping_keys, wrapped_with, unwrapped_with):
    private_der, public_der = wrapping_keys["RSA_2048"]
    wrapped = raw_client_wrap(public_der, wrapped_with, os.urandom(32))
    with pytest.raises(InvalidCiphertextError):
        ki.unwrap_key_material(private_der, unwrapped_with, wrapped)


@settings(max_examples=60, deadline=None)
@given(algorithm=st.sampled_from(ALGORITHMS), blob=st.binary(max_size=600), cut=st.integers(0, 400))
def test_garbage_or_truncated_material_is_only_ever_invalid_ciphertext(wrapping_keys, algorithm, blob, cut):
    private_der, public_der = wrapping_keys["RSA_2048"]
    good = raw_client_wrap(public_der, algorithm, os.urandom(32))
    for candidate in (blob, good[:cut % len(good)], good + (blob[:1] or b"\0")):
        with pytest.raises(InvalidCiphertextError):
            ki.unwrap_key_material(private_der, algorithm, candidate)


# --- algorithm and spec choices --------------------------------------------------------------------------


def test_pkcs1_v1_5_is_refused_like_aws():
    with pytest.raises(UnsupportedOperationError) as e:
        ki.check_wrapping_algorithm("RSAES_PKCS1_V1_5")
    assert e.value.message == ("RSAES_PKCS1_V1_5 is no longer supported for importing key material, as in AWS "
                               "KMS; use RSAES_OAEP_SHA_256 or RSA_AES_KEY_WRAP_SHA_256.")
    with pytest.raises(UnsupportedOperationError):
        ki.issue_import_token(token_key=TOKEN_KEY, key_id=KEY_ID, import_id="i", wrapping_algorithm="RSAES_PKCS1_V1_5",
                              wrapping_key_spec="RSA_2048", issued_at=T0)


def test_sm2_and_unknown_choices_are_refused():
    with pytest.raises(UnsupportedOperationError):
        ki.check_wrapping_algorithm("SM2PKE")
    with pytest.raises(UnsupportedOperationError):
        ki.new_wrapping_key("SM2")
    with pytest.raises(ValidationError):
        ki.check_wrapping_algorithm("RSAES_OAEP_SHA_512")
    with pytest.raises(ValidationError):
        ki.check_wrapping_key_spec("RSA_1024")


@pytest.mark.parametrize("size, ok", [(31, False), (32, True), (33, False), (0, False), (64, False)])
def test_symmetric_material_must_be_32_bytes(size, ok):
    if ok:
        ki.validate_symmetric_import(bytes(size))
    else:
        with pytest.raises(ValidationError, match=f"256 bits \\(32 bytes\\); got {size} bytes"):
            ki.validate_symmetric_import(bytes(size))


# --- import tokens ---------------------------------------------------------------------------------------


def issue(**overrides) -> bytes:
    args = dict(token_key=TOKEN_KEY, key_id=KEY_ID, import_id="imp-1", wrapping_algorithm="RSA_AES_KEY_WRAP_SHA_256",
                wrapping_key_spec="RSA_4096", issued_at=T0)
    return ki.issue_import_token(**(args | overrides))


def test_token_round_trips_and_expires_after_24_hours():
    ticket = ki.read_import_token(TOKEN_KEY, issue(), key_id=KEY_ID, now=T0 + timedelta(hours=24))
    assert ticket == ki.ImportTicket(KEY_ID, "imp-1", "RSA_AES_KEY_WRAP_SHA_256", "RSA_4096", T0,
                                     T0 + timedelta(hours=24))
    with pytest.raises(ExpiredImportTokenError):
        ki.read_import_token(TOKEN_KEY, issue(), key_id=KEY_ID, now=T0 + timedelta(hours=24, microseconds=1))


def test_token_holds_no_secret_and_follows_the_documented_format():
    token = issue()
    assert token[:1] == b"\x01"
    claims = json.loads(token[1:-32])
    assert set(claims) == {"key_id", "import_id", "wrapping_algorithm", "wrapping_key_spec", "issued_at", "expires_at"}
    assert token[-32:] == hmac.new(TOKEN_KEY, b"keyledger/import-token/v1" + token[:-32], hashlib.sha256).digest()


def test_every_tampered_byte_is_refused():
    token = issue()
    for i in range(len(token)):
        for flip in (0x01, 0x80):
            bad = token[:i] + bytes([token[i] ^ flip]) + token[i + 1:]
            with pytest.raises(InvalidImportTokenError):
                ki.read_import_token(TOKEN_KEY, bad, key_id=KEY_ID, now=T0)
    for n in range(len(token)):
        with pytest.raises(InvalidImportTokenError):
            ki.read_import_token(TOKEN_KEY, token[:n], key_id=KEY_ID, now=T0)


def test_token_for_another_key_or_under_another_token_key_is_invalid():
    with pytest.raises(InvalidImportTokenError):
        ki.read_import_token(TOKEN_KEY, issue(), key_id="ffffffff-12ab-34cd-56ef-1234567890ab", now=T0)
    with pytest.raises(InvalidImportTokenError):
        ki.read_import_token(os.urandom(32), issue(), key_id=KEY_ID, now=T0)


@pytest.mark.parametrize("claims", [b"[]", b"{}", b"not json", b"\xff\xfe",
                                    json.dumps({"key_id": KEY_ID}).encode()])
def test_authentic_but_malformed_claims_are_invalid(claims):
    body = b"\x01" + claims
    token = body + hmac.new(TOKEN_KEY, b"keyledger/import-token/v1" + body, hashlib.sha256).digest()
    with pytest.raises(InvalidImportTokenError):
        ki.read_import_token(TOKEN_KEY, token, key_id=KEY_ID, now=T0)


@given(garbage=st.binary(max_size=400))
def test_garbage_tokens_are_invalid(garbage):
    with pytest.raises(InvalidImportTokenError):
        ki.read_import_token(TOKEN_KEY, garbage, key_id=KEY_ID, now=T0)


# --- expiration ------------------------------------------------------------------------------------------

E, N = ki.KEY_MATERIAL_EXPIRES, ki.KEY_MATERIAL_DOES_NOT_EXPIRE


@pytest.mark.parametrize("model, valid_to, expected", [
    (None, None, N), (None, timedelta(days=30), E), (E, timedelta(days=365), E), (N, None, N),
    (E, None, ValidationError), (N, timedelta(days=1), ValidationError), (E, timedelta(0), ValidationError),
    (E, timedelta(days=-1), ValidationError), (E, timedelta(days=365, seconds=1), ValidationError),
    (None, timedelta(days=366), ValidationError), ("NEVER", None, ValidationError)])
def test_expiration_rules(model, valid_to, expected):
    valid_to_at = None if valid_to is None else T0 + valid_to
    if isinstance(expected, str):
        assert ki.validate_expiration(model, valid_to_at, T0) == expected
    else:
        with pytest.raises(expected):
            ki.validate_expiration(model, valid_to_at, T0)
