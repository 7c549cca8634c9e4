"""Identity policies: the IAM grammar of domain/policy/document.py (no Principal, Resource required, unique
alphanumeric Sids, other services' actions allowed), IAM's character set, and IAM's size count."""
from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.errors import MalformedPolicyDocumentError
from domain.policy.document import parse_policy, policy_size


def doc(*statements: dict, ensure_ascii: bool = False) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)}, ensure_ascii=ensure_ascii)


ALLOW = {"Effect": "Allow", "Action": "kms:Encrypt", "Resource": "*"}


@pytest.mark.parametrize("text", [
    doc(ALLOW),
    doc({"Sid": "Keys1", "Effect": "Allow", "Action": ["kms:Encrypt", "kms:Decrypt", "s3:GetObject"],
         "Resource": ["arn:aws:kms:us-east-1:111122223333:key/*", "arn:aws:s3:::bucket/*"]}),
    doc({"Effect": "Deny", "NotAction": "kms:Describe*", "NotResource": "arn:aws:kms:*:*:alias/*"}),
    doc({"Effect": "Allow", "Action": "*", "Resource": "*",
         "Condition": {"StringEquals": {"kms:CallerAccount": "111122223333"}}}),
    json.dumps({"Version": "2008-10-17", "Id": "p", "Statement": ALLOW}),
    doc({**ALLOW, "Sid": "Caf\u00e9"}),  # Latin-1 letters are within IAM's character set
])
def test_valid_identity_policies_parse(text):
    assert parse_policy(text, require_principal=False).statements


@pytest.mark.parametrize("text, message", [
    (doc({**ALLOW, "Sid": "quote\u2019s"}), "U+2019 at position"),
    (doc({**ALLOW, "Sid": "\U0001F511"}), "U+1F511"),
    (doc({**ALLOW, "Sid": "quote\u2019s"}, ensure_ascii=True), "U+2019, written as a JSON escape"),
    (doc(ALLOW) + "\x00", "U+0000"),
    (doc({**ALLOW, "Principal": {"AWS": "111122223333"}}), "must not name a Principal"),
    (doc({"Effect": "Allow", "Action": "kms:Encrypt"}), "needs 'Resource' or 'NotResource'"),
    (doc({**ALLOW, "Resource": "my-key"}), "use \"*\" or an ARN"),
    (doc({**ALLOW, "Action": "kms:Encryptt"}), "unknown action 'kms:Encryptt'"),
], ids=["curly-quote", "emoji", "escaped", "nul", "principal", "no-resource", "bad-resource", "typo"])
def test_identity_policies_are_refused_with_the_reason(text, message):
    with pytest.raises(MalformedPolicyDocumentError) as info:
        parse_policy(text, require_principal=False)
    assert message in info.value.message


def test_key_policies_keep_their_own_character_rules():
    # The character check is IAM's; KMS key policies (require_principal) do not apply it.
    text = json.dumps({"Version": "2012-10-17", "Statement": [
        {"Sid": "Allow \u2019s", "Effect": "Allow", "Principal": {"AWS": "111122223333"}, "Action": "kms:*",
         "Resource": "*"}]})
    assert parse_policy(text).statements


@given(st.text(st.sampled_from(" \t\r\nab{}\":,"), max_size=200))
def test_policy_size_counts_everything_but_white_space(text):
    assert policy_size(text) == len("".join(text.split()))
