"""Who could use a key for an operation at an instant: the key state, policy and grants (and, once they
exist, identity policies) as they were then, judged by the same evaluator the request path uses
(domain/authorization.py). Until identity policies exist, the key state, key policy and grants decide.
The candidates are the principals the policy names and the grantees of the grants in force then."""
from __future__ import annotations

from datetime import datetime
from typing import Any

from application.point_in_time import PointInTime, ScopeLike
from domain.authorization import Decision, Grant, could_perform
from domain.errors import KmsError, MalformedPolicyDocumentError, ValidationError
from domain.key_grants import grants_from_entries
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


def _constrained(grants: list[Grant], principal: str, operation: str, decision: Decision) -> str:
    """A grant with encryption context constraints allows only requests that carry a matching context,
    which a "could P do O" question does not have: say so rather than leave a bare denial."""
    if decision.allowed:
        return ""
    ids = [g.grant_id for g in grants if g.grantee_principal == principal and operation in g.operations
           and (g.constraints_equals or g.constraints_subset)]
    if not ids:
        return ""
    return f"; grant {', '.join(ids)} allows it when the request's encryption context meets its constraints"


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
    grants = grants_from_entries(view["Grants"])
    candidates = sorted({*_named_principals(policy, account), *(g.grantee_principal for g in grants)})
    for candidate in [principal] if principal else candidates:
        candidate_account = candidate.split(":")[4] if candidate.startswith("arn:") else account
        decision = could_perform(candidate, candidate_account, f"kms:{operation}", arn, account, policy, [], grants,
                                 {"aws:CurrentTime": at})
        answer["Principals"].append({"Principal": candidate, "Allowed": decision.allowed,
                                     "Reason": decision.reason + _constrained(grants, candidate, operation, decision)})
    return answer
