"""PutKeyPolicy / ListKeyPolicies / CreateKey policies: AWS's validation and lockout safety check."""
from __future__ import annotations

import json

import pytest
from botocore.exceptions import ClientError

ROOT = "arn:aws:iam::111122223333:root"


def policy(principal: str = ROOT, action: str = "kms:*", version: str | None = "2012-10-17") -> str:
    document = {"Statement": [{"Sid": "Main", "Effect": "Allow", "Principal": {"AWS": principal},
                               "Action": action, "Resource": "*"}]}
    if version:
        document["Version"] = version
    return json.dumps(document)


def refused(call, **kwargs) -> ClientError:
    with pytest.raises(ClientError) as info:
        call(**kwargs)
    return info.value


def test_put_get_and_list_key_policies(kms):
    key_id = kms.create_key()["KeyMetadata"]["KeyId"]
    new = policy(action="kms:*")
    kms.put_key_policy(KeyId=key_id, PolicyName="default", Policy=new)
    assert kms.get_key_policy(KeyId=key_id)["Policy"] == new
    listed = kms.list_key_policies(KeyId=key_id)
    assert listed["PolicyNames"] == ["default"] and listed["Truncated"] is False


@pytest.mark.parametrize("bad, words", [
    (policy(version=None), "Version"),
    (policy(action="kms:Nope"), "kms:Nope"),
    (policy(action="s3:GetObject"), "s3:GetObject"),
    ('{"Version": "2012-10-17", "Statement": []}', "Statement"),
])
def test_malformed_policies_are_refused_with_a_reason(kms, bad, words):
    key_id = kms.create_key()["KeyMetadata"]["KeyId"]
    before = kms.get_key_policy(KeyId=key_id)["Policy"]
    error = refused(kms.put_key_policy, KeyId=key_id, PolicyName="default", Policy=bad)
    assert error.response["Error"]["Code"] == "MalformedPolicyDocumentException"
    assert words in error.response["Error"]["Message"]
    assert kms.get_key_policy(KeyId=key_id)["Policy"] == before


def test_lockout_safety_check(kms):
    key_id = kms.create_key()["KeyMetadata"]["KeyId"]
    locks_out = policy(principal="arn:aws:iam::111122223333:user/someone-else")
    error = refused(kms.put_key_policy, KeyId=key_id, PolicyName="default", Policy=locks_out)
    assert error.response["Error"]["Code"] == "MalformedPolicyDocumentException"
    assert "will not allow you to update the key policy" in error.response["Error"]["Message"]
    assert "kms:PutKeyPolicy" in error.response["Error"]["Message"]
    kms.put_key_policy(KeyId=key_id, PolicyName="default", Policy=locks_out, BypassPolicyLockoutSafetyCheck=True)
    # What the check warned about: the policy is in force, and the account root is now locked out of the key.
    for call in (kms.get_key_policy, kms.put_key_policy):
        args = {"Policy": locks_out} if call == kms.put_key_policy else {}
        error = refused(call, KeyId=key_id, PolicyName="default", **args)
        assert error.response["Error"]["Code"] == "AccessDeniedException"

    error = refused(kms.create_key, Policy=locks_out)
    assert error.response["Error"]["Code"] == "MalformedPolicyDocumentException"
    assert kms.create_key(Policy=locks_out, BypassPolicyLockoutSafetyCheck=True)["KeyMetadata"]["KeyId"]


def test_only_the_default_policy_name(kms):
    key_id = kms.create_key()["KeyMetadata"]["KeyId"]
    error = refused(kms.put_key_policy, KeyId=key_id, PolicyName="other", Policy=policy())
    assert error.response["Error"]["Code"] == "ValidationException"
