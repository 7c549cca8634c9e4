"""Who could use a key for an operation at an instant: the key state, key policy, grants and the candidates'
identity policies as they were then, judged by the same evaluator the request path uses
(domain/policy/evaluation.py). The candidates are the principals the policy names, the grantees of the grants in
force then, and the principals that existed then in the key's account and in the accounts the policy names."""
from __future__ import annotations

from datetime import datetime
from typing import Any, Protocol

from application.history.point_in_time import PointInTime, ScopeLike
from domain.errors import KmsError, MalformedPolicyDocumentError, ValidationError, shown
from domain.keys.grants import grants_from_entries
from domain.keys.states import MATRIX, KeyState, require_state
from domain.policy.document import PolicyDocument, parse_policy
from domain.policy.evaluation import Decision, Grant, could_perform


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


class PrincipalsAt(Protocol):
    def principals_at(self, account_id: str, at: datetime) -> list[str]: ...

    def identity_policies_at(self, principal_arn: str, at: datetime) -> list[PolicyDocument]: ...


def access_at(history: PointInTime, scope: ScopeLike, key_ref: str, at: datetime, operation: str,
              principal: str | None = None, directory: PrincipalsAt | None = None) -> dict[str, Any]:
    """``directory`` adds the principals that existed at ``at`` in the key's account and in every account the
    policy names, each judged with the identity policies it had then; without it only the key policy's
    principals and the grantees are candidates, with no identity policies."""
    if operation not in MATRIX:
        raise ValidationError(f"'{shown(operation)}' is not a KMS operation on keys keyledger knows; e.g. Encrypt, Decrypt, Sign.")
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
    named = _named_principals(policy, account)
    candidates = {*named, *(g.grantee_principal for g in grants)}
    if directory is not None:
        for other in {account, *(name.split(":")[4] for name in candidates if name.startswith("arn:"))}:
            candidates.update(directory.principals_at(other, at))
    for candidate in [principal] if principal else sorted(candidates):
        candidate_account = candidate.split(":")[4] if candidate.startswith("arn:") else account
        identity = directory.identity_policies_at(candidate, at) if directory is not None else []
        decision = could_perform(candidate, candidate_account, f"kms:{operation}", arn, account, policy, identity,
                                 grants, {"aws:CurrentTime": at})
        answer["Principals"].append({"Principal": candidate, "Allowed": decision.allowed,
                                     "Reason": decision.reason + _constrained(grants, candidate, operation, decision)})
    return answer
