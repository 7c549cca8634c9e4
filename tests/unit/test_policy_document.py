"""Policy documents are refused as AWS refuses them, with a message that names the statement and the value
at fault; the policies AWS itself writes parse."""
from __future__ import annotations

import json

import pytest

from domain.errors import MalformedPolicyDocumentError
from domain.policy.conditions import Condition
from domain.policy.default_policy import default_key_policy
from domain.policy.document import KMS_ACTIONS, Principal, canonical_action, parse_policy

ACCOUNT = "111122223333"
ROOT = f"arn:aws:iam::{ACCOUNT}:root"
KEY_ARN = f"arn:aws:kms:us-east-1:{ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ab"


def doc(*statements: dict, **top: object) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements), **top})


def stmt(**fields: object) -> dict:
    base: dict = {"Effect": "Allow", "Principal": {"AWS": ROOT}, "Action": "kms:*", "Resource": "*"}
    base.update(fields)
    return {key: value for key, value in base.items() if value is not None}


# The console's default policy for a key with administrators and users (Developer Guide, "Default key policy").
CONSOLE_POLICY = json.dumps({
    "Id": "key-consolepolicy-3", "Version": "2012-10-17",
    "Statement": [
        {"Sid": "Enable IAM User Permissions", "Effect": "Allow", "Principal": {"AWS": ROOT},
         "Action": "kms:*", "Resource": "*"},
        {"Sid": "Allow access for Key Administrators", "Effect": "Allow",
         "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:role/KMSKeyAdmins"},
         "Action": ["kms:Create*", "kms:Describe*", "kms:Enable*", "kms:List*", "kms:Put*", "kms:Update*",
                    "kms:Revoke*", "kms:Disable*", "kms:Get*", "kms:Delete*", "kms:TagResource",
                    "kms:UntagResource", "kms:ScheduleKeyDeletion", "kms:CancelKeyDeletion",
                    "kms:RotateKeyOnDemand"], "Resource": "*"},
        {"Sid": "Allow use of the key", "Effect": "Allow",
         "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:role/KMSKeyUsers"},
         "Action": ["kms:Encrypt", "kms:Decrypt", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:DescribeKey"],
         "Resource": "*"},
        {"Sid": "Allow attachment of persistent resources", "Effect": "Allow",
         "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:role/KMSKeyUsers"},
         "Action": ["kms:CreateGrant", "kms:ListGrants", "kms:RevokeGrant"], "Resource": "*",
         "Condition": {"Bool": {"kms:GrantIsForAWSResource": True}}},
    ],
})


def test_the_default_key_policy_parses():
    document = parse_policy(default_key_policy(ACCOUNT))
    assert document.version == "2012-10-17" and document.id == "key-default-1"
    (statement,) = document.statements
    assert statement.sid == "Enable IAM User Permissions" and statement.label == "'Enable IAM User Permissions'"
    assert statement.effect == "Allow" and statement.actions == ("kms:*",) and statement.resources == ("*",)
    assert statement.principals == (Principal("AWS", ROOT),)


def test_the_console_default_policy_parses_with_its_condition():
    document = parse_policy(CONSOLE_POLICY)
    assert [s.index for s in document.statements] == [1, 2, 3, 4]
    assert document.statements[3].conditions == (Condition("Bool", "kms:GrantIsForAWSResource", ("true",)),)


def test_documents_are_frozen_and_hashable():
    first, second = parse_policy(CONSOLE_POLICY), parse_policy(CONSOLE_POLICY)
    assert first == second and hash(first) == hash(second)
    with pytest.raises(AttributeError):
        first.statements[0].effect = "Deny"  # type: ignore[misc]


@pytest.mark.parametrize("text", [
    json.dumps({"Version": "2008-10-17", "Statement": stmt()}),  # a single statement object, older version
    doc(stmt(Principal="*")),
    doc(stmt(Principal={"AWS": "*"})),
    doc(stmt(Principal={"AWS": ACCOUNT})),
    doc(stmt(Principal={"AWS": [f"arn:aws:iam::{ACCOUNT}:user/ops/alice", f"arn:aws:iam::{ACCOUNT}:role/app"]})),
    doc(stmt(Principal={"AWS": f"arn:aws:sts::{ACCOUNT}:assumed-role/app/session-1"})),
    doc(stmt(Principal={"Service": "logs.us-east-1.amazonaws.com"})),
    doc(stmt(Action=["KMS:encrypt", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Get*", "*"])),
    doc(stmt(Action=None, NotAction="kms:ScheduleKeyDeletion")),
    doc(stmt(Resource=None)),  # in a key policy the resource is the key itself
    doc(stmt(Effect="Deny", Principal=None, NotPrincipal={"AWS": ROOT})),
    doc(stmt(Condition={"ForAnyValue:StringLikeIfExists": {"kms:EncryptionContextKeys": ["a*", "b?"]},
                        "NumericLessThan": {"aws:MultiFactorAuthAge": 3600},
                        "DateGreaterThan": {"aws:CurrentTime": "2024-01-01T00:00:00Z"},
                        "IpAddress": {"aws:SourceIp": ["10.0.0.0/8", "2001:db8::/32"]},
                        "Null": {"kms:ViaService": "true"}, "ArnLike": {"aws:PrincipalArn": "arn:aws:iam::*:role/*"}})),
], ids=["object-statement", "star", "aws-star", "account-id", "user-and-role", "assumed-role", "service",
        "action-forms", "not-action", "no-resource", "not-principal-deny", "conditions"])
def test_valid_key_policies_parse(text):
    assert parse_policy(text).statements


def test_identity_policies_have_no_principal_and_may_name_other_services():
    text = doc({"Sid": "UseKey", "Effect": "Allow", "Action": ["kms:Encrypt", "s3:GetObject"], "Resource": KEY_ARN})
    (statement,) = parse_policy(text, require_principal=False).statements
    assert statement.principals is None and statement.resources == (KEY_ARN,)


def test_canonical_action_and_the_action_list():
    assert canonical_action("KMS:generatedatakeypairwithoutplaintext") == "kms:GenerateDataKeyPairWithoutPlaintext"
    assert canonical_action("kms:ReEncrypt") is None  # the API is authorized as ReEncryptFrom / ReEncryptTo
    assert {"kms:ReEncryptFrom", "kms:ReEncryptTo", "kms:CreateGrant", "kms:DeriveSharedSecret"} <= KMS_ACTIONS


MALFORMED = [
    ("not-json", "{not json", "not valid JSON"),
    ("array", "[]", "must be a JSON object"),
    ("too-large", doc(stmt(Sid="x" * 33000)), "larger than 32768 bytes"),
    ("nested-arrays", "[" * 3000 + "]" * 3000, "nested too deeply"),
    ("nested-condition", doc(stmt(Condition=json.loads('{"a": ' * 500 + "1" + "}" * 500))),
     "unknown condition operator 'a'"),
    ("no-version", json.dumps({"Statement": [stmt()]}), "needs 'Version'"),
    ("bad-version", doc(stmt()).replace("2012-10-17", "2020-01-01"), '"2020-01-01"'),
    ("unknown-top-level", doc(stmt(), Extra=1), "unknown element 'Extra'"),
    ("id-not-string", doc(stmt(), Id=5), "'Id' must be a string"),
    ("no-statement", json.dumps({"Version": "2012-10-17"}), "needs a 'Statement'"),
    ("empty-statement", doc(), "needs a 'Statement'"),
    ("statement-not-object", doc(stmt(), 5), "Statement 2 must be a JSON object"),
    ("sid-not-string", doc(stmt(Sid=7)), "Statement 1: 'Sid' must be a string"),
    ("bad-effect", doc(stmt(Sid="S", Effect="allow")), "Statement 'S' needs 'Effect'"),
    ("unknown-element", doc(stmt(Sid="S", Resources="*")), "Statement 'S' has an unknown element 'Resources'"),
    ("no-action", doc(stmt(Action=None)), "Statement 1 needs 'Action' or 'NotAction'"),
    ("action-and-not-action", doc(stmt(NotAction="kms:Decrypt")), "has both 'Action' and 'NotAction'"),
    ("unknown-action-by-sid", doc(stmt(Sid="Bad", Action=["kms:Encrypt", "kms:Encrypts"])),
     "Statement 'Bad' has an unknown action 'kms:Encrypts'"),
    ("unknown-action-by-index", doc(stmt(), stmt(Action="kms:Frobnicate")),
     "Statement 2 has an unknown action 'kms:Frobnicate'"),
    ("wildcard-matching-nothing", doc(stmt(Action="kms:Frob*")), "unknown action 'kms:Frob*'"),
    ("reencrypt-is-not-an-action", doc(stmt(Action="kms:ReEncrypt")), "unknown action 'kms:ReEncrypt'"),
    ("no-service-prefix", doc(stmt(Action="Encrypt")), "unknown action 'Encrypt'"),
    ("other-service-in-key-policy", doc(stmt(Action="s3:GetObject")), "'s3:GetObject', which is not a KMS action"),
    ("empty-action", doc(stmt(Action="")), "'Action' must be a non-empty string"),
    ("empty-action-list", doc(stmt(Action=[])), "'Action' must be a non-empty string"),
    ("no-principal", doc(stmt(Principal=None)), "Statement 1 needs 'Principal' or 'NotPrincipal'"),
    ("not-principal-allow", doc(stmt(Principal=None, NotPrincipal={"AWS": ROOT})), "NotPrincipal can only be used"),
    ("federated-principal", doc(stmt(Principal={"Federated": "cognito-identity.amazonaws.com"})),
     "unsupported principal type 'Federated'"),
    ("short-account", doc(stmt(Principal={"AWS": "arn:aws:iam::1234:user/x"})),
     "invalid AWS principal 'arn:aws:iam::1234:user/x'"),
    ("principal-wildcard", doc(stmt(Principal={"AWS": f"arn:aws:iam::{ACCOUNT}:user/*"})), "wildcards are allowed only"),
    ("principal-empty-list", doc(stmt(Principal={"AWS": []})), "'Principal.AWS' must be a non-empty string"),
    ("principal-string", doc(stmt(Principal=ROOT)), "'Principal' must be \"*\" or an object"),
    ("bad-service", doc(stmt(Principal={"Service": "Not A Service"})), "invalid Service principal"),
    ("bad-resource", doc(stmt(Resource="key/abc")), "invalid Resource 'key/abc'"),
    ("resource-and-not-resource", doc(stmt(NotResource="*")), "has both 'Resource' and 'NotResource'"),
    ("condition-not-object", doc(stmt(Condition=["StringEquals"])), "'Condition' must be an object"),
    ("unknown-operator", doc(stmt(Sid="C", Condition={"StringEqualz": {"kms:CallerAccount": ACCOUNT}})),
     "Statement 'C' has an unknown condition operator 'StringEqualz'"),
    ("null-if-exists", doc(stmt(Condition={"NullIfExists": {"kms:ViaService": "true"}})),
     "unknown condition operator 'NullIfExists'"),
    ("unknown-qualifier", doc(stmt(Condition={"ForSomeValues:StringEquals": {"k": "v"}})), "unknown condition operator"),
    ("operator-block-not-object", doc(stmt(Condition={"StringEquals": "x"})), "needs an object of condition keys"),
    ("condition-value-object", doc(stmt(Condition={"StringEquals": {"k": {"v": 1}}})), "on 'k' needs a string"),
    ("condition-values-empty", doc(stmt(Condition={"StringEquals": {"k": []}})), "on 'k' needs a string"),
    ("numeric-value", doc(stmt(Condition={"NumericLessThan": {"n": "abc"}})), "'abc' is not a valid numeric value"),
    ("date-value", doc(stmt(Condition={"DateGreaterThan": {"aws:CurrentTime": "yesterday"}})), "not a valid date value"),
    ("ip-value", doc(stmt(Condition={"IpAddress": {"aws:SourceIp": "999.1.1.1/8"}})), "not a valid ip value"),
    ("bool-value", doc(stmt(Condition={"Bool": {"aws:SecureTransport": "yes"}})), "not a valid bool value"),
    ("null-value", doc(stmt(Condition={"Null": {"kms:ViaService": "maybe"}})), "Null takes 'true' or 'false'"),
    ("nan-is-not-json", doc(stmt(Condition={"NumericEquals": {"n": "NAN_HERE"}})).replace('"NAN_HERE"', "NaN"),
     "NaN is not a JSON value"),
    ("infinite-number", doc(stmt(Condition={"NumericEquals": {"n": "INF_HERE"}})).replace('"INF_HERE"', "1e999"),
     "on 'n' needs a string"),
    ("binary-value", doc(stmt(Condition={"BinaryEquals": {"k": "not base64!"}})), "not a valid binary value"),
]


@pytest.mark.parametrize("text, message", [case[1:] for case in MALFORMED], ids=[case[0] for case in MALFORMED])
def test_malformed_key_policies_name_the_problem(text, message):
    with pytest.raises(MalformedPolicyDocumentError) as excinfo:
        parse_policy(text)
    assert message in excinfo.value.message
    assert excinfo.value.code == "MalformedPolicyDocumentException"


IDENTITY_MALFORMED = [
    ("principal-in-identity-policy", doc(stmt(Resource=KEY_ARN)), "must not name a Principal"),
    ("no-resource", doc({"Effect": "Allow", "Action": "kms:*"}), "needs 'Resource' or 'NotResource'"),
    ("sid-with-space", doc({"Sid": "Use key", "Effect": "Allow", "Action": "kms:*", "Resource": "*"}),
     "letters and digits"),
    ("duplicate-sid", doc(*[{"Sid": "A", "Effect": "Allow", "Action": "kms:*", "Resource": "*"}] * 2), "unique"),
    ("bad-other-service-action", doc({"Effect": "Allow", "Action": "s3:", "Resource": "*"}), "unknown action 's3:'"),
]


@pytest.mark.parametrize("text, message", [case[1:] for case in IDENTITY_MALFORMED],
                         ids=[case[0] for case in IDENTITY_MALFORMED])
def test_malformed_identity_policies_name_the_problem(text, message):
    with pytest.raises(MalformedPolicyDocumentError) as excinfo:
        parse_policy(text, require_principal=False)
    assert message in excinfo.value.message
