"""Authorization of every call, on the pure evaluator in domain/policy/evaluation.py.

Every check takes the Call it decides (application/calls.py) and enters through one gate (``_by_rule``):
an API call is judged by policy and must have an authenticated caller; an operator or service call (a local
command, or what the service does by itself) is allowed by rule, and its record says so; anything else,
a call with no caller included, is refused (KMSInternalException): authorization fails closed.

The pipeline enters once per call before running it (``authorize_call``: IAM-only operations are decided
there; ``authorize_query`` for /v1). Key operations are authorized where the key is looked up
(KeyResolver.row_by_id, KeyAccess.load): that is the one place every path to a key passes, so no handler can
forget it, and it runs before the key state or any input about the key's material is looked at (AWS, too,
answers AccessDenied before DisabledException). Each check marks the call authorized; the pipeline refuses to
answer a successful call that no check marked.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Callable, Sequence

from application.authorization.decision_memo import DecisionMemo
from application.authorization.request_conditions import condition_keys, encryption_context
from application.calls import Call, CallKind
from application.ports import KeyRow
from domain.errors import AccessDeniedError, InternalError, MalformedPolicyDocumentError
from domain.policy.document import PolicyDocument, parse_policy
from domain.policy.evaluation import Decision, Grant, RequestContext, denial_message, evaluate, evaluate_identity

# IAM-only operations: their resource is "*" (or the account), so no key policy takes part.
ACCOUNT_LEVEL = frozenset({"CreateKey", "ListKeys", "ListAliases", "GenerateRandom", "ListRetirableGrants",
                           "CreateCustomKeyStore", "DescribeCustomKeyStores", "UpdateCustomKeyStore",
                           "DeleteCustomKeyStore", "ConnectCustomKeyStore", "DisconnectCustomKeyStore"})
# Any authenticated caller may make these: the XKS proxy's GetHealthStatus, which the XKS proxy API specification
# excludes from authorization (it names no key; AWS KMS calls it to check the endpoint and the credential).
AUTHENTICATED_ONLY = frozenset({"XksGetHealthStatus"})
# Alias operations need permission on the alias (IAM only) and on each key involved (key policy).
ALIAS_OPERATIONS = frozenset({"CreateAlias", "UpdateAlias", "DeleteAlias"})
# The grant itself says who may retire it (domain.policy.evaluation.can_retire); GrantService decides.
SELF_AUTHORIZED = frozenset({"RetireGrant"})
_EMPTY_POLICY = PolicyDocument(version="2012-10-17", statements=())
_API, _OPERATOR, _SERVICE = CallKind.API, CallKind.OPERATOR, CallKind.SERVICE  # read on every check

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
    storage_id: str = ""  # the key's aggregate id (a multi-Region key shares its key id with related keys)
    multi_region_type: str | None = None  # PRIMARY or REPLICA: kms:MultiRegion, kms:MultiRegionKeyType

    @classmethod
    def of_row(cls, row: KeyRow) -> KeyFacts:
        """The facts of a key-state row, made once per row object: the view hands out the same (frozen) row to
        every call until it reads the key again, and the facts were remade on every call."""
        found = _FACTS_OF_ROWS.get(id(row))
        if found is not None and found[0] is row:  # the row is held with its facts: its id cannot be reused
            return found[1]
        config = row.metadata.get("MultiRegionConfiguration") or {}
        facts = cls(row.arn, row.account_id, row.key_spec, row.key_usage, row.metadata.get("Origin", "AWS_KMS"),
                    row.policy, row.grants, row.storage_id, config.get("MultiRegionKeyType"))
        if len(_FACTS_OF_ROWS) >= 4096:  # bounded: rows are read again every second or so
            _FACTS_OF_ROWS.clear()
        _FACTS_OF_ROWS[id(row)] = (row, facts)
        return facts

    @classmethod
    def of_key(cls, key: Any) -> KeyFacts:
        kind = None if not key.multi_region else "PRIMARY" if key.is_multi_region_primary else "REPLICA"
        return cls(key.arn, key.account_id, key.key_spec, key.key_usage, key.origin, key.policy,
                   tuple(key.active_grants()), key.storage_id, kind)


_FACTS_OF_ROWS: dict[int, tuple[KeyRow, KeyFacts]] = {}


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
                 aliases_of: Callable[[str, str, str], list[str]] | None = None,
                 grant_token: Callable[[str], tuple[str, str]] | None = None,
                 fresh_grants: Callable[[str], Sequence[Grant]] | None = None) -> None:
        """``grant_token``: (key id, grant id) a token names, or InvalidGrantTokenError. ``fresh_grants``: a
        key's grants read from the event store, past every cache, for a token naming a grant not yet seen."""
        self._identity_policies = identity_policies
        self._aliases_of = aliases_of
        self._grant_token = grant_token
        self._fresh_grants = fresh_grants
        self._memo = DecisionMemo()

    def authorize_call(self, call: Call) -> None:
        """The pipeline's one entry before a call runs: decides IAM-only operations on the spot (the rest
        are decided on their key, where it is looked up)."""
        if self._by_rule(call):
            return
        if call.operation in AUTHENTICATED_ONLY:
            call.authorized = True
            return
        if call.operation in ACCOUNT_LEVEL:
            self._identity_check(call, f"kms:{call.operation}", "*", call.required_caller().account_id)

    def authorize_key(self, call: Call, facts: KeyFacts, action: str | None = None) -> None:
        """Raises AccessDeniedError unless ``call`` may perform ``action`` (default: the call's own
        operation) on the key."""
        if self._by_rule(call):
            return
        operation = call.operation
        if operation in ACCOUNT_LEVEL or operation in SELF_AUTHORIZED:
            return  # decided as a whole (ListAliases with a KeyId reads the key but is still IAM-only)
        self.authorize_by_policy(call, facts, action or operation)
        if operation in ALIAS_OPERATIONS:
            self._alias_check(call, f"kms:{operation}")

    def authorize_by_policy(self, call: Call, facts: KeyFacts, action: str, *, grants: bool = True) -> None:
        """The evaluator's verdict for ``call`` and ``action`` on the key, whatever the operation
        (RetireGrant asks this, without grants, when the grant itself does not let the caller retire it: a
        grant's RetireGrant lets its grantee retire that grant, not others)."""
        if self._by_rule(call):
            return
        action = f"kms:{action}"
        caller = call.caller
        assert caller is not None  # _by_rule refuses an API call without one
        policies = self._identity_policies(caller.principal_arn)
        policy = key_policy_document(facts.policy)
        params = call.parameters
        who = (caller.principal_arn, caller.account_id, action, facts.arn, facts.account_id)
        # No grant can take part (none on the key, no token to check) and no condition: a remembered verdict.
        memo = (not (grants and facts.grants) and not params.get("GrantTokens")
                and DecisionMemo.applies(policy, policies))
        decision = self._memo.get(who, policy, policies) if memo else None
        if decision is None:
            keys = self._condition_keys(call, action, facts, (policy, *policies))
            requested = ({k: params.get(k) for k in ("Operations", "Constraints")}
                         if action == "kms:CreateGrant" else None)
            ctx = RequestContext(*who, keys, encryption_context(action, params), requested_grant=requested)
            decision = evaluate(ctx, policy, policies, self._grants(call, facts) if grants else ())
            if memo:
                self._memo.put(who, policy, policies, decision)
        if not decision.allowed:
            raise AccessDeniedError(denial_message(RequestContext(*who), decision))
        call.authorized = True

    def _grants(self, call: Call, facts: KeyFacts) -> Sequence[Grant]:
        """The key's grants; a grant token checks out first, and one naming a grant this (possibly cached)
        view has not seen yet makes us read the grants afresh: a token works the moment CreateGrant answers,
        on every server process (AWS: "use a grant token to use a grant before it is eventually consistent")."""
        tokens = call.parameters.get("GrantTokens") or ()
        if not tokens or self._grant_token is None:
            return facts.grants
        key_id = facts.storage_id or facts.arn.rsplit("/", 1)[-1]  # tokens name the key by its aggregate id
        named = {grant_id for token_key, grant_id in map(self._grant_token, tokens) if token_key == key_id}
        if named - {grant.grant_id for grant in facts.grants} and self._fresh_grants is not None:
            return self._fresh_grants(key_id)
        return facts.grants

    def authorize_query(self, call: Call, action: str, resource: str) -> None:
        """The /v1 query API: questions about the past are answered to whoever IAM lets ask them (the
        account's root, or an identity policy allowing ``action`` on ``resource``); today's key policy
        does not decide who may read a key's history (the key may be gone)."""
        if not self._by_rule(call):
            self._identity_check(call, action, resource, call.required_caller().account_id)

    def authorize_identity(self, call: Call, action: str) -> None:
        """An IAM-only permission a key operation needs besides the key policy's (ReplicateKey: kms:CreateKey and
        kms:TagResource in the replica Region, resource "*")."""
        if not self._by_rule(call):
            self._identity_check(call, action, "*", call.required_caller().account_id)

    def authorize_alias(self, call: Call) -> None:
        """An alias operation whose alias points to no key any more: the alias permission alone decides."""
        if not self._by_rule(call):
            self._alias_check(call, f"kms:{call.operation}")

    def mark_authorized(self, call: Call, decision: Decision) -> None:
        """For operations whose rule is not a policy (RetireGrant): the service decided and says so."""
        if not self._by_rule(call) and decision.allowed:
            call.authorized = True

    # -- helpers ---------------------------------------------------------------------------------

    @staticmethod
    def _by_rule(call: Call) -> bool:
        """The gate every check passes first. True: an operator or service call, allowed by rule (and
        marked so). False: an API call with a caller, to be judged by policy. Anything else is refused."""
        kind = call.kind
        if kind is _API and call.caller is not None:
            return False
        if kind is _OPERATOR or kind is _SERVICE:
            call.authorized = call.authorized_by_rule = True
            return True
        raise InternalError("The request reached authorization without an authenticated caller; refused.")

    def _alias_check(self, call: Call, action: str) -> None:
        name = call.parameters.get("AliasName", "")
        self._identity_check(call, action, call.in_scope().alias_arn(name), call.required_caller().account_id)

    def _identity_check(self, call: Call, action: str, resource: str, resource_account: str) -> None:
        caller = call.required_caller()
        policies = self._identity_policies(caller.principal_arn)
        keys = condition_keys(action, call.parameters, source_ip=call.source_ip,
                              secure_transport=call.secure_transport, now=call.at)
        ctx = RequestContext(caller.principal_arn, caller.account_id, action, resource, resource_account, keys)
        decision = evaluate_identity(ctx, policies)
        if not decision.allowed:
            raise AccessDeniedError(denial_message(ctx, decision))
        call.authorized = True

    def _condition_keys(self, call: Call, action: str, facts: KeyFacts,
                        policies: Sequence[PolicyDocument]) -> dict[str, Any]:
        keys = condition_keys(action, call.parameters, source_ip=call.source_ip,
                              secure_transport=call.secure_transport, now=call.at, key_spec=facts.key_spec,
                              key_usage=facts.key_usage, key_origin=facts.origin)
        keys["kms:MultiRegion"] = facts.multi_region_type is not None
        if facts.multi_region_type is not None:
            keys["kms:MultiRegionKeyType"] = facts.multi_region_type
        if call.extra_condition_keys:
            keys.update(call.extra_condition_keys)
        if call.via_service is not None:  # as AWS sets it for a call an AWS service makes (decision 91)
            keys["kms:ViaService"] = f"{call.via_service}.{call.in_scope().region}.amazonaws.com"
        if self._aliases_of is not None and _mentions(policies, "kms:resourcealiases"):
            _, _, _, region, account, resource = facts.arn.split(":", 5)
            keys["kms:ResourceAliases"] = self._aliases_of(account, region, resource.rsplit("/", 1)[-1])
        return keys


def _mentions(policies: Sequence[PolicyDocument], condition_key: str) -> bool:
    """Only some condition keys cost a lookup; compute them only for policies that test them."""
    return any(condition.key.lower() == condition_key for policy in policies for statement in policy.statements
               for condition in statement.conditions)
