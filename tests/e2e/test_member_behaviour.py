"""Behaviour tests for request members no other test exercised (decision 85): GrantTokens and DryRun on every
operation that takes them, DryRunModifiers, ListKeys ResourceOwners, the members keyledger refuses for some
values, and the paging members of the list operations. tests/e2e/test_member_accounting.py names these."""
from __future__ import annotations

import hashlib
from typing import Any, Callable

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from domain.crypto.asymmetric import POST_QUANTUM_SUPPORTED
from tests.e2e.helpers import create_key, error_code
from tests.servers import ACCOUNT_ID

ROOT_ARN = f"arn:aws:iam::{ACCOUNT_ID}:root"
BAD_TOKEN = "bm90LWEtdG9rZW4"


@pytest.fixture(scope="module")
def keys(shared_server) -> Callable[[str], str]:
    """One key per kind per server, made on first use."""
    kms = shared_server.client()
    kinds = {"symmetric": {}, "rsa-sign": {"KeySpec": "RSA_2048", "KeyUsage": "SIGN_VERIFY"},
             "hmac": {"KeySpec": "HMAC_256", "KeyUsage": "GENERATE_VERIFY_MAC"},
             "ecdh": {"KeySpec": "ECC_NIST_P256", "KeyUsage": "KEY_AGREEMENT"},
             "ml-kem": {"KeySpec": "ML_KEM_768", "KeyUsage": "ENCAPSULATE_DECAPSULATE"}}
    made: dict[str, str] = {}

    def get(kind: str) -> str:
        if kind not in made:
            made[kind] = create_key(kms, **kinds[kind])["KeyId"]
        return made[kind]
    return get


def _peer_public_key() -> bytes:
    return ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def request_for(kms: Any, keys: Callable[[str], str], operation: str) -> tuple[Callable, dict[str, Any], str]:
    """(client method, members of a request that succeeds, the key it uses) for ``operation``."""
    sym = keys("symmetric")
    if operation in ("Encrypt", "Decrypt", "ReEncrypt"):
        blob = kms.encrypt(KeyId=sym, Plaintext=b"member")["CiphertextBlob"]
        return {"Encrypt": (kms.encrypt, {"KeyId": sym, "Plaintext": b"member"}, sym),
                "Decrypt": (kms.decrypt, {"CiphertextBlob": blob}, sym),
                "ReEncrypt": (kms.re_encrypt, {"CiphertextBlob": blob, "DestinationKeyId": sym}, sym)}[operation]
    if operation in ("GenerateDataKey", "GenerateDataKeyWithoutPlaintext"):
        method = kms.generate_data_key if operation == "GenerateDataKey" else kms.generate_data_key_without_plaintext
        return method, {"KeyId": sym, "KeySpec": "AES_256"}, sym
    if operation in ("GenerateDataKeyPair", "GenerateDataKeyPairWithoutPlaintext"):
        method = (kms.generate_data_key_pair if operation == "GenerateDataKeyPair"
                  else kms.generate_data_key_pair_without_plaintext)
        return method, {"KeyId": sym, "KeyPairSpec": "ECC_NIST_P256"}, sym
    if operation == "DescribeKey":
        return kms.describe_key, {"KeyId": sym}, sym
    if operation == "CreateGrant":
        return kms.create_grant, {"KeyId": sym, "GranteePrincipal": ROOT_ARN, "Operations": ["Encrypt"]}, sym
    rsa = keys("rsa-sign")
    if operation == "GetPublicKey":
        return kms.get_public_key, {"KeyId": rsa}, rsa
    if operation == "Sign":
        return kms.sign, {"KeyId": rsa, "Message": b"m", "SigningAlgorithm": "RSASSA_PSS_SHA_256"}, rsa
    if operation == "Verify":
        signature = kms.sign(KeyId=rsa, Message=b"m", SigningAlgorithm="RSASSA_PSS_SHA_256")["Signature"]
        return kms.verify, {"KeyId": rsa, "Message": b"m", "Signature": signature,
                            "SigningAlgorithm": "RSASSA_PSS_SHA_256"}, rsa
    if operation in ("GenerateMac", "VerifyMac"):
        mac_key = keys("hmac")
        mac = kms.generate_mac(KeyId=mac_key, Message=b"m", MacAlgorithm="HMAC_SHA_256")["Mac"]
        if operation == "GenerateMac":
            return kms.generate_mac, {"KeyId": mac_key, "Message": b"m", "MacAlgorithm": "HMAC_SHA_256"}, mac_key
        return kms.verify_mac, {"KeyId": mac_key, "Message": b"m", "Mac": mac, "MacAlgorithm": "HMAC_SHA_256"}, mac_key
    if operation == "DeriveSharedSecret":
        ecdh = keys("ecdh")
        return kms.derive_shared_secret, {"KeyId": ecdh, "KeyAgreementAlgorithm": "ECDH",
                                          "PublicKey": _peer_public_key()}, ecdh
    if operation in ("Encapsulate", "Decapsulate"):
        if not POST_QUANTUM_SUPPORTED.get("ML_KEM_768"):
            pytest.skip("ML-KEM is not supported by the installed cryptography")
        kem = keys("ml-kem")
        if operation == "Encapsulate":
            return kms.encapsulate, {"KeyId": kem, "EncapsulationAlgorithm": "ML_KEM"}, kem
        blob = kms.encapsulate(KeyId=kem, EncapsulationAlgorithm="ML_KEM")["SharedSecretCiphertextBlob"]
        return kms.decapsulate, {"KeyId": kem, "SharedSecretCiphertextBlob": blob,
                                 "EncapsulationAlgorithm": "ML_KEM"}, kem
    raise AssertionError(f"no request for {operation}")


TOKEN_OPERATIONS = ["CreateGrant", "Decapsulate", "Decrypt", "DeriveSharedSecret", "DescribeKey", "Encapsulate",
                    "Encrypt", "GenerateDataKey", "GenerateDataKeyPair", "GenerateDataKeyPairWithoutPlaintext",
                    "GenerateDataKeyWithoutPlaintext", "GenerateMac", "GetPublicKey", "ReEncrypt", "Sign", "Verify",
                    "VerifyMac"]
DRY_RUN_OPERATIONS = ["CreateGrant", "Decapsulate", "Decrypt", "DeriveSharedSecret", "Encapsulate", "Encrypt",
                      "GenerateDataKey", "GenerateDataKeyPair", "GenerateDataKeyPairWithoutPlaintext",
                      "GenerateDataKeyWithoutPlaintext", "GenerateMac", "ReEncrypt", "Sign", "Verify", "VerifyMac"]


@pytest.mark.parametrize("operation", TOKEN_OPERATIONS)
def test_grant_tokens_are_checked_by_every_operation_that_takes_them(kms, keys, operation):
    """GrantTokens: a token that is not one this service issued is refused; a real one is accepted."""
    method, request, key = request_for(kms, keys, operation)
    assert error_code(method, GrantTokens=[BAD_TOKEN], **request) == "InvalidGrantTokenException"
    grant_operation = {"ReEncrypt": "ReEncryptFrom"}.get(operation, operation)
    token = kms.create_grant(KeyId=key, GranteePrincipal=ROOT_ARN, Operations=[grant_operation])["GrantToken"]
    method(GrantTokens=[token], **request)


@pytest.mark.parametrize("operation", DRY_RUN_OPERATIONS)
def test_dry_run_answers_dry_run_operation_on_every_operation_that_takes_it(kms, keys, operation):
    """DryRun: every check runs, nothing is done, DryRunOperationException answers."""
    method, request, key = request_for(kms, keys, operation)
    before = kms.list_grants(KeyId=key)["Grants"]
    assert error_code(method, DryRun=True, **request) == "DryRunOperationException"
    assert kms.list_grants(KeyId=key)["Grants"] == before
    method(DryRun=False, **request)


def test_decrypt_dry_run_modifiers_ignore_ciphertext(kms, keys):
    """DryRunModifiers IGNORE_CIPHERTEXT: permissions on the named key are tested without any ciphertext."""
    sym = keys("symmetric")
    assert error_code(kms.decrypt, KeyId=sym, DryRun=True, DryRunModifiers=["IGNORE_CIPHERTEXT"]) == \
        "DryRunOperationException"
    # A ciphertext sent anyway is not read: garbage does not matter.
    assert error_code(kms.decrypt, KeyId=sym, CiphertextBlob=b"garbage", DryRun=True,
                      DryRunModifiers=["IGNORE_CIPHERTEXT"]) == "DryRunOperationException"
    # Without the ciphertext the key must be named.
    assert error_code(kms.decrypt, DryRun=True, DryRunModifiers=["IGNORE_CIPHERTEXT"]) == "ValidationException"
    # Without DryRun the modifier would be ignored and a real decryption run: refused (decision 87).
    blob = kms.encrypt(KeyId=sym, Plaintext=b"x")["CiphertextBlob"]
    assert error_code(kms.decrypt, CiphertextBlob=blob, DryRunModifiers=["IGNORE_CIPHERTEXT"]) == "ValidationException"
    # The key's state and usage are still checked.
    signing = keys("rsa-sign")
    assert error_code(kms.decrypt, KeyId=signing, DryRun=True, DryRunModifiers=["IGNORE_CIPHERTEXT"]) == \
        "InvalidKeyUsageException"
    disabled = create_key(kms)["KeyId"]
    kms.disable_key(KeyId=disabled)
    assert error_code(kms.decrypt, KeyId=disabled, DryRun=True, DryRunModifiers=["IGNORE_CIPHERTEXT"]) == \
        "DisabledException"
    assert error_code(kms.decrypt, KeyId="alias/none-such-" + hashlib.md5(sym.encode()).hexdigest()[:8],
                      DryRun=True, DryRunModifiers=["IGNORE_CIPHERTEXT"]) == "NotFoundException"


def test_re_encrypt_dry_run_modifiers_ignore_ciphertext(kms, keys):
    sym = keys("symmetric")
    other = create_key(kms)["KeyId"]
    assert error_code(kms.re_encrypt, SourceKeyId=sym, DestinationKeyId=other, DryRun=True,
                      DryRunModifiers=["IGNORE_CIPHERTEXT"]) == "DryRunOperationException"
    assert error_code(kms.re_encrypt, DestinationKeyId=other, DryRun=True,
                      DryRunModifiers=["IGNORE_CIPHERTEXT"]) == "ValidationException"
    kms.disable_key(KeyId=other)
    assert error_code(kms.re_encrypt, SourceKeyId=sym, DestinationKeyId=other, DryRun=True,
                      DryRunModifiers=["IGNORE_CIPHERTEXT"]) == "DisabledException"


def test_list_keys_resource_owners(kms, keys):
    """ResourceOwners: SELF lists the account's keys; OTHER_ACCOUNTS_VIA_RAM alone lists the keys shared through
    AWS RAM, and keyledger has no RAM, so none (decision 86)."""
    sym = keys("symmetric")
    mine = {k["KeyId"] for k in kms.list_keys(ResourceOwners=["SELF"], Limit=1000)["Keys"]}
    assert sym in mine
    both = {k["KeyId"] for k in kms.list_keys(ResourceOwners=["SELF", "OTHER_ACCOUNTS_VIA_RAM"], Limit=1000)["Keys"]}
    assert sym in both
    shared = kms.list_keys(ResourceOwners=["OTHER_ACCOUNTS_VIA_RAM"])
    assert shared["Keys"] == [] and shared["Truncated"] is False


def test_create_key_multi_region_false_and_custom_key_store_id(kms):
    meta = create_key(kms, MultiRegion=False)
    assert meta["MultiRegion"] is False
    assert error_code(kms.create_key, CustomKeyStoreId="cks-1234567890abcdef0") == "CustomKeyStoreNotFoundException"


def test_list_grants_and_policies_and_retirable_grants_page(kms, keys):
    """Limit and Marker of ListGrants, ListKeyPolicies and ListRetirableGrants."""
    key = create_key(kms)["KeyId"]
    retiring = f"arn:aws:iam::{ACCOUNT_ID}:role/pager-{key[:8]}"
    for _ in range(3):
        kms.create_grant(KeyId=key, GranteePrincipal=ROOT_ARN, Operations=["Encrypt"], RetiringPrincipal=retiring)
    first = kms.list_grants(KeyId=key, Limit=2)
    assert len(first["Grants"]) == 2 and first["Truncated"] is True
    rest = kms.list_grants(KeyId=key, Limit=2, Marker=first["NextMarker"])
    assert len(rest["Grants"]) == 1 and rest["Truncated"] is False
    retirable = kms.list_retirable_grants(RetiringPrincipal=retiring, Limit=1)
    assert len(retirable["Grants"]) == 1 and retirable["Truncated"] is True
    more = kms.list_retirable_grants(RetiringPrincipal=retiring, Limit=5, Marker=retirable["NextMarker"])
    assert len(more["Grants"]) == 2
    policies = kms.list_key_policies(KeyId=key, Limit=1)
    assert policies["PolicyNames"] == ["default"] and policies["Truncated"] is False
    assert error_code(kms.list_key_policies, KeyId=key, Marker="not-a-marker") == "InvalidMarkerException"
