"""Whether a request may use a KMS key, decided as AWS KMS decides it (Developer Guide, "Determining access
to a KMS key", and the IAM policy evaluation logic). Pure: the caller supplies the policies and grants.

1. An explicit Deny that applies, in the key policy or in any identity policy of the caller, wins.
2. A caller from another account can use only ``CROSS_ACCOUNT_ACTIONS`` (any other permission "has no
   effect", as the guide puts it), and only when both sides allow: the key policy names the caller or its
   account, and the caller's own identity policy allows it (an account root needs no identity policy).
3. Same account: a key policy Allow naming the caller (its ARN, or "*") allows outright. A statement
   naming only the account (``arn:aws:iam::<acct>:root`` or the bare id) does not let every user in; it
   delegates to IAM, so an identity policy of the caller must allow too. The account root user itself is
   the account, so such a statement names it directly (it is the administrator key of a fresh install).
4. A grant allows when its grantee is the caller, it lists the operation, and its encryption context
   constraints hold.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Mapping, Sequence

from domain.policy.conditions import conditions_hold, normalize_context
from domain.policy.document import PolicyDocument, Principal, Statement, canonical_action
from domain.policy.wildcard import wildcard_match

# API reference, "Cross-account use: Yes" (ReEncrypt is authorized as ReEncryptFrom and ReEncryptTo).
CROSS_ACCOUNT_ACTIONS = frozenset(f"kms:{operation}" for operation in (
    "CreateGrant", "Decapsulate", "Decrypt", "DeriveSharedSecret", "DescribeKey", "Encapsulate", "Encrypt",
    "GenerateDataKey", "GenerateDataKeyPair", "GenerateDataKeyPairWithoutPlaintext",
    "GenerateDataKeyWithoutPlaintext", "GenerateMac", "GetKeyRotationStatus", "GetPublicKey", "ListGrants",
    "ReEncryptFrom", "ReEncryptTo", "RetireGrant", "RevokeGrant", "Sign", "Verify", "VerifyMac",
))
# The GrantOperation enum: operation names without the "kms:" prefix, as CreateGrant takes them.
GRANT_OPERATIONS = frozenset((
    "CreateGrant", "Decapsulate", "Decrypt", "DeriveSharedSecret", "DescribeKey", "Encapsulate", "Encrypt",
    "GenerateDataKey", "GenerateDataKeyPair", "GenerateDataKeyPairWithoutPlaintext",
    "GenerateDataKeyWithoutPlaintext", "GenerateMac", "GetPublicKey", "ReEncryptFrom", "ReEncryptTo",
    "RetireGrant", "Sign", "Verify", "VerifyMac",
))
# Grant constraints apply only to operations that take an encryption context (GrantConstraints docs).
_CONTEXT_OPERATIONS = frozenset((
    "Decrypt", "Encrypt", "GenerateDataKey", "GenerateDataKeyPair", "GenerateDataKeyPairWithoutPlaintext",
    "GenerateDataKeyWithoutPlaintext", "ReEncryptFrom", "ReEncryptTo",
))

_ROOT = re.compile(r"arn:aws[a-z-]*:iam::(\d{12}):root")
_ROLE = re.compile(r"arn:(aws[a-z-]*):iam::(\d{12}):role/(?:.*/)?([^/]+)")
_SESSION = re.compile(r"arn:(aws[a-z-]*):sts::(\d{12}):assumed-role/([^/]+)/.+")
_NONE, _ACCOUNT, _DIRECT = 0, 1, 2  # how a statement's principals name the caller

ContextValue = str | list[str] | bool | int | datetime


@dataclass(frozen=True)
class RequestContext:
    principal_arn: str
    principal_account: str
    action: str  # "kms:Encrypt"; matched case-insensitively
    key_arn: str
    key_account: str
    context_keys: Mapping[str, ContextValue] = field(default_factory=dict)
    encryption_context: Mapping[str, str] | None = None
    grant_tokens: tuple[str, ...] = ()  # grants are passed in whole; tokens matter only to the caller
    requested_grant: Mapping[str, Any] | None = None  # CreateGrant's Operations and Constraints


@dataclass(frozen=True)
class Grant:
    grant_id: str
    grantee_principal: str
    retiring_principal: str | None
    operations: frozenset[str]  # "Encrypt" or "kms:Encrypt"
    constraints_equals: Mapping[str, str] | None
    constraints_subset: Mapping[str, str] | None
    key_arn: str
    issuing_account: str | None = None  # "arn:aws:iam::<account>:root" of the account that created the grant


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str


def _is_root(arn: str, account: str) -> bool:
    match = _ROOT.fullmatch(arn)
    return bool(match) and match[1] == account


def _names_account(value: str, account: str) -> bool:
    return value == account or _is_root(value, account)


def _names_directly(value: str, arn: str, account: str) -> bool:
    if value == "*" or value == arn:
        return True
    # The string tests skip the regular expressions for the many values that cannot match (grants: one
    # call may look at every grant of a key).
    if (value == account or value.endswith(":root")) and _is_root(arn, account) and _names_account(value, account):
        return True
    if ":role/" not in value or ":assumed-role/" not in arn or not value.endswith("/" + arn.split("/", 2)[1]):
        return False
    # A role ARN names every session of that role (the session ARN drops the role's path).
    role, session = _ROLE.fullmatch(value), _SESSION.fullmatch(arn)
    return bool(role and session) and role.groups() == session.groups()


def _level(principals: Sequence[Principal], ctx: RequestContext) -> int:
    level = _NONE
    for principal in principals:
        if principal.kind != "AWS":
            if principal.value == ctx.principal_arn:
                return _DIRECT
        elif _names_directly(principal.value, ctx.principal_arn, ctx.principal_account):
            return _DIRECT
        elif _names_account(principal.value, ctx.principal_account):
            level = _ACCOUNT
    return level


def _exempt(principals: Sequence[Principal], ctx: RequestContext) -> bool:
    # AWS checks a caller as its account and as itself, so NotPrincipal exempts a user or role only when
    # it lists both the caller and the caller's account (IAM guide, NotPrincipal); otherwise the deny holds.
    if _level(principals, ctx) != _DIRECT:
        return False
    return _is_root(ctx.principal_arn, ctx.principal_account) or not ctx.principal_arn.startswith("arn:") or any(
        p.kind == "AWS" and (p.value == "*" or _names_account(p.value, ctx.principal_account)) for p in principals)


def _applies(statement: Statement, action: str, ctx: RequestContext, context: Mapping[str, Any],
             key_policy: bool) -> bool:
    named = any(wildcard_match(pattern, action, ignore_case=True) for pattern in statement.actions)
    if named == statement.not_action:
        return False
    if statement.resources is None:
        on_key = key_policy  # a key policy's resource is its key; an identity statement needs a Resource
    else:
        on_key = any(wildcard_match(pattern, ctx.key_arn) for pattern in statement.resources) != statement.not_resource
    return on_key and conditions_hold(statement.conditions, context, unknown=statement.effect == "Deny")


def _key_statement_level(statement: Statement, action: str, ctx: RequestContext, context: Mapping[str, Any]) -> int:
    if not statement.principals or not _applies(statement, action, ctx, context, key_policy=True):
        return _NONE
    if statement.not_principal:  # AWS supports NotPrincipal only with Deny; with Allow it grants nothing
        return _DIRECT if statement.effect == "Deny" and not _exempt(statement.principals, ctx) else _NONE
    return _level(statement.principals, ctx)


def _context(ctx: RequestContext) -> dict[str, Any]:
    """The request's condition keys: what the caller supplied, over what follows from the request itself."""
    derived: dict[str, Any] = {
        "kms:calleraccount": ctx.principal_account, "aws:principalaccount": ctx.principal_account,
        "aws:principalarn": ctx.principal_arn,
    }
    if ctx.encryption_context is not None:
        derived["kms:encryptioncontextkeys"] = list(ctx.encryption_context)
        derived.update({f"kms:encryptioncontext:{k.lower()}": v for k, v in ctx.encryption_context.items()})
    derived.update(normalize_context(ctx.context_keys))
    return derived


def _pairs(context: Mapping[str, str] | None) -> set[tuple[str, str]]:
    # In a grant constraint the key is case-insensitive and the value case-sensitive (GrantConstraints docs).
    return {(key.lower(), value) for key, value in (context or {}).items()}


def _grant_allows(grant: Grant, ctx: RequestContext, operation: str, context: Mapping[str, Any]) -> bool:
    # Cheapest tests first: a key may hold 50,000 grants, and most of them name someone else.
    if grant.key_arn != ctx.key_arn or operation not in GRANT_OPERATIONS or grant.grantee_principal == "*" \
            or not _names_directly(grant.grantee_principal, ctx.principal_arn, ctx.principal_account):
        return False
    listed = {name.lower().removeprefix("kms:") for name in grant.operations}
    if operation.lower() not in listed:
        return False
    if operation == "CreateGrant" and ctx.requested_grant is not None and not _no_wider(ctx.requested_grant, grant, listed):
        return False
    if operation not in _CONTEXT_OPERATIONS or context.get("kms:keyspec", "SYMMETRIC_DEFAULT") != "SYMMETRIC_DEFAULT":
        return True  # no encryption context here (asymmetric crypto, DescribeKey...): constraints do not apply
    request = _pairs(ctx.encryption_context)
    if grant.constraints_equals and _pairs(grant.constraints_equals) != request:
        return False
    return not grant.constraints_subset or _pairs(grant.constraints_subset) <= request


def _no_wider(requested: Mapping[str, Any], grant: Grant, listed: set[str]) -> bool:
    """A grantee allowed CreateGrant may pass on only what it holds (Developer Guide, "Grant constraints"):
    the same or fewer operations, and constraints at least as strict as its own grant's."""
    if not {str(op).lower() for op in requested.get("Operations") or ()} <= listed:
        return False
    constraints = requested.get("Constraints") or {}
    equals, subset = constraints.get("EncryptionContextEquals"), constraints.get("EncryptionContextSubset")
    if grant.constraints_equals:
        return subset is None and _pairs(equals) == _pairs(grant.constraints_equals)
    if grant.constraints_subset:
        return any(held is not None and _pairs(grant.constraints_subset) <= _pairs(held) for held in (equals, subset))
    return True


def evaluate(ctx: RequestContext, key_policy: PolicyDocument, identity_policies: Sequence[PolicyDocument],
             grants: Sequence[Grant]) -> Decision:
    action = canonical_action(ctx.action)
    if action is None:
        return Decision(False, f"'{ctx.action}' is not a KMS action")
    context = _context(ctx)
    key_hits = [(s, _key_statement_level(s, action, ctx, context)) for s in key_policy.statements]
    for statement, level in key_hits:
        if statement.effect == "Deny" and level:  # a Deny naming an account covers everyone in it
            return Decision(False, f"explicit deny in key policy statement {statement.label}")
    identity = [s for policy in identity_policies for s in policy.statements
                if _applies(s, action, ctx, context, key_policy=False)]
    for statement in identity:
        if statement.effect == "Deny":
            return Decision(False, f"explicit deny in identity policy statement {statement.label}")
    cross_account = ctx.principal_account != ctx.key_account
    if cross_account and action not in CROSS_ACCOUNT_ACTIONS:
        return Decision(False, f"{action} cannot be used on a KMS key in another account")
    allows = [(statement, level) for statement, level in key_hits if statement.effect == "Allow" and level]
    direct = next((statement for statement, level in allows if level == _DIRECT), None)
    delegating = next((statement for statement, level in allows if level == _ACCOUNT), None)
    iam = next((statement for statement in identity if statement.effect == "Allow"), None)
    if not cross_account and direct:
        return Decision(True, f"allowed by key policy statement {direct.label}")
    if not cross_account and delegating and iam:
        return Decision(True, f"allowed by identity policy statement {iam.label} "
                              f"(key policy statement {delegating.label} delegates to IAM)")
    key_side = direct or delegating
    if cross_account and key_side and _is_root(ctx.principal_arn, ctx.principal_account):
        return Decision(True, f"allowed by key policy statement {key_side.label} (caller is its account's root)")
    if cross_account and key_side and iam:
        return Decision(True, f"allowed by key policy statement {key_side.label} "
                              f"and identity policy statement {iam.label}")
    grant = next((g for g in grants if _grant_allows(g, ctx, action.removeprefix("kms:"), context)), None)
    if grant:
        return Decision(True, f"allowed by grant {grant.grant_id}")
    return Decision(False, _no_allow_reason(ctx, key_side, iam, cross_account))


def evaluate_identity(ctx: RequestContext, identity_policies: Sequence[PolicyDocument]) -> Decision:
    """Operations with no key to hold a policy (CreateKey, ListKeys, GenerateRandom...: resource "*") and the
    alias side of alias operations: IAM policies alone decide, and an account's root user may do anything in
    its own account (IAM guide: the root user's permissions cannot be limited by identity policies).
    Actions of other services (cloudtrail:LookupEvents for the audit query API) are matched as written."""
    action = canonical_action(ctx.action) if ctx.action.lower().startswith("kms:") else ctx.action
    if action is None:
        return Decision(False, f"'{ctx.action}' is not a KMS action")
    context = _context(ctx)
    identity = [s for policy in identity_policies for s in policy.statements
                if _applies(s, action, ctx, context, key_policy=False)]
    for statement in identity:
        if statement.effect == "Deny":
            return Decision(False, f"explicit deny in identity policy statement {statement.label}")
    if ctx.principal_account != ctx.key_account:
        return Decision(False, f"{action} on {ctx.key_arn} cannot be used from another account")
    if _is_root(ctx.principal_arn, ctx.principal_account):
        return Decision(True, "the account's root user")
    allow = next((statement for statement in identity if statement.effect == "Allow"), None)
    if allow:
        return Decision(True, f"allowed by identity policy statement {allow.label}")
    return Decision(False, "no identity-based policy allows")


def _no_allow_reason(ctx: RequestContext, key_side: Statement | None, iam: Statement | None, cross: bool) -> str:
    if key_side and not iam and cross:
        return (f"no policy allows: key policy statement {key_side.label} allows it, but a caller from another "
                f"account also needs an identity policy of its own that allows it")
    if key_side and not iam:
        return (f"no policy allows: key policy statement {key_side.label} delegates to IAM, "
                f"and no identity policy of {ctx.principal_arn} allows it")
    if iam and not key_side:
        whom = f"account {ctx.principal_account}" if cross else f"{ctx.principal_arn} or its account root"
        return (f"no policy allows: identity policy statement {iam.label} allows it, but the key policy "
                f"does not name {whom}, so IAM policies cannot grant access to this key")
    return "no policy allows"


def denial_message(ctx: RequestContext, decision: Decision | None = None) -> str:
    """AWS's AccessDeniedException text. With the decision, an explicit deny is named as AWS names it."""
    action = canonical_action(ctx.action) or ctx.action
    message = f"User: {ctx.principal_arn} is not authorized to perform: {action} on resource: {ctx.key_arn}"
    if decision and decision.reason.startswith("explicit deny in key policy"):
        return f"{message} with an explicit deny in a resource-based policy"
    if decision and decision.reason.startswith("explicit deny in identity policy"):
        return f"{message} with an explicit deny in an identity-based policy"
    if decision and decision.reason == "no identity-based policy allows":
        return f"{message} because no identity-based policy allows the {action} action"
    return f"{message} because no resource-based policy allows the {action} action"


def could_perform(principal_arn: str, principal_account: str, action: str, key_arn: str, key_account: str,
                  key_policy: PolicyDocument, identity_policies: Sequence[PolicyDocument], grants: Sequence[Grant],
                  context_keys: Mapping[str, ContextValue] | None = None) -> Decision:
    """``evaluate`` for a question rather than a request (point-in-time "could X do Y on this key?"):
    condition keys the caller does not supply are absent, so conditions on them decide as for a missing key."""
    ctx = RequestContext(principal_arn, principal_account, action, key_arn, key_account, dict(context_keys or {}))
    return evaluate(ctx, key_policy, identity_policies, grants)


def can_retire(grant: Grant, principal_arn: str, principal_account: str) -> Decision:
    """RetireGrant is decided by the grant itself: its retiring principal, a grantee it gives RetireGrant, or
    (AWS's backup) the account in which the grant was created, here its root user."""
    if grant.retiring_principal and _names_directly(grant.retiring_principal, principal_arn, principal_account) \
            and grant.retiring_principal != "*":
        return Decision(True, f"retiring principal of grant {grant.grant_id}")
    if "retiregrant" in {name.lower().removeprefix("kms:") for name in grant.operations} \
            and _names_directly(grant.grantee_principal, principal_arn, principal_account) \
            and grant.grantee_principal != "*":
        return Decision(True, f"grantee of grant {grant.grant_id}, which allows RetireGrant")
    issuer = _ROOT.fullmatch(grant.issuing_account or "")
    if issuer and _is_root(principal_arn, issuer[1]):
        return Decision(True, f"root of account {issuer[1]}, in which grant {grant.grant_id} was created")
    return Decision(False, f"{principal_arn} may not retire grant {grant.grant_id}")
