"""Who could use a key for an operation at an instant: the key state, policy (and, once they exist,
grants and identity policies) as they were then, judged by the same evaluator the request path uses
(domain/authorization.py). Until authorization is wired into requests (issue 5) there are no grants or
identity policies, so the key policy and the key state decide."""
from __future__ import annotations

from datetime import datetime
from typing import Any

from application.point_in_time import PointInTime, ScopeLike
from domain.authorization import could_perform
from domain.errors import KmsError, MalformedPolicyDocumentError, ValidationError
from domain.key_states import MATRIX, KeyState, require_state
from domain.policy_document import PolicyDocument, parse_policy


def _named_principals(policy: PolicyDocument, account: str) -> list[str]:
    """The principals a policy names that could be callers: ARNs, accounts as their root, not "*"."""
    names = {f"arn:aws:iam::{account}:root"}
    for statement in policy.statements:
        for principal in statement.principals or ():
            if principal.kind != "AWS" or principal.value == "*":
                continue
            value = principal.value
            names.add(f"arn:aws:iam::{value}:root" if value.isdigit() else value)
    return sorted(names)


def access_at(history: PointInTime, scope: ScopeLike, key_ref: str, at: datetime, operation: str,
              principal: str | None = None) -> dict[str, Any]:
    if operation not in MATRIX:
        raise ValidationError(f"'{operation}' is not a KMS operation on keys keyledger knows; e.g. Encrypt, Decrypt, Sign.")
    view = history.key_at(scope, key_ref, at)
    meta = view["KeyMetadata"]
    arn, account = meta["Arn"], meta["AWSAccountId"]
    answer: dict[str, Any] = {"KeyArn": arn, "Operation": operation, "At": at, "KeyState": meta["KeyState"],
                              "Principals": []}
    try:
        require_state(operation, KeyState(meta["KeyState"]), arn)
    except KmsError as refused:
        answer["KeyStateAllows"], answer["Reason"] = False, refused.message
        return answer
    answer["KeyStateAllows"] = True
    try:
        policy = parse_policy(view["Policy"])
    except MalformedPolicyDocumentError as exc:
        answer["Reason"] = f"the key policy in force then does not parse, so it allows no one: {exc.message}"
        return answer
    for candidate in [principal] if principal else _named_principals(policy, account):
        candidate_account = candidate.split(":")[4] if candidate.startswith("arn:") else account
        decision = could_perform(candidate, candidate_account, f"kms:{operation}", arn, account, policy, [], [],
                                 {"aws:CurrentTime": at})
        answer["Principals"].append({"Principal": candidate, "Allowed": decision.allowed, "Reason": decision.reason})
    return answer
