"""Authorization decisions, one named scenario per row: who asks, what the policies and grants say, and the
decision with its reason. The rows follow the AWS KMS Developer Guide ("Determining access to a KMS key")
and the IAM condition operator rules."""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable

import pytest

from domain.policy.conditions import Condition
from domain.policy.default_policy import default_key_policy
from domain.policy.document import PolicyDocument, parse_policy
from domain.policy.evaluation import Decision, Grant, RequestContext, evaluate

ACCT, OTHER = "111122223333", "444455556666"
KEY_ARN = f"arn:aws:kms:us-east-1:{ACCT}:key/1234abcd-12ab-34cd-56ef-1234567890ab"
OTHER_KEY_ARN = f"arn:aws:kms:us-east-1:{ACCT}:key/0987dcba-09ba-dc87-65fe-0987654321ba"
ROOT, OTHER_ROOT = f"arn:aws:iam::{ACCT}:root", f"arn:aws:iam::{OTHER}:root"
ALICE, BOB = f"arn:aws:iam::{ACCT}:user/alice", f"arn:aws:iam::{ACCT}:user/bob"
ROLE, SESSION = f"arn:aws:iam::{ACCT}:role/service/app", f"arn:aws:sts::{ACCT}:assumed-role/app/run-42"
CAROL = f"arn:aws:iam::{OTHER}:user/carol"
DEFAULT_SID = "'Enable IAM User Permissions'"
T0 = datetime(2025, 6, 1, 12, 0, tzinfo=timezone.utc)


def allow(principal: Any = None, action: Any = "kms:*", sid: str | None = None, effect: str = "Allow", **extra) -> dict:
    statement = {"Sid": sid, "Effect": effect, "Principal": {"AWS": principal} if isinstance(principal, (str, list))
                 else principal, "Action": action, "Resource": "*", **extra}
    return {k: v for k, v in statement.items() if v is not None}


def deny(principal: Any = "*", action: Any = "kms:*", sid: str | None = None, **extra) -> dict:
    return allow(principal, action, sid, effect="Deny", **extra)


def iam(action: Any = "kms:*", sid: str | None = "UseKey", effect: str = "Allow", resource: Any = KEY_ARN, **extra) -> dict:
    return {k: v for k, v in {"Sid": sid, "Effect": effect, "Action": action, "Resource": resource, **extra}.items()
            if v is not None}


DEFAULT = json.loads(default_key_policy(ACCT))["Statement"][0]


def grant(operations: tuple[str, ...] = ("Encrypt",), grantee: str = ALICE, equals: dict | None = None,
          subset: dict | None = None, key_arn: str = KEY_ARN, grant_id: str = "g-1") -> Grant:
    return Grant(grant_id, grantee, None, frozenset(operations), equals, subset, key_arn)


def with_unknown_operator(policy: PolicyDocument) -> PolicyDocument:
    """Puts an operator IAM does not define into the last statement (the parser would refuse it, but policies
    stored before validation, or written for a newer IAM, can carry one)."""
    last = dataclasses.replace(policy.statements[-1], conditions=(Condition("StringEqualsSometimes", "k", ("v",)),))
    return dataclasses.replace(policy, statements=(*policy.statements[:-1], last))


@dataclass(frozen=True)
class Case:
    name: str
    key: list[dict]
    allowed: bool
    reason: str
    identity: list[dict] = field(default_factory=list)
    grants: tuple[Grant, ...] = ()
    principal: str = ALICE
    action: str = "kms:Encrypt"
    ec: dict | None = None
    keys: dict = field(default_factory=dict)
    transform: Callable[[PolicyDocument], PolicyDocument] | None = None


def by_key(sid: str) -> str:
    return f"allowed by key policy statement '{sid}'"


NO_POLICY = "no policy allows"
DELEGATES = f"allowed by identity policy statement 'UseKey' (key policy statement {DEFAULT_SID} delegates to IAM)"
NOT_DELEGATED = (f"no policy allows: key policy statement {DEFAULT_SID} delegates to IAM, "
                 f"and no identity policy of {ALICE} allows it")
EC = "kms:EncryptionContext:tenant"

CASES = [
    # -- the key policy alone, same account --------------------------------------------------------------
    Case("default-policy-root-user", [DEFAULT], True, f"allowed by key policy statement {DEFAULT_SID}", principal=ROOT),
    Case("user-named-directly-without-identity-policy", [allow(ALICE, "kms:Encrypt", "Alice")], True, by_key("Alice")),
    Case("user-named-directly-other-action", [allow(ALICE, "kms:Encrypt", "Alice")], False, NO_POLICY,
         action="kms:Decrypt"),
    Case("principal-star-same-account", [allow("*", "kms:Encrypt", "Anyone")], True, by_key("Anyone")),
    Case("role-names-its-sessions", [allow(ROLE, "kms:Encrypt", "App")], True, by_key("App"), principal=SESSION),
    Case("statement-without-sid-named-by-position", [allow(BOB), allow(ALICE)], True,
         "allowed by key policy statement #2"),
    Case("action-matched-case-insensitively", [allow(ALICE, "kms:GenerateDataKey*", "Gdk")], True, by_key("Gdk"),
         action="KMS:generatedatakeywithoutplaintext"),
    Case("unknown-action", [allow("*")], False, "'kms:Frobnicate' is not a KMS action", action="kms:Frobnicate"),
    Case("key-policy-resource-names-another-key", [allow(ALICE, Resource=OTHER_KEY_ARN)], False, NO_POLICY),
    Case("not-action-allows-the-rest", [allow(ALICE, sid="NotDecrypt", Action=None, NotAction="kms:Decrypt")], True,
         by_key("NotDecrypt")),
    Case("not-action-excludes-what-it-names", [allow(ALICE, sid="NotDecrypt", Action=None, NotAction="kms:Decrypt")],
         False, NO_POLICY, action="kms:Decrypt"),
    # -- delegation to IAM --------------------------------------------------------------------------------
    Case("delegation-to-identity-policy", [DEFAULT], True, DELEGATES, identity=[iam("kms:Encrypt")]),
    Case("delegation-by-bare-account-id", [allow(ACCT, sid="Account")], True,
         "allowed by identity policy statement 'UseKey' (key policy statement 'Account' delegates to IAM)",
         identity=[iam()]),
    Case("delegation-without-identity-policy", [DEFAULT], False, NOT_DELEGATED),
    Case("identity-policy-for-another-key", [DEFAULT], False, NOT_DELEGATED, identity=[iam(resource=OTHER_KEY_ARN)]),
    Case("identity-policy-resource-wildcard", [DEFAULT], True, DELEGATES,
         identity=[iam(resource=f"arn:aws:kms:*:{ACCT}:key/*")]),
    Case("missing-delegation", [allow(BOB, sid="BobOnly")], False,
         f"no policy allows: identity policy statement 'UseKey' allows it, but the key policy does not name {ALICE} "
         f"or its account root, so IAM policies cannot grant access to this key", identity=[iam()]),
    # -- explicit deny ------------------------------------------------------------------------------------
    Case("explicit-deny-in-key-policy", [DEFAULT, deny(sid="DenyX", action="kms:Encrypt")], False,
         "explicit deny in key policy statement 'DenyX'", principal=ROOT),
    Case("explicit-deny-by-position", [DEFAULT, deny(action="kms:Encrypt")], False,
         "explicit deny in key policy statement #2", principal=ROOT),
    Case("identity-deny-beats-key-policy-allow", [allow(ALICE, sid="Alice")], False,
         "explicit deny in identity policy statement 'NoEncrypt'",
         identity=[iam("kms:Encrypt", "NoEncrypt", effect="Deny", resource="*")]),
    Case("deny-naming-the-account-covers-its-users", [allow(ALICE, sid="Alice"), deny(ACCT, sid="NoOne")], False,
         "explicit deny in key policy statement 'NoOne'"),
    Case("deny-for-someone-else", [allow(ALICE, sid="Alice"), deny(BOB, sid="NoBob")], True, by_key("Alice")),
    Case("deny-beats-grant", [deny(ALICE, sid="NoAlice")], False, "explicit deny in key policy statement 'NoAlice'",
         grants=(grant(),)),
    Case("not-principal-deny-applies-to-others",
         [DEFAULT, deny(None, sid="OnlyAlice", NotPrincipal={"AWS": [ALICE, ROOT]})],
         False, "explicit deny in key policy statement 'OnlyAlice'", principal=BOB, identity=[iam()]),
    Case("not-principal-exempts-caller-and-account", [DEFAULT, deny(None, NotPrincipal={"AWS": [ALICE, ROOT]})],
         True, DELEGATES, identity=[iam()]),
    Case("not-principal-without-the-account-still-denies", [DEFAULT, deny(None, sid="D", NotPrincipal={"AWS": ALICE})],
         False, "explicit deny in key policy statement 'D'", identity=[iam()]),
    # -- grants -------------------------------------------------------------------------------------------
    Case("grant-allows", [allow(BOB)], True, "allowed by grant g-1", grants=(grant(),)),
    Case("grant-context-equals-match", [allow(BOB)], True, "allowed by grant g-1",
         grants=(grant(equals={"tenant": "a"}),), ec={"tenant": "a"}),
    Case("grant-context-equals-extra-pair", [allow(BOB)], False, NO_POLICY,
         grants=(grant(equals={"tenant": "a"}),), ec={"tenant": "a", "x": "y"}),
    Case("grant-context-equals-missing-context", [allow(BOB)], False, NO_POLICY, grants=(grant(equals={"tenant": "a"}),)),
    Case("grant-context-key-case-insensitive", [allow(BOB)], True, "allowed by grant g-1",
         grants=(grant(equals={"Tenant": "a"}),), ec={"tenant": "a"}),
    Case("grant-context-subset-match", [allow(BOB)], True, "allowed by grant g-1",
         grants=(grant(subset={"tenant": "a"}),), ec={"tenant": "a", "x": "y"}),
    Case("grant-context-subset-value-case", [allow(BOB)], False, NO_POLICY,
         grants=(grant(subset={"tenant": "A"}),), ec={"tenant": "a"}),
    Case("grant-constraints-skip-describe-key", [allow(BOB)], True, "allowed by grant g-1",
         grants=(grant(("DescribeKey",), equals={"tenant": "a"}),), action="kms:DescribeKey"),
    Case("grant-constraints-skip-asymmetric-crypto", [allow(BOB)], True, "allowed by grant g-1",
         grants=(grant(("Decrypt",), equals={"tenant": "a"}),), action="kms:Decrypt", keys={"kms:KeySpec": "RSA_2048"}),
    Case("grant-for-another-operation", [allow(BOB)], False, NO_POLICY, grants=(grant(),), action="kms:Decrypt"),
    Case("grant-of-non-grantable-operation", [allow(BOB)], False, NO_POLICY,
         grants=(grant(("ScheduleKeyDeletion",)),), action="kms:ScheduleKeyDeletion"),
    Case("grant-to-someone-else", [allow(BOB)], False, NO_POLICY, grants=(grant(grantee=BOB),)),
    Case("grant-on-another-key", [allow(BOB)], False, NO_POLICY, grants=(grant(key_arn=OTHER_KEY_ARN),)),
    Case("grant-second-matches", [allow(BOB)], True, "allowed by grant g-2",
         grants=(grant(grantee=BOB), grant(("kms:Encrypt",), grant_id="g-2"))),
    # -- cross-account ------------------------------------------------------------------------------------
    Case("cross-account-both-sides-allow", [DEFAULT, allow(OTHER_ROOT, "kms:Encrypt", "External")], True,
         "allowed by key policy statement 'External' and identity policy statement 'UseTheirKey'",
         principal=CAROL, identity=[iam("kms:Encrypt", "UseTheirKey")]),
    Case("cross-account-without-identity-allow", [DEFAULT, allow(CAROL, "kms:Encrypt", "Carol")], False,
         "no policy allows: key policy statement 'Carol' allows it, but a caller from another account also needs "
         "an identity policy of its own that allows it", principal=CAROL),
    Case("cross-account-star-needs-identity-too", [allow("*", sid="Anyone")], False,
         "no policy allows: key policy statement 'Anyone' allows it, but a caller from another account also needs "
         "an identity policy of its own that allows it", principal=CAROL),
    Case("cross-account-operation-not-allowed", [allow(OTHER_ROOT)], False,
         "kms:ScheduleKeyDeletion cannot be used on a KMS key in another account", principal=CAROL,
         identity=[iam()], action="kms:ScheduleKeyDeletion"),
    Case("cross-account-key-policy-silent", [DEFAULT], False,
         f"no policy allows: identity policy statement 'UseKey' allows it, but the key policy does not name account "
         f"{OTHER}, so IAM policies cannot grant access to this key", principal=CAROL, identity=[iam()]),
    Case("cross-account-root-caller", [allow(OTHER, "kms:GetKeyRotationStatus", "Ext")], True,
         "allowed by key policy statement 'Ext' (caller is its account's root)", principal=OTHER_ROOT,
         action="kms:GetKeyRotationStatus"),
    Case("cross-account-grant", [DEFAULT], True, "allowed by grant g-1", principal=CAROL, grants=(grant(grantee=CAROL),)),
    # -- conditions ---------------------------------------------------------------------------------------
    Case("encryption-context-value-matches", [allow(ALICE, sid="T", Condition={"StringEquals": {EC: "a"}})], True,
         by_key("T"), ec={"tenant": "a"}),
    Case("encryption-context-value-differs", [allow(ALICE, Condition={"StringEquals": {EC: "a"}})], False, NO_POLICY,
         ec={"tenant": "b"}),
    Case("string-equals-ignore-case", [allow(ALICE, sid="T", Condition={"StringEqualsIgnoreCase": {EC: "ACME"}})], True,
         by_key("T"), ec={"tenant": "acme"}),
    Case("string-not-equals-ignore-case-deny",
         [DEFAULT, deny(sid="D", Condition={"StringNotEqualsIgnoreCase": {EC: "ACME"}})],
         False, "explicit deny in key policy statement 'D'", principal=ROOT, ec={"tenant": "other"}),
    Case("string-not-equals-on-missing-key-is-true", [allow(ALICE, sid="T", Condition={"StringNotEquals": {EC: "x"}})],
         True, by_key("T")),
    Case("string-like-wildcards", [allow(ALICE, sid="T", Condition={"StringLike": {"kms:CallerAccount": "1111222233?*"}})],
         True, by_key("T")),
    Case("string-not-like-deny", [DEFAULT, deny(sid="D", Condition={"StringNotLike": {EC: ["prod-*", "stage-*"]}})],
         False, "explicit deny in key policy statement 'D'", principal=ROOT, ec={"tenant": "dev-1"}),
    Case("caller-account-condition", [allow("*", sid="Mine", Condition={"StringEquals": {"kms:CallerAccount": ACCT}})],
         True, by_key("Mine"), principal=BOB),
    Case("for-all-values-subset", [allow(ALICE, sid="T", Condition={
        "ForAllValues:StringEquals": {"kms:EncryptionContextKeys": ["tenant", "purpose"]}})], True, by_key("T"),
        ec={"tenant": "a"}),
    Case("for-all-values-extra-key", [allow(ALICE, Condition={
        "ForAllValues:StringEquals": {"kms:EncryptionContextKeys": ["tenant", "purpose"]}})], False, NO_POLICY,
        ec={"tenant": "a", "other": "b"}),
    Case("for-all-values-empty-context-is-true", [allow(ALICE, sid="T", Condition={
        "ForAllValues:StringEquals": {"kms:EncryptionContextKeys": "tenant"}})], True, by_key("T"), ec={}),
    Case("for-any-value-missing-is-false", [allow(ALICE, Condition={
        "ForAnyValue:StringEquals": {"kms:EncryptionContextKeys": "tenant"}})], False, NO_POLICY),
    Case("for-any-value-one-matches", [allow(ALICE, sid="T", Condition={
        "ForAnyValue:StringLike": {"kms:EncryptionContextKeys": "ten*"}})], True, by_key("T"),
        ec={"x": "1", "tenant": "2"}),
    Case("via-service-absent-plain-operator", [allow(ALICE, Condition={
        "StringEquals": {"kms:ViaService": "ec2.us-east-1.amazonaws.com"}})], False, NO_POLICY),
    Case("via-service-absent-if-exists", [allow(ALICE, sid="T", Condition={
        "StringEqualsIfExists": {"kms:ViaService": "ec2.us-east-1.amazonaws.com"}})], True, by_key("T")),
    Case("via-service-absent-null-check", [allow(ALICE, sid="T", Condition={"Null": {"kms:ViaService": "true"}})],
         True, by_key("T")),
    Case("null-false-requires-the-key", [allow(ALICE, Condition={"Null": {EC: "false"}})], False, NO_POLICY),
    Case("ip-address-in-range", [allow(ALICE, sid="T", Condition={"IpAddress": {"aws:SourceIp": "127.0.0.0/8"}})], True,
         by_key("T"), keys={"aws:SourceIp": "127.0.0.1"}),
    Case("not-ip-address-deny",
         [allow(ALICE), deny(sid="Corp", Condition={"NotIpAddress": {"aws:SourceIp": "10.0.0.0/8"}})],
         False, "explicit deny in key policy statement 'Corp'", keys={"aws:SourceIp": "127.0.0.1"}),
    Case("bool-secure-transport-deny", [DEFAULT, deny(sid="TLS", Condition={"Bool": {"aws:SecureTransport": "false"}})],
         False, "explicit deny in key policy statement 'TLS'", principal=ROOT, keys={"aws:SecureTransport": False}),
    Case("bool-secure-transport-true", [DEFAULT, deny(sid="TLS", Condition={"Bool": {"aws:SecureTransport": False}})],
         True, f"allowed by key policy statement {DEFAULT_SID}", principal=ROOT, keys={"aws:SecureTransport": True}),
    Case("date-before-expiry",
         [allow(ALICE, sid="T", Condition={"DateLessThan": {"aws:CurrentTime": "2025-12-31T00:00:00Z"}})],
         True, by_key("T"), keys={"aws:CurrentTime": T0}),
    Case("date-after-expiry", [allow(ALICE, Condition={"DateLessThan": {"aws:CurrentTime": "2025-01-01"}})], False,
         NO_POLICY, keys={"aws:CurrentTime": T0}),
    Case("date-missing-time", [allow(ALICE, Condition={"DateGreaterThan": {"aws:CurrentTime": "2020-01-01"}})], False,
         NO_POLICY),
    Case("numeric-less-than",
         [allow(ALICE, sid="T", Condition={"NumericLessThanEquals": {"aws:MultiFactorAuthAge": 3600}})],
         True, by_key("T"), keys={"aws:MultiFactorAuthAge": 120}),
    Case("arn-like-principal",
         [allow("*", sid="Users", Condition={"ArnLike": {"aws:PrincipalArn": f"arn:aws:iam::{ACCT}:user/*"}})],
         True, by_key("Users")),
    Case("arn-not-equals-deny", [DEFAULT, deny(sid="OnlyRoot", Condition={"ArnNotEquals": {"aws:PrincipalArn": ROOT}})],
         False, "explicit deny in key policy statement 'OnlyRoot'", identity=[iam()]),
    Case("condition-keys-are-anded", [allow(ALICE, Condition={"StringEquals": {EC: "a", "kms:CallerAccount": OTHER}})],
         False, NO_POLICY, ec={"tenant": "a"}),
    Case("condition-values-are-ored", [allow(ALICE, sid="T", Condition={"StringEquals": {EC: ["a", "b"]}})], True,
         by_key("T"), ec={"tenant": "b"}),
    Case("identity-policy-condition-fails", [DEFAULT], False, NOT_DELEGATED,
         identity=[iam(Condition={"Bool": {"aws:SecureTransport": "true"}})], keys={"aws:SecureTransport": False}),
    Case("unknown-operator-never-allows", [allow(ALICE)], False, NO_POLICY, transform=with_unknown_operator),
    Case("unknown-operator-keeps-deny", [allow(ALICE), deny(sid="D")], False, "explicit deny in key policy statement 'D'",
         transform=with_unknown_operator),
]


def account_of(arn: str) -> str:
    return arn.split(":")[4]


def run(case: Case) -> Decision:
    key_policy = parse_policy(json.dumps({"Version": "2012-10-17", "Statement": case.key}))
    if case.transform:
        key_policy = case.transform(key_policy)
    identity = [parse_policy(json.dumps({"Version": "2012-10-17", "Statement": case.identity}), require_principal=False)] \
        if case.identity else []
    ctx = RequestContext(case.principal, account_of(case.principal), case.action, KEY_ARN, ACCT, case.keys, case.ec)
    return evaluate(ctx, key_policy, identity, case.grants)


def test_the_table_is_large_and_names_are_unique():
    assert len(CASES) >= 40
    assert len({case.name for case in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_scenario(case: Case):
    assert run(case) == Decision(case.allowed, case.reason)
