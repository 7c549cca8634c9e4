"""Properties of authorization over generated policies, grants and requests: a matching unconditional Deny
always wins, and a key policy with no statements leaves exactly what grants allow."""
from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from domain.policy.document import PolicyDocument, parse_policy
from domain.policy.evaluation import GRANT_OPERATIONS, Grant, RequestContext, evaluate

ACCT, OTHER = "111122223333", "444455556666"
KEY_ARN = f"arn:aws:kms:us-east-1:{ACCT}:key/1234abcd-12ab-34cd-56ef-1234567890ab"
OTHER_KEY_ARN = f"arn:aws:kms:us-east-1:{ACCT}:key/0987dcba-09ba-dc87-65fe-0987654321ba"
CALLERS = [f"arn:aws:iam::{ACCT}:root", f"arn:aws:iam::{ACCT}:user/alice", f"arn:aws:iam::{ACCT}:user/bob",
           f"arn:aws:sts::{ACCT}:assumed-role/app/s1", f"arn:aws:iam::{OTHER}:user/carol", f"arn:aws:iam::{OTHER}:root"]
PRINCIPALS = ["*", ACCT, OTHER, f"arn:aws:iam::{ACCT}:role/app", *CALLERS]
ACTIONS = ["kms:Encrypt", "kms:Decrypt", "kms:ReEncryptFrom", "kms:GenerateDataKey", "kms:DescribeKey",
           "kms:CreateGrant", "kms:GetKeyRotationStatus", "kms:ScheduleKeyDeletion", "kms:PutKeyPolicy", "kms:Sign"]
PATTERNS = ["*", "kms:*", "kms:Encrypt", "kms:Decrypt", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*",
            "kms:Get*", "kms:ScheduleKeyDeletion", "kms:*Grant*"]
CONDITIONS = [
    {"StringEquals": {"kms:EncryptionContext:tenant": "a"}},
    {"StringNotEquals": {"kms:CallerAccount": OTHER}},
    {"Bool": {"aws:SecureTransport": "true"}},
    {"IpAddress": {"aws:SourceIp": "10.0.0.0/8"}},
    {"ForAllValues:StringEquals": {"kms:EncryptionContextKeys": ["tenant", "x"]}},
    {"ForAnyValue:StringLike": {"kms:EncryptionContextKeys": "ten*"}},
    {"Null": {"kms:ViaService": "true"}},
    {"StringEqualsIfExists": {"kms:ViaService": "s3.us-east-1.amazonaws.com"}},
    {"DateLessThan": {"aws:CurrentTime": "2030-01-01T00:00:00Z"}},
]
CONTEXTS = [None, {}, {"tenant": "a"}, {"tenant": "b", "x": "y"}, {"Tenant": "a"}]

actions = st.lists(st.sampled_from(PATTERNS), min_size=1, max_size=3)
conditions = st.one_of(st.none(), st.sampled_from(CONDITIONS))


@st.composite
def key_statements(draw) -> dict:
    effect = draw(st.sampled_from(["Allow", "Deny"]))
    statement = {"Effect": effect, draw(st.sampled_from(["Action", "NotAction"])): draw(actions), "Resource": "*"}
    principal = {"AWS": draw(st.lists(st.sampled_from(PRINCIPALS), min_size=1, max_size=3))}
    negated = effect == "Deny" and draw(st.booleans())
    statement["NotPrincipal" if negated else "Principal"] = principal
    if draw(st.booleans()):
        statement["Sid"] = f"S{draw(st.integers(0, 9))}"
    condition = draw(conditions)
    if condition:
        statement["Condition"] = condition
    return statement


@st.composite
def identity_statements(draw, effects=("Allow", "Deny")) -> dict:
    statement = {"Effect": draw(st.sampled_from(effects)), "Action": draw(actions),
                 "Resource": draw(st.sampled_from(["*", KEY_ARN, OTHER_KEY_ARN, f"arn:aws:kms:*:{ACCT}:key/*"]))}
    condition = draw(conditions)
    if condition:
        statement["Condition"] = condition
    return statement


def document(statements: list[dict], key_policy: bool = True) -> PolicyDocument:
    return parse_policy(json.dumps({"Version": "2012-10-17", "Statement": statements}), require_principal=key_policy)


def identity_policies(effects=("Allow", "Deny")):
    return st.lists(st.lists(identity_statements(effects), min_size=1, max_size=3).map(
        lambda statements: document(statements, key_policy=False)), max_size=2)


constraint = st.one_of(st.none(), st.sampled_from([{}, {"tenant": "a"}, {"tenant": "b", "x": "y"}]))
grants = st.lists(st.builds(
    Grant, grant_id=st.sampled_from(["g-1", "g-2", "g-3"]), grantee_principal=st.sampled_from(CALLERS),
    retiring_principal=st.none(), operations=st.frozensets(st.sampled_from(sorted(GRANT_OPERATIONS)), max_size=5),
    constraints_equals=constraint, constraints_subset=constraint, key_arn=st.sampled_from([KEY_ARN, OTHER_KEY_ARN]),
), max_size=3)


@st.composite
def requests(draw) -> RequestContext:
    caller = draw(st.sampled_from(CALLERS))
    keys = draw(st.fixed_dictionaries({}, optional={
        "aws:SecureTransport": st.booleans(), "aws:SourceIp": st.sampled_from(["10.1.2.3", "127.0.0.1"]),
        "kms:ViaService": st.just("s3.us-east-1.amazonaws.com")}))
    return RequestContext(caller, caller.split(":")[4], draw(st.sampled_from(ACTIONS)), KEY_ARN, ACCT, keys,
                          draw(st.sampled_from(CONTEXTS)))


@settings(max_examples=300, deadline=None)
@given(requests(), st.lists(key_statements(), min_size=1, max_size=5), identity_policies(), grants)
def test_a_matching_unconditional_deny_always_denies(ctx, statements, identity, grant_list):
    before = evaluate(ctx, document(statements), identity, grant_list)
    blocker = {"Effect": "Deny", "Principal": "*", "Action": ctx.action, "Resource": "*"}
    for position in (0, len(statements)):
        with_deny = statements[:position] + [blocker] + statements[position:]
        after = evaluate(ctx, document(with_deny), identity, grant_list)
        assert not after.allowed and after.reason.startswith("explicit deny in "), (before, after)


def grant_oracle(grant: Grant, ctx: RequestContext) -> bool:
    """Written from the CreateGrant / GrantConstraints documentation, independently of the module."""
    operation = ctx.action.removeprefix("kms:")
    if grant.key_arn != ctx.key_arn or grant.grantee_principal != ctx.principal_arn or operation not in grant.operations:
        return False
    if operation not in {"Encrypt", "Decrypt", "ReEncryptFrom", "GenerateDataKey"}:
        return True
    request = {(k.lower(), v) for k, v in (ctx.encryption_context or {}).items()}
    equals = {(k.lower(), v) for k, v in (grant.constraints_equals or {}).items()}
    subset = {(k.lower(), v) for k, v in (grant.constraints_subset or {}).items()}
    return (not equals or equals == request) and subset <= request


def grants_near(ctx: RequestContext):
    """Grants that often, but not always, fit the request, so both outcomes are common."""
    operation = ctx.action.removeprefix("kms:")
    near_operations = st.frozensets(st.sampled_from(sorted(GRANT_OPERATIONS)), max_size=3).map(
        lambda ops: ops | {operation} if operation in GRANT_OPERATIONS else ops)
    return st.lists(st.builds(
        Grant, grant_id=st.sampled_from(["g-1", "g-2", "g-3"]),
        grantee_principal=st.sampled_from([ctx.principal_arn] * 3 + CALLERS), retiring_principal=st.none(),
        operations=st.one_of(near_operations, st.frozensets(st.sampled_from(sorted(GRANT_OPERATIONS)), max_size=5)),
        constraints_equals=constraint, constraints_subset=constraint,
        key_arn=st.sampled_from([KEY_ARN, KEY_ARN, OTHER_KEY_ARN]),
    ), max_size=3)


@settings(max_examples=300, deadline=None)
@given(requests(), identity_policies(effects=("Allow",)), st.data())
def test_without_key_policy_statements_only_grants_allow(ctx, identity, data):
    grant_list = data.draw(grants_near(ctx))
    empty = PolicyDocument(version="2012-10-17", statements=())
    decision = evaluate(ctx, empty, identity, grant_list)
    assert decision.allowed == any(grant_oracle(grant, ctx) for grant in grant_list), decision
    assert not decision.allowed or decision.reason.startswith("allowed by grant ")
    assert not evaluate(ctx, empty, identity, []).allowed
