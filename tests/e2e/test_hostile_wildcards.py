"""Policies whose wildcards froze the server through Python's backtracking regular expressions (issue 11,
measurement 2) are answered like any other: the calls complete, with the verdict IAM gives. No timing is
asserted; the client's 30 s read timeout is far above a normal answer and far below what the old matcher
took (4.1 s for 600 dashes, growing with the fourth power of the length; forever for 12 stars)."""
from __future__ import annotations

import json

import pytest
from botocore.exceptions import ClientError

from tests.e2e.helpers import error_code
from tests.servers import ACCOUNT_ID

ROOT = f"arn:aws:iam::{ACCOUNT_ID}:root"


def key_policy(encrypt: dict) -> str:
    """The account root may do everything but Encrypt outright; Encrypt only as the given statement says."""
    return json.dumps({"Version": "2012-10-17", "Statement": [
        {"Sid": "Admin", "Effect": "Allow", "Principal": {"AWS": ROOT}, "NotAction": "kms:Encrypt", "Resource": "*"},
        {"Sid": "Encrypt", "Effect": "Allow", "Principal": {"AWS": ROOT}, "Resource": "*", **encrypt},
    ]})


def like(pattern: str) -> dict:
    return {"Action": "kms:Encrypt", "Condition": {"StringLike": {"kms:EncryptionContext:file": pattern}}}


@pytest.mark.parametrize("pattern, refused, allowed", [
    ("*-*-*-*.json", "-" * 600, "a-b-c-d.json"),  # the measured freeze
    ("*-*-*-*.json", "-" * 8000, "-" * 8000 + ".json"),
    ("*" * 5000, None, "-" * 8000),  # 5,000 stars kept the process at 100 % CPU past SIGTERM
    ("*" * 5000 + "x", "-" * 8000, "-" * 8000 + "x"),
    ("*-" * 2000 + "*.json", "-" * 8000, "-" * 2000 + ".json"),
])
def test_star_patterns_against_long_context_values_are_answered(kms, pattern, refused, allowed):
    key_id = kms.create_key(Policy=key_policy(like(pattern)))["KeyMetadata"]["KeyId"]
    if refused is not None:
        assert error_code(kms.encrypt, KeyId=key_id, Plaintext=b"x",
                          EncryptionContext={"file": refused}) == "AccessDeniedException"
    blob = kms.encrypt(KeyId=key_id, Plaintext=b"x", EncryptionContext={"file": allowed})["CiphertextBlob"]
    assert kms.decrypt(CiphertextBlob=blob, EncryptionContext={"file": allowed})["Plaintext"] == b"x"


def test_an_action_of_many_stars_is_checked_and_matched(kms):
    key_id = kms.create_key()["KeyMetadata"]["KeyId"]
    # No KMS action ends in "x": the policy is refused (the old check never finished deciding that).
    no_action = key_policy({"Action": "kms:" + "*" * 12 + "x"})
    assert error_code(kms.put_key_policy, KeyId=key_id, PolicyName="default",
                      Policy=no_action) == "MalformedPolicyDocumentException"
    # "kms:****...t" names Encrypt (and Decrypt, ReEncrypt...): stored, and used on every call.
    kms.put_key_policy(KeyId=key_id, PolicyName="default", Policy=key_policy({"Action": "kms:" + "*" * 12 + "t"}))
    assert kms.encrypt(KeyId=key_id, Plaintext=b"x")["KeyId"].endswith(key_id)
    kms.put_key_policy(KeyId=key_id, PolicyName="default", Policy=key_policy({"Action": "kms:" + "*" * 12 + "y"}))
    assert error_code(kms.encrypt, KeyId=key_id, Plaintext=b"x") == "AccessDeniedException"


def test_a_context_too_large_to_bound_evaluation_is_refused_before_authorization(kms):
    """Conditions on the context cost (pattern length)·(context length): the context is held to 8 KiB before
    any policy is evaluated, on the asymmetric Decrypt path too (it used to be checked only after)."""
    key_id = kms.create_key(KeySpec="RSA_2048", KeyUsage="ENCRYPT_DECRYPT")["KeyMetadata"]["KeyId"]
    with pytest.raises(ClientError) as info:
        kms.decrypt(KeyId=key_id, CiphertextBlob=b"x" * 256, EncryptionAlgorithm="RSAES_OAEP_SHA_256",
                    EncryptionContext={"file": "-" * 9000})
    assert info.value.response["Error"]["Code"] == "ValidationException"
    assert "too large" in info.value.response["Error"]["Message"]
