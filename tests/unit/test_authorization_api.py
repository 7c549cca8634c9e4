"""The rest of the authorization interface: AWS's denial text, point-in-time questions, retiring grants, and
the action sets the rules rest on."""
from __future__ import annotations

import dataclasses
import json

from domain.policy.document import KMS_ACTIONS, parse_policy
from domain.policy.evaluation import (
    CROSS_ACCOUNT_ACTIONS,
    GRANT_OPERATIONS,
    Decision,
    Grant,
    RequestContext,
    can_retire,
    could_perform,
    denial_message,
)
from tests.unit.test_authorization import ACCT, ALICE, BOB, KEY_ARN, OTHER, allow, by_key


def test_denial_messages_read_as_aws_writes_them():
    ctx = RequestContext(ALICE, ACCT, "kms:encrypt", KEY_ARN, ACCT)
    assert denial_message(ctx) == (f"User: {ALICE} is not authorized to perform: kms:Encrypt on resource: {KEY_ARN} "
                                   f"because no resource-based policy allows the kms:Encrypt action")
    assert denial_message(ctx, Decision(False, "explicit deny in key policy statement 'D'")).endswith(
        "on resource: " + KEY_ARN + " with an explicit deny in a resource-based policy")
    assert denial_message(ctx, Decision(False, "explicit deny in identity policy statement 'D'")).endswith(
        "with an explicit deny in an identity-based policy")


def test_could_perform_is_evaluate_without_a_request():
    policy = parse_policy(json.dumps({"Version": "2012-10-17", "Statement": [
        allow(ALICE, "kms:Decrypt", "T", Condition={"StringEquals": {"kms:CallerAccount": ACCT}})]}))
    assert could_perform(ALICE, ACCT, "kms:Decrypt", KEY_ARN, ACCT, policy, [], []) == Decision(True, by_key("T"))
    assert not could_perform(BOB, ACCT, "kms:Decrypt", KEY_ARN, ACCT, policy, [], []).allowed
    assert not could_perform(ALICE, ACCT, "kms:Decrypt", KEY_ARN, ACCT, policy, [], [],
                             context_keys={"kms:CallerAccount": OTHER}).allowed


def test_retiring_a_grant_is_decided_by_the_grant():
    retirable = Grant("g-9", ALICE, BOB, frozenset({"Encrypt"}), None, None, KEY_ARN)
    assert can_retire(retirable, BOB, ACCT).allowed
    assert not can_retire(retirable, ALICE, ACCT).allowed  # the grantee needs RetireGrant in the grant
    assert can_retire(dataclasses.replace(retirable, operations=frozenset({"RetireGrant"})), ALICE, ACCT).allowed


def test_action_sets_agree_with_the_action_list():
    assert CROSS_ACCOUNT_ACTIONS <= KMS_ACTIONS
    assert {f"kms:{operation}" for operation in GRANT_OPERATIONS} <= CROSS_ACCOUNT_ACTIONS
    assert "kms:GetKeyRotationStatus" in CROSS_ACCOUNT_ACTIONS and "kms:ScheduleKeyDeletion" not in CROSS_ACCOUNT_ACTIONS
