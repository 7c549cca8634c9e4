"""Imported key material (BYOK, Origin EXTERNAL) end to end, on SQLite and PostgreSQL: import parameters
for every wrapping algorithm and wrapping key spec, key material wrapped client-side with `cryptography`
as a customer would (OpenSSL-equivalent RSA-OAEP and RSA-OAEP + AES key wrap with padding), the import
token's rules, deleting and re-importing material, expiring material, and HMAC and ECC keys with
imported material."""
from __future__ import annotations

import hashlib
import hmac
import os
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from botocore.exceptions import ClientError
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.keywrap import aes_key_wrap_with_padding

from tests.e2e.helpers import advance_days, code, create_key, error_code, maintenance

ALGORITHMS = ["RSAES_OAEP_SHA_1", "RSAES_OAEP_SHA_256", "RSA_AES_KEY_WRAP_SHA_1", "RSA_AES_KEY_WRAP_SHA_256"]
SPECS = {"RSA_2048": 2048, "RSA_3072": 3072, "RSA_4096": 4096}
DATE_TOLERANCE = timedelta(minutes=10)


# -- helpers -----------------------------------------------------------------------------------------





def near(actual: datetime, expected: datetime, tolerance: timedelta = DATE_TOLERANCE) -> bool:
    return abs(actual.astimezone(timezone.utc) - expected.astimezone(timezone.utc)) <= tolerance


def wrap(public_der: bytes, algorithm: str, material: bytes) -> bytes:
    """What a customer does with the wrapping public key (OpenSSL pkeyutl / enc -id-aes256-wrap-pad)."""
    public = serialization.load_der_public_key(public_der)
    assert isinstance(public, rsa.RSAPublicKey)
    digest = hashes.SHA1 if algorithm.endswith("SHA_1") else hashes.SHA256
    oaep = padding.OAEP(mgf=padding.MGF1(digest()), algorithm=digest(), label=None)
    if algorithm.startswith("RSAES_OAEP"):
        return public.encrypt(material, oaep)
    aes_key = os.urandom(32)
    return public.encrypt(aes_key, oaep) + aes_key_wrap_with_padding(aes_key, material)


def params(kms: Any, key: str, algorithm: str = "RSAES_OAEP_SHA_256", spec: str = "RSA_2048") -> dict[str, Any]:
    return kms.get_parameters_for_import(KeyId=key, WrappingAlgorithm=algorithm, WrappingKeySpec=spec)


def import_material(kms: Any, key: str, material: bytes, algorithm: str = "RSAES_OAEP_SHA_256",
                    spec: str = "RSA_2048", **extra: Any) -> dict[str, Any]:
    p = params(kms, key, algorithm, spec)
    return kms.import_key_material(KeyId=key, ImportToken=p["ImportToken"],
                                   EncryptedKeyMaterial=wrap(p["PublicKey"], algorithm, material), **extra)


def external_key(kms: Any, **kwargs: Any) -> str:
    meta = create_key(kms, Origin="EXTERNAL", **kwargs)
    assert meta["KeyState"] == "PendingImport"
    return meta["KeyId"]


def state(kms: Any, key: str) -> str:
    return kms.describe_key(KeyId=key)["KeyMetadata"]["KeyState"]


# -- An EXTERNAL key before import ---------------------------------------------------------------------

def test_external_key_starts_pending_import(kms):
    meta = create_key(kms, Origin="EXTERNAL", Description="byok")
    assert meta["Origin"] == "EXTERNAL"
    assert meta["KeyState"] == "PendingImport"
    assert meta["Enabled"] is False
    assert meta["KeySpec"] == "SYMMETRIC_DEFAULT"
    assert "CurrentKeyMaterialId" not in meta
    described = kms.describe_key(KeyId=meta["KeyId"])["KeyMetadata"]
    assert described["KeyState"] == "PendingImport"
    assert "CurrentKeyMaterialId" not in described
    key = meta["KeyId"]
    assert error_code(kms.encrypt, KeyId=key, Plaintext=b"x") == "KMSInvalidStateException"
    assert error_code(kms.generate_data_key, KeyId=key, KeySpec="AES_256") == "KMSInvalidStateException"
    assert error_code(kms.enable_key, KeyId=key) == "KMSInvalidStateException"


@pytest.mark.parametrize("spec", list(SPECS))
def test_get_parameters_for_import_per_wrapping_key_spec(kms, spec):
    key = external_key(kms)
    before = datetime.now(timezone.utc)
    response = params(kms, key, "RSA_AES_KEY_WRAP_SHA_256", spec)
    assert response["KeyId"].endswith(key)
    assert near(response["ParametersValidTo"], before + timedelta(hours=24))
    public = serialization.load_der_public_key(response["PublicKey"])  # SubjectPublicKeyInfo DER
    assert isinstance(public, rsa.RSAPublicKey)
    assert public.key_size == SPECS[spec]
    assert response["ImportToken"]
    assert state(kms, key) == "PendingImport"  # asking for parameters changes nothing visible


def test_each_call_gives_a_fresh_wrapping_key_and_token(kms):
    key = external_key(kms)
    a, b = params(kms, key), params(kms, key)
    assert a["PublicKey"] != b["PublicKey"]
    assert a["ImportToken"] != b["ImportToken"]


@pytest.mark.parametrize("algorithm,spec", [("RSAES_OAEP_SHA_1", "RSA_2048"), ("RSAES_OAEP_SHA_256", "RSA_3072"),
                                            ("RSA_AES_KEY_WRAP_SHA_1", "RSA_4096"),
                                            ("RSA_AES_KEY_WRAP_SHA_256", "RSA_2048")])
def test_import_with_each_wrapping_algorithm(kms, algorithm, spec):
    key = external_key(kms)
    material = os.urandom(32)
    p = params(kms, key, algorithm, spec)
    public = serialization.load_der_public_key(p["PublicKey"])
    assert isinstance(public, rsa.RSAPublicKey) and public.key_size == SPECS[spec]
    imported = kms.import_key_material(KeyId=key, ImportToken=p["ImportToken"],
                                       EncryptedKeyMaterial=wrap(p["PublicKey"], algorithm, material),
                                       ExpirationModel="KEY_MATERIAL_DOES_NOT_EXPIRE")
    meta = kms.describe_key(KeyId=key)["KeyMetadata"]
    assert meta["KeyState"] == "Enabled" and meta["Enabled"] is True
    assert meta["ExpirationModel"] == "KEY_MATERIAL_DOES_NOT_EXPIRE"
    assert "ValidTo" not in meta
    assert meta["CurrentKeyMaterialId"]
    if "KeyMaterialId" in imported:
        assert imported["KeyMaterialId"] == meta["CurrentKeyMaterialId"]

    blob = kms.encrypt(KeyId=key, Plaintext=b"imported " + algorithm.encode(),
                       EncryptionContext={"alg": algorithm})["CiphertextBlob"]
    out = kms.decrypt(CiphertextBlob=blob, EncryptionContext={"alg": algorithm})
    assert out["Plaintext"] == b"imported " + algorithm.encode()
    assert out["KeyMaterialId"] == meta["CurrentKeyMaterialId"]
    data_key = kms.generate_data_key(KeyId=key, KeySpec="AES_256")
    assert kms.decrypt(CiphertextBlob=data_key["CiphertextBlob"])["Plaintext"] == data_key["Plaintext"]


def test_pkcs1_v1_5_wrapping_is_unsupported(kms):
    key = external_key(kms)
    assert error_code(params, kms, key, "RSAES_PKCS1_V1_5", "RSA_2048") == "UnsupportedOperationException"


def test_import_operations_on_an_aws_kms_key_are_unsupported(kms):
    key = create_key(kms)["KeyId"]
    assert error_code(params, kms, key) == "UnsupportedOperationException"
    # A token of an EXTERNAL key, presented for the AWS_KMS key, is refused as well.
    other = external_key(kms)
    p = params(kms, other)
    with pytest.raises(ClientError) as info:
        kms.import_key_material(KeyId=key, ImportToken=p["ImportToken"],
                                EncryptedKeyMaterial=wrap(p["PublicKey"], "RSAES_OAEP_SHA_256", os.urandom(32)),
                                ExpirationModel="KEY_MATERIAL_DOES_NOT_EXPIRE")
    assert code(info.value) in ("UnsupportedOperationException", "InvalidImportTokenException")
    assert error_code(kms.delete_imported_key_material, KeyId=key) == "UnsupportedOperationException"
    assert state(kms, key) == "Enabled"


# -- Import token rules ----------------------------------------------------------------------------------

def test_token_of_another_key_is_refused(kms):
    key, other = external_key(kms), external_key(kms)
    params(kms, key)  # the key has parameters of its own
    p_other = params(kms, other)
    material = os.urandom(32)
    assert error_code(kms.import_key_material, KeyId=key, ImportToken=p_other["ImportToken"],
                      EncryptedKeyMaterial=wrap(p_other["PublicKey"], "RSAES_OAEP_SHA_256", material),
                      ExpirationModel="KEY_MATERIAL_DOES_NOT_EXPIRE") == "InvalidImportTokenException"
    assert state(kms, key) == "PendingImport"
    # The token still works for its own key.
    kms.import_key_material(KeyId=other, ImportToken=p_other["ImportToken"],
                            EncryptedKeyMaterial=wrap(p_other["PublicKey"], "RSAES_OAEP_SHA_256", material),
                            ExpirationModel="KEY_MATERIAL_DOES_NOT_EXPIRE")
    assert state(kms, other) == "Enabled"


@pytest.mark.parametrize("where", ["first", "middle", "last", "truncated", "extended"])
def test_tampered_token_is_refused(kms, where):
    key = external_key(kms)
    p = params(kms, key)
    token = bytearray(p["ImportToken"])
    if where == "truncated":
        token = token[:-1]
    elif where == "extended":
        token += b"\x00"
    else:
        token[{"first": 0, "middle": len(token) // 2, "last": -1}[where]] ^= 0x01
    assert error_code(kms.import_key_material, KeyId=key, ImportToken=bytes(token),
                      EncryptedKeyMaterial=wrap(p["PublicKey"], "RSAES_OAEP_SHA_256", os.urandom(32)),
                      ExpirationModel="KEY_MATERIAL_DOES_NOT_EXPIRE") == "InvalidImportTokenException"
    assert state(kms, key) == "PendingImport"


def test_token_cannot_be_used_twice(kms):
    key = external_key(kms)
    material = os.urandom(32)
    p = params(kms, key)
    wrapped = wrap(p["PublicKey"], "RSAES_OAEP_SHA_256", material)
    kms.import_key_material(KeyId=key, ImportToken=p["ImportToken"], EncryptedKeyMaterial=wrapped,
                            ExpirationModel="KEY_MATERIAL_DOES_NOT_EXPIRE")
    assert error_code(kms.import_key_material, KeyId=key, ImportToken=p["ImportToken"], EncryptedKeyMaterial=wrapped,
                      ExpirationModel="KEY_MATERIAL_DOES_NOT_EXPIRE") == "InvalidImportTokenException"
    # Even after the material is deleted, the used token stays used.
    kms.delete_imported_key_material(KeyId=key)
    assert error_code(kms.import_key_material, KeyId=key, ImportToken=p["ImportToken"], EncryptedKeyMaterial=wrapped,
                      ExpirationModel="KEY_MATERIAL_DOES_NOT_EXPIRE") == "InvalidImportTokenException"
    assert state(kms, key) == "PendingImport"


def test_material_wrapped_under_another_public_key_is_invalid_ciphertext(kms):
    key = external_key(kms)
    p = params(kms, key)
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    assert error_code(kms.import_key_material, KeyId=key, ImportToken=p["ImportToken"],
                      EncryptedKeyMaterial=wrap(stranger, "RSAES_OAEP_SHA_256", os.urandom(32)),
                      ExpirationModel="KEY_MATERIAL_DOES_NOT_EXPIRE") == "InvalidCiphertextException"
    assert state(kms, key) == "PendingImport"


def test_expired_token_is_refused(servers):
    server = servers.start(name="expiry", KEYLEDGER_MAINTENANCE_INTERVAL="0")
    kms = server.client()
    key = external_key(kms)
    p = params(kms, key)
    advance_days(server, 2)
    # The unused wrapping key is cleaned up once its parameters expire; the token still reads as expired.
    assert maintenance(server)["import_keys_removed"] == 1
    assert error_code(kms.import_key_material, KeyId=key, ImportToken=p["ImportToken"],
                      EncryptedKeyMaterial=wrap(p["PublicKey"], "RSAES_OAEP_SHA_256", os.urandom(32)),
                      ExpirationModel="KEY_MATERIAL_DOES_NOT_EXPIRE") == "ExpiredImportTokenException"
    assert state(kms, key) == "PendingImport"
    # New parameters work.
    import_material(kms, key, os.urandom(32), ExpirationModel="KEY_MATERIAL_DOES_NOT_EXPIRE")
    assert state(kms, key) == "Enabled"


# -- Deleting and re-importing material ---------------------------------------------------------------------

def test_delete_and_reimport_the_same_material(kms):
    key = external_key(kms)
    material = os.urandom(32)
    import_material(kms, key, material, ExpirationModel="KEY_MATERIAL_DOES_NOT_EXPIRE")
    material_id = kms.describe_key(KeyId=key)["KeyMetadata"]["CurrentKeyMaterialId"]
    blob = kms.encrypt(KeyId=key, Plaintext=b"survives re-import", EncryptionContext={"k": "v"})["CiphertextBlob"]

    kms.delete_imported_key_material(KeyId=key)
    meta = kms.describe_key(KeyId=key)["KeyMetadata"]
    assert meta["KeyState"] == "PendingImport" and meta["Enabled"] is False
    assert "CurrentKeyMaterialId" not in meta
    assert error_code(kms.decrypt, CiphertextBlob=blob, EncryptionContext={"k": "v"}) == "KMSInvalidStateException"
    assert error_code(kms.encrypt, KeyId=key, Plaintext=b"x") == "KMSInvalidStateException"

    # Different material is refused: a key only ever takes back its own material.
    assert error_code(import_material, kms, key, os.urandom(32),
                      ExpirationModel="KEY_MATERIAL_DOES_NOT_EXPIRE") == "IncorrectKeyMaterialException"
    assert state(kms, key) == "PendingImport"

    # The same material, with new parameters (and another wrapping algorithm), brings the key back.
    import_material(kms, key, material, "RSA_AES_KEY_WRAP_SHA_256", "RSA_3072",
                    ExpirationModel="KEY_MATERIAL_DOES_NOT_EXPIRE")
    meta = kms.describe_key(KeyId=key)["KeyMetadata"]
    assert meta["KeyState"] == "Enabled"
    assert meta["CurrentKeyMaterialId"] == material_id
    out = kms.decrypt(CiphertextBlob=blob, EncryptionContext={"k": "v"})
    assert out["Plaintext"] == b"survives re-import"
    assert out["KeyMaterialId"] == material_id


def test_importing_different_material_into_an_enabled_key_is_refused(kms):
    key = external_key(kms)
    import_material(kms, key, os.urandom(32), ExpirationModel="KEY_MATERIAL_DOES_NOT_EXPIRE")
    assert error_code(import_material, kms, key, os.urandom(32),
                      ExpirationModel="KEY_MATERIAL_DOES_NOT_EXPIRE") == "IncorrectKeyMaterialException"
    assert state(kms, key) == "Enabled"


def test_reimport_can_change_the_expiration(kms):
    key = external_key(kms)
    material = os.urandom(32)
    import_material(kms, key, material, ExpirationModel="KEY_MATERIAL_DOES_NOT_EXPIRE")
    valid_to = datetime.now(timezone.utc) + timedelta(days=30)
    import_material(kms, key, material, ValidTo=valid_to, ExpirationModel="KEY_MATERIAL_EXPIRES")
    meta = kms.describe_key(KeyId=key)["KeyMetadata"]
    assert meta["KeyState"] == "Enabled"
    assert meta["ExpirationModel"] == "KEY_MATERIAL_EXPIRES"
    assert abs(meta["ValidTo"].astimezone(timezone.utc) - valid_to) <= timedelta(seconds=1)
    import_material(kms, key, material, ExpirationModel="KEY_MATERIAL_DOES_NOT_EXPIRE")
    meta = kms.describe_key(KeyId=key)["KeyMetadata"]
    assert meta["ExpirationModel"] == "KEY_MATERIAL_DOES_NOT_EXPIRE"
    assert "ValidTo" not in meta


def test_automatic_rotation_of_an_imported_key_is_unsupported(kms):
    key = external_key(kms)
    import_material(kms, key, os.urandom(32), ExpirationModel="KEY_MATERIAL_DOES_NOT_EXPIRE")
    assert error_code(kms.enable_key_rotation, KeyId=key) == "UnsupportedOperationException"
    assert kms.get_key_rotation_status(KeyId=key)["KeyRotationEnabled"] is False


def test_deleting_material_of_a_key_pending_deletion(kms):
    key = external_key(kms)
    import_material(kms, key, os.urandom(32), ExpirationModel="KEY_MATERIAL_DOES_NOT_EXPIRE")
    kms.schedule_key_deletion(KeyId=key, PendingWindowInDays=7)
    assert error_code(params, kms, key) == "KMSInvalidStateException"
    kms.delete_imported_key_material(KeyId=key)
    assert state(kms, key) == "PendingDeletion"
    kms.cancel_key_deletion(KeyId=key)
    assert state(kms, key) == "PendingImport"  # no material: not Disabled


def test_delete_imported_material_of_a_pending_import_key(kms):
    key = external_key(kms)
    kms.delete_imported_key_material(KeyId=key)  # nothing to delete: AWS accepts it
    assert state(kms, key) == "PendingImport"


def test_material_with_a_valid_to_expires(servers):
    server = servers.start(name="valid-to", KEYLEDGER_MAINTENANCE_INTERVAL="0")
    kms = server.client()
    key = external_key(kms)
    keeper = external_key(kms)  # no expiry: untouched by maintenance
    valid_to = datetime.now(timezone.utc) + timedelta(days=2)
    import_material(kms, key, os.urandom(32), ValidTo=valid_to, ExpirationModel="KEY_MATERIAL_EXPIRES")
    import_material(kms, keeper, os.urandom(32), ExpirationModel="KEY_MATERIAL_DOES_NOT_EXPIRE")
    meta = kms.describe_key(KeyId=key)["KeyMetadata"]
    assert meta["KeyState"] == "Enabled"
    assert meta["ExpirationModel"] == "KEY_MATERIAL_EXPIRES"
    assert abs(meta["ValidTo"].astimezone(timezone.utc) - valid_to) <= timedelta(seconds=1)
    blob = kms.encrypt(KeyId=key, Plaintext=b"until it expires")["CiphertextBlob"]

    assert maintenance(server)["expired"] == []  # not yet
    advance_days(server, 3)
    report = maintenance(server)
    assert report["expired"] == [key]
    assert maintenance(server)["expired"] == []

    meta = kms.describe_key(KeyId=key)["KeyMetadata"]
    assert meta["KeyState"] == "PendingImport"
    assert "CurrentKeyMaterialId" not in meta
    assert error_code(kms.decrypt, CiphertextBlob=blob) == "KMSInvalidStateException"
    assert state(kms, keeper) == "Enabled"


def test_valid_to_rules(kms):
    key = external_key(kms)
    material = os.urandom(32)
    past = datetime.now(timezone.utc) - timedelta(hours=1)
    assert error_code(import_material, kms, key, material, ValidTo=past,
                      ExpirationModel="KEY_MATERIAL_EXPIRES") == "ValidationException"
    too_late = datetime.now(timezone.utc) + timedelta(days=400)
    assert error_code(import_material, kms, key, material, ValidTo=too_late,
                      ExpirationModel="KEY_MATERIAL_EXPIRES") == "ValidationException"
    assert error_code(import_material, kms, key, material,
                      ExpirationModel="KEY_MATERIAL_EXPIRES") == "ValidationException"
    assert error_code(import_material, kms, key, material, ValidTo=datetime.now(timezone.utc) + timedelta(days=3),
                      ExpirationModel="KEY_MATERIAL_DOES_NOT_EXPIRE") == "ValidationException"
    assert state(kms, key) == "PendingImport"


# -- HMAC and asymmetric keys with imported material ---------------------------------------------------------

def test_hmac_key_with_imported_material(kms):
    key = external_key(kms, KeySpec="HMAC_256", KeyUsage="GENERATE_VERIFY_MAC")
    material = os.urandom(32)
    import_material(kms, key, material, "RSA_AES_KEY_WRAP_SHA_256", "RSA_2048",
                    ExpirationModel="KEY_MATERIAL_DOES_NOT_EXPIRE")
    assert state(kms, key) == "Enabled"
    message = b"message authenticated with imported HMAC material"
    expected = hmac.new(material, message, hashlib.sha256).digest()
    response = kms.generate_mac(KeyId=key, Message=message, MacAlgorithm="HMAC_SHA_256")
    assert response["Mac"] == expected
    assert kms.verify_mac(KeyId=key, Message=message, Mac=expected, MacAlgorithm="HMAC_SHA_256")["MacValid"] is True


def test_ecc_signing_key_with_imported_private_key(kms):
    key = external_key(kms, KeySpec="ECC_NIST_P256", KeyUsage="SIGN_VERIFY")
    private = ec.generate_private_key(ec.SECP256R1())
    pkcs8 = private.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption())
    import_material(kms, key, pkcs8, "RSA_AES_KEY_WRAP_SHA_256", "RSA_2048",
                    ExpirationModel="KEY_MATERIAL_DOES_NOT_EXPIRE")
    assert state(kms, key) == "Enabled"
    local_public = private.public_key().public_bytes(serialization.Encoding.DER,
                                                     serialization.PublicFormat.SubjectPublicKeyInfo)
    got = kms.get_public_key(KeyId=key)
    assert got["PublicKey"] == local_public
    assert got["SigningAlgorithms"] == ["ECDSA_SHA_256"]

    message = b"signed by an imported P-256 key"
    signature = kms.sign(KeyId=key, Message=message, SigningAlgorithm="ECDSA_SHA_256")["Signature"]
    private.public_key().verify(signature, message, ec.ECDSA(hashes.SHA256()))  # raises if invalid
    local_signature = private.sign(message, ec.ECDSA(hashes.SHA256()))
    assert kms.verify(KeyId=key, Message=message, Signature=local_signature,
                      SigningAlgorithm="ECDSA_SHA_256")["SignatureValid"] is True


def test_imported_private_key_of_the_wrong_curve_is_refused(kms):
    key = external_key(kms, KeySpec="ECC_NIST_P256", KeyUsage="SIGN_VERIFY")
    wrong = ec.generate_private_key(ec.SECP384R1()).private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    with pytest.raises(ClientError) as info:
        import_material(kms, key, wrong, "RSA_AES_KEY_WRAP_SHA_256", "RSA_2048",
                        ExpirationModel="KEY_MATERIAL_DOES_NOT_EXPIRE")
    assert code(info.value) in ("ValidationException", "IncorrectKeyMaterialException", "InvalidCiphertextException")
    assert state(kms, key) == "PendingImport"
