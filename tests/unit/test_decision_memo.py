"""Remembered verdicts (application/authorization/decision_memo.py): the Authorizer answers exactly as the evaluator does,
call after call, while policies are put, attached and detached; and it remembers only what may be."""
from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from application.authorization.authorizer import Authorizer, KeyFacts, key_policy_document
from application.authorization.decision_memo import DecisionMemo
from application.calls import Call
from domain.errors import AccessDeniedError
from domain.identifiers import Scope
from domain.policy.document import PolicyDocument, parse_policy
from domain.policy.evaluation import Decision, Grant, RequestContext, evaluate
from tests.calls import api_call
from tests.unit.test_authorization import ACCT, ALICE, BOB, CAROL, KEY_ARN, ROOT, allow, iam

CALLERS = [ALICE, BOB, ROOT, CAROL]
ACTIONS = ["Encrypt", "Decrypt", "DescribeKey", "ScheduleKeyDeletion"]


def key_policy(*statements: dict) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


def identity_policy(*statements: dict) -> PolicyDocument:
    return parse_policy(json.dumps({"Version": "2012-10-17", "Statement": list(statements)}),
                        require_principal=False)


KEY_POLICIES = [
    key_policy(allow(ROOT, "kms:*", "Root")),
    key_policy(allow(ROOT, "kms:*", "Root"), allow(ALICE, "kms:Decrypt", "Alice")),
    key_policy(allow(ALICE, "kms:*", "Alice"), allow(BOB, "kms:Decrypt", "DenyBob", effect="Deny")),
    key_policy(allow(ROOT, "kms:*", "Root"), allow(CAROL.split(":user")[0] + ":root", "kms:Encrypt", "Other")),
    key_policy(allow(ROOT, "kms:*", "Root"),
               allow(BOB, "kms:Encrypt", "IfContext", Condition={"StringEquals": {"kms:EncryptionContext:app": "x"}})),
]
IDENTITY_POLICIES = [
    (),
    (identity_policy(iam("kms:Encrypt")),),
    (identity_policy(iam("kms:*")), identity_policy(iam("kms:Decrypt", effect="Deny"))),
    (identity_policy(iam("kms:Decrypt", Condition={"Bool": {"aws:SecureTransport": "true"}})),),
]


def calling(caller: str, operation: str, params: dict[str, Any] | None = None) -> Call:
    return api_call(operation, caller, Scope(caller.split(":")[4], "us-east-1"), parameters=params,
                    access_key_id="AKIAEXAMPLE", source_ip="127.0.0.1")


def facts(policy_text: str, grants: tuple[Grant, ...] = ()) -> KeyFacts:
    return KeyFacts(KEY_ARN, ACCT, "SYMMETRIC_DEFAULT", "ENCRYPT_DECRYPT", "AWS_KMS", policy_text, grants)


def verdict(authorizer: Authorizer, caller: str, operation: str, key: KeyFacts,
            params: dict[str, Any] | None = None) -> bool:
    call = calling(caller, operation, params)
    try:
        authorizer.authorize_key(call, key)
    except AccessDeniedError:
        assert not call.authorized
        return False
    assert call.authorized
    return True


def expected(caller: str, operation: str, key: KeyFacts, identity: tuple[PolicyDocument, ...],
             params: dict[str, Any] | None = None) -> bool:
    ctx = RequestContext(caller, caller.split(":")[4], f"kms:{operation}", KEY_ARN, ACCT,
                         {"aws:SecureTransport": False}, (params or {}).get("EncryptionContext"))
    return evaluate(ctx, key_policy_document(key.policy), identity, key.grants).allowed


@settings(max_examples=150, deadline=None)
@given(steps=st.lists(st.tuples(st.sampled_from(CALLERS), st.sampled_from(ACTIONS),
                                st.integers(0, len(KEY_POLICIES) - 1), st.integers(0, len(IDENTITY_POLICIES) - 1),
                                st.sampled_from([None, {"app": "x"}, {"app": "y"}])),
                      min_size=1, max_size=30))
def test_the_authorizer_answers_as_the_evaluator_while_policies_change(steps) -> None:
    """Each step is a call made under whichever key policy and identity policies are in force then: the
    memo is warm from the steps before, under other policies too, and must never answer from them."""
    in_force: dict[str, tuple[PolicyDocument, ...]] = {}
    authorizer = Authorizer(identity_policies=lambda arn: list(in_force.get(arn, ())))
    for caller, operation, key_index, identity_index, context in steps:
        in_force[caller] = IDENTITY_POLICIES[identity_index]
        key = facts(KEY_POLICIES[key_index])
        params = {"EncryptionContext": context} if context else None
        assert verdict(authorizer, caller, operation, key, params) == expected(
            caller, operation, key, in_force[caller], params)


def test_a_policy_put_again_is_a_new_object_and_never_meets_the_old_verdict() -> None:
    allowed = key_policy(allow(ROOT, "kms:*", "Root"), allow(ALICE, "kms:Encrypt", "Alice"))
    denied = key_policy(allow(ROOT, "kms:*", "Root"))
    authorizer = Authorizer()
    assert verdict(authorizer, ALICE, "Encrypt", facts(allowed))
    assert not verdict(authorizer, ALICE, "Encrypt", facts(denied))
    assert verdict(authorizer, ALICE, "Encrypt", facts(allowed))


def test_only_condition_free_policies_without_grants_are_remembered() -> None:
    plain = key_policy_document(key_policy(allow(ROOT, "kms:*", "Root")))
    conditional = key_policy_document(KEY_POLICIES[4])
    assert DecisionMemo.applies(plain, [])
    assert not DecisionMemo.applies(conditional, [])
    assert not DecisionMemo.applies(plain, list(IDENTITY_POLICIES[3]))


def test_a_grant_decides_even_when_the_same_call_was_remembered_without_it() -> None:
    policy = key_policy(allow(ROOT, "kms:*", "Root"))
    authorizer = Authorizer()
    assert not verdict(authorizer, BOB, "Encrypt", facts(policy))
    grant = Grant("g-1", BOB, None, frozenset({"Encrypt"}), {"app": "x"}, None, KEY_ARN)
    assert verdict(authorizer, BOB, "Encrypt", facts(policy, (grant,)), {"EncryptionContext": {"app": "x"}})
    assert not verdict(authorizer, BOB, "Encrypt", facts(policy, (grant,)), {"EncryptionContext": {"app": "y"}})
    assert not verdict(authorizer, BOB, "Encrypt", facts(policy))


def test_a_full_memo_starts_afresh() -> None:
    memo = DecisionMemo(max_entries=2)
    policy = key_policy_document(key_policy(allow(ROOT, "kms:*", "Root")))
    for i in range(5):
        memo.put((f"arn:{i}", ACCT, "kms:Encrypt", KEY_ARN, ACCT), policy, [], Decision(True, "x"))
    assert memo.get(("arn:4", ACCT, "kms:Encrypt", KEY_ARN, ACCT), policy, []) == Decision(True, "x")
    assert memo.get(("arn:0", ACCT, "kms:Encrypt", KEY_ARN, ACCT), policy, []) is None


@pytest.mark.parametrize("caller", CALLERS)
def test_denials_from_the_memo_read_as_the_evaluators(caller: str) -> None:
    policy = key_policy(allow(ALICE, "kms:Encrypt", "Alice"))
    authorizer = Authorizer()
    messages = []
    for _ in range(2):  # the second answer comes from the memo
        with pytest.raises(AccessDeniedError) as denied:
            authorizer.authorize_key(calling(caller, "Decrypt"), facts(policy))
        messages.append(str(denied.value))
    assert messages[0] == messages[1]
