"""Refusals AWS makes and keyledger must make alike (decision 92): duplicate tag keys in one call, keys of the wrong
usage, and algorithms a key spec does not support."""
from __future__ import annotations

from tests.e2e.helpers import create_key, error_code


def test_duplicate_tag_keys_in_one_call_are_refused_and_change_nothing(kms):
    twice = [{"TagKey": "team", "TagValue": "a"}, {"TagKey": "team", "TagValue": "b"}]
    before = {k["KeyId"] for k in kms.list_keys(Limit=1000)["Keys"]}
    assert error_code(kms.create_key, Tags=twice) == "TagException"
    assert {k["KeyId"] for k in kms.list_keys(Limit=1000)["Keys"]} == before
    key = create_key(kms)["KeyId"]
    assert error_code(kms.tag_resource, KeyId=key, Tags=twice) == "TagException"
    assert kms.list_resource_tags(KeyId=key)["Tags"] == []
    # Distinct keys are fine, and a key already on the key is simply overwritten (one per call).
    kms.tag_resource(KeyId=key, Tags=[{"TagKey": "team", "TagValue": "a"}])
    kms.tag_resource(KeyId=key, Tags=[{"TagKey": "team", "TagValue": "b"}])
    assert kms.list_resource_tags(KeyId=key)["Tags"] == [{"TagKey": "team", "TagValue": "b"}]


def test_wrong_usage_and_unsupported_algorithms_are_invalid_key_usage(kms):
    symmetric = create_key(kms)["KeyId"]
    signing = create_key(kms, KeySpec="ECC_NIST_P256", KeyUsage="SIGN_VERIFY")["KeyId"]
    assert error_code(kms.sign, KeyId=symmetric, Message=b"m", SigningAlgorithm="ECDSA_SHA_256") == \
        "InvalidKeyUsageException"
    assert error_code(kms.encrypt, KeyId=signing, Plaintext=b"m") == "InvalidKeyUsageException"
    assert error_code(kms.generate_data_key, KeyId=signing, KeySpec="AES_256") == "InvalidKeyUsageException"
    assert error_code(kms.sign, KeyId=signing, Message=b"m", SigningAlgorithm="RSASSA_PSS_SHA_256") == \
        "InvalidKeyUsageException"
    assert error_code(kms.generate_mac, KeyId=symmetric, Message=b"m", MacAlgorithm="HMAC_SHA_256") == \
        "InvalidKeyUsageException"
    assert error_code(kms.encrypt, KeyId=symmetric, Plaintext=b"m", EncryptionAlgorithm="RSAES_OAEP_SHA_256") == \
        "InvalidKeyUsageException"
