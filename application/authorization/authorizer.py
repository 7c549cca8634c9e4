"""Authorization of every API call, on the pure evaluator in domain/policy/evaluation.py.

Key operations are authorized where the key is looked up (KeyResolver.row_by_id, KeyAccess.load): that is
the one place every path to a key passes, so no handler can forget it, and it runs before the key state or
any input about the key's material is looked at (AWS, too, answers AccessDenied before DisabledException).
Operations with no key (CreateKey, ListKeys...) are authorized by the API before the handler runs. Each
check marks the call authorized; the API refuses to answer a successful call that no check marked.

The call being authorized is the current CallContext. Calls the service makes itself (rotation, deletion,
expiry: AwsServiceEvent) and local operator commands (no call) are not API calls and are not checked here.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Callable, Sequence

from application.audit.records import CallContext, current_call
from application.authorization.decision_memo import DecisionMemo
from application.authorization.request_conditions import condition_keys, encryption_context
from application.ports import KeyRow
from domain.errors import AccessDeniedError, MalformedPolicyDocumentError
from domain.policy.document import PolicyDocument, parse_policy
from domain.policy.evaluation import Decision, Grant, RequestContext, denial_message, evaluate, evaluate_identity

# IAM-only operations: their resource is "*" (or the account), so no key policy takes part.
ACCOUNT_LEVEL = frozenset({"CreateKey", "ListKeys", "ListAliases", "GenerateRandom", "ListRetirableGrants"})
# Alias operations need permission on the alias (IAM only) and on each key involved (key policy).
ALIAS_OPERATIONS = frozenset({"CreateAlias", "UpdateAlias", "DeleteAlias"})
# The grant itself says who may retire it (domain.policy.evaluation.can_retire); GrantService decides.
SELF_AUTHORIZED = frozenset({"RetireGrant"})
_EMPTY_POLICY = PolicyDocument(version="2012-10-17", statements=())

IdentityPolicies = Callable[[str], Sequence[PolicyDocument]]


@dataclass(frozen=True)
class KeyFacts:
    """What authorization needs to know about a key, from a key-state row or from the aggregate."""

    arn: str
    account_id: str
    key_spec: str
    key_usage: str
    origin: str
    policy: str
    grants: Sequence[Grant]

    @classmethod
    def of_row(cls, row: KeyRow) -> KeyFacts:
        return cls(row.arn, row.account_id, row.key_spec, row.key_usage, row.metadata.get("Origin", "AWS_KMS"),
                   row.policy, row.grants)

    @classmethod
    def of_key(cls, key: Any) -> KeyFacts:
        return cls(key.arn, key.account_id, key.key_spec, key.key_usage, key.origin, key.policy,
                   tuple(key.active_grants()))


@lru_cache(maxsize=4096)
def key_policy_document(text: str) -> PolicyDocument:
    """A stored policy, parsed once. One that no longer parses (a stricter validator than when it was put)
    allows no one: failing closed, like a policy with no statements, leaves the key to its grants."""
    try:
        return parse_policy(text)
    except MalformedPolicyDocumentError:
        return _EMPTY_POLICY


def _no_identity_policies(_: str) -> Sequence[PolicyDocument]:
    return ()


class Authorizer:
    def __init__(self, identity_policies: IdentityPolicies = _no_identity_policies,
                 aliases_of: Callable[[str], list[str]] | None = None,
                 grant_token: Callable[[str], tuple[str, str]] | None = None,
                 fresh_grants: Callable[[str], Sequence[Grant]] | None = None) -> None:
        """``grant_token``: (key id, grant id) a token names, or InvalidGrantTokenError. ``fresh_grants``: a
        key's grants read from the event store, past every cache, for a token naming a grant not yet seen."""
        self._identity_policies = identity_policies
        self._aliases_of = aliases_of
        self._grant_token = grant_token
        self._fresh_grants = fresh_grants
        self._memo = DecisionMemo()

    def authorize_account_call(self, operation: str) -> None:
        """The API calls this before every handler: it decides IAM-only operations on the spot."""
        call = _api_call()
        if call is None:
            return
        if operation in ACCOUNT_LEVEL:
            self._identity_check(call, f"kms:{operation}", "*", call.record["userIdentity"]["accountId"])

    def authorize_key(self, facts: KeyFacts, action: str | None = None) -> None:
        """Raises AccessDeniedError unless the current call may perform ``action`` (default: the call's own
        operation) on the key."""
        call = _api_call()
        if call is None:
            return
        operation = call.record["eventName"]
        if operation in ACCOUNT_LEVEL or operation in SELF_AUTHORIZED:
            return  # decided as a whole (ListAliases with a KeyId reads the key but is still IAM-only)
        self.authorize_by_policy(facts, action or operation)
        if operation in ALIAS_OPERATIONS:
            self._alias_check(call, f"kms:{operation}")

    def authorize_by_policy(self, facts: KeyFacts, action: str, *, grants: bool = True) -> None:
        """The evaluator's verdict for the current call and ``action`` on the key, whatever the operation
        (RetireGrant asks this, without grants, when the grant itself does not let the caller retire it: a
        grant's RetireGrant lets its grantee retire that grant, not others)."""
        call = _api_call()
        if call is None:
            return
        action = f"kms:{action}"
        identity = call.record["userIdentity"]
        policies = self._identity_policies(identity["arn"])
        policy = key_policy_document(facts.policy)
        who = (identity["arn"], identity["accountId"], action, facts.arn, facts.account_id)
        # No grant can take part (none on the key, no token to check) and no condition: a remembered verdict.
        memo = (not (grants and facts.grants) and not call.params.get("GrantTokens")
                and DecisionMemo.applies(policy, policies))
        decision = self._memo.get(who, policy, policies) if memo else None
        if decision is None:
            keys = self._condition_keys(call, action, facts, (policy, *policies))
            requested = ({k: call.params.get(k) for k in ("Operations", "Constraints")}
                         if action == "kms:CreateGrant" else None)
            ctx = RequestContext(*who, keys, encryption_context(action, call.params), requested_grant=requested)
            decision = evaluate(ctx, policy, policies, self._grants(call, facts) if grants else ())
            if memo:
                self._memo.put(who, policy, policies, decision)
        if not decision.allowed:
            raise AccessDeniedError(denial_message(RequestContext(*who), decision))
        call.authorized = True

    def _grants(self, call: CallContext, facts: KeyFacts) -> Sequence[Grant]:
        """The key's grants; a grant token checks out first, and one naming a grant this (possibly cached)
        view has not seen yet makes us read the grants afresh: a token works the moment CreateGrant answers,
        on every server process (AWS: "use a grant token to use a grant before it is eventually consistent")."""
        tokens = call.params.get("GrantTokens") or ()
        if not tokens or self._grant_token is None:
            return facts.grants
        key_id = facts.arn.rsplit("/", 1)[-1]
        named = {grant_id for token_key, grant_id in map(self._grant_token, tokens) if token_key == key_id}
        if named - {grant.grant_id for grant in facts.grants} and self._fresh_grants is not None:
            return self._fresh_grants(key_id)
        return facts.grants

    def authorize_query(self, action: str, resource: str) -> None:
        """The /v1 query API: questions about the past are answered to whoever IAM lets ask them (the
        account's root, or an identity policy allowing ``action`` on ``resource``); today's key policy
        does not decide who may read a key's history (the key may be gone)."""
        call = _api_call()
        if call is not None:
            self._identity_check(call, action, resource, call.record["userIdentity"]["accountId"])

    def authorize_alias(self) -> None:
        """An alias operation whose alias points to no key any more: the alias permission alone decides."""
        call = _api_call()
        if call is not None:
            self._alias_check(call, f"kms:{call.record['eventName']}")

    def mark_authorized(self, decision: Decision) -> None:
        """For operations whose rule is not a policy (RetireGrant): the service decided and says so."""
        call = _api_call()
        if call is not None and decision.allowed:
            call.authorized = True

    # -- helpers ---------------------------------------------------------------------------------

    def _alias_check(self, call: CallContext, action: str) -> None:
        identity = call.record["userIdentity"]
        account, region = identity["accountId"], call.record["awsRegion"]
        name = call.params.get("AliasName", "")
        self._identity_check(call, action, f"arn:aws:kms:{region}:{account}:{name}", account)

    def _identity_check(self, call: CallContext, action: str, resource: str, resource_account: str) -> None:
        identity = call.record["userIdentity"]
        policies = self._identity_policies(identity["arn"])
        keys = condition_keys(action, call.params, source_ip=call.record.get("sourceIPAddress"),
                              secure_transport=call.secure_transport, now=call.at)
        ctx = RequestContext(identity["arn"], identity["accountId"], action, resource, resource_account, keys)
        decision = evaluate_identity(ctx, policies)
        if not decision.allowed:
            raise AccessDeniedError(denial_message(ctx, decision))
        call.authorized = True

    def _condition_keys(self, call: CallContext, action: str, facts: KeyFacts,
                        policies: Sequence[PolicyDocument]) -> dict[str, Any]:
        keys = condition_keys(action, call.params, source_ip=call.record.get("sourceIPAddress"),
                              secure_transport=call.secure_transport, now=call.at, key_spec=facts.key_spec,
                              key_usage=facts.key_usage, key_origin=facts.origin)
        if self._aliases_of is not None and _mentions(policies, "kms:resourcealiases"):
            keys["kms:ResourceAliases"] = self._aliases_of(facts.arn.rsplit("/", 1)[-1])
        return keys


def _api_call() -> CallContext | None:
    call = current_call.get()
    if call is None or call.record.get("eventType") != "AwsApiCall":
        return None
    return call


def _mentions(policies: Sequence[PolicyDocument], condition_key: str) -> bool:
    """Only some condition keys cost a lookup; compute them only for policies that test them."""
    return any(condition.key.lower() == condition_key for policy in policies for statement in policy.statements
               for condition in statement.conditions)
