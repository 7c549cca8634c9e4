"""Policy documents, parsed once and checked as AWS checks them before a policy is stored.

Two kinds share the grammar: key policies (``require_principal=True``: every statement names a Principal
or NotPrincipal, Resource is optional and means "this key") and IAM identity policies (no Principal: the
policy belongs to its principal; Resource is required, as IAM requires it). Every refusal is a
``MalformedPolicyDocumentError`` that names the statement (by Sid, else by 1-based position) and the value
at fault, so the caller can fix the document without guessing.
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from domain.errors import MalformedPolicyDocumentError, shown
from domain.policy.conditions import Condition, condition_value_error, parse_operator
from domain.policy.wildcard import wildcard_match

MAX_POLICY_BYTES = 32768
# IAM accepts only tab, line feed, carriage return and U+0020..U+00FF in a policy (IAM quotas, names).
_IAM_CHARACTERS = re.compile(r"[^\t\n\r\x20-\xff]")
VERSIONS = ("2012-10-17", "2008-10-17")
# Every IAM action of the kms service (Service Authorization Reference); the ReEncrypt API is authorized
# as two actions, ReEncryptFrom on the source key and ReEncryptTo on the destination.
KMS_OPERATIONS = (
    "CancelKeyDeletion", "ConnectCustomKeyStore", "CreateAlias", "CreateCustomKeyStore", "CreateGrant",
    "CreateKey", "Decapsulate", "Decrypt", "DeleteAlias", "DeleteCustomKeyStore", "DeleteImportedKeyMaterial",
    "DeriveSharedSecret", "DescribeCustomKeyStores", "DescribeKey", "DisableKey", "DisableKeyRotation",
    "DisconnectCustomKeyStore", "EnableKey", "EnableKeyRotation", "Encapsulate", "Encrypt", "GenerateDataKey",
    "GenerateDataKeyPair", "GenerateDataKeyPairWithoutPlaintext", "GenerateDataKeyWithoutPlaintext",
    "GenerateMac", "GenerateRandom", "GetKeyLastUsage", "GetKeyPolicy", "GetKeyRotationStatus",
    "GetParametersForImport", "GetPublicKey", "ImportKeyMaterial", "ListAliases", "ListGrants",
    "ListKeyPolicies", "ListKeyRotations", "ListKeys", "ListResourceTags", "ListRetirableGrants", "PutKeyPolicy",
    "ReEncryptFrom", "ReEncryptTo", "ReplicateKey", "RetireGrant", "RevokeGrant", "RotateKeyOnDemand",
    "ScheduleKeyDeletion", "Sign", "SynchronizeMultiRegionKey", "TagResource", "UntagResource", "UpdateAlias",
    "UpdateCustomKeyStore", "UpdateKeyDescription", "UpdatePrimaryRegion", "Verify", "VerifyMac",
)
KMS_ACTIONS = frozenset(f"kms:{operation}" for operation in KMS_OPERATIONS)
_CANONICAL_ACTIONS = {action.lower(): action for action in KMS_ACTIONS}

_STATEMENT_ELEMENTS = {"Sid", "Effect", "Principal", "NotPrincipal", "Action", "NotAction", "Resource",
                       "NotResource", "Condition"}
_ACCOUNT_ID = re.compile(r"\d{12}")
_PRINCIPAL_ARN = re.compile(
    r"arn:aws[a-z-]*:(?:iam::\d{12}:(?:root|user/.+|role/.+)|sts::\d{12}:(?:assumed-role/[^/]+/.+|federated-user/.+))")
_SERVICE_PRINCIPAL = re.compile(r"[a-z0-9-]+(?:\.[a-z0-9-]+)+")
_ACTION = re.compile(r"(?P<service>[A-Za-z0-9-]+):(?P<operation>[A-Za-z0-9*?]+)")


def canonical_action(action: str) -> str | None:
    """``kms:encrypt`` -> ``kms:Encrypt``; None for anything that is not a KMS action."""
    return _CANONICAL_ACTIONS.get(action.lower())


@dataclass(frozen=True)
class Principal:
    kind: str  # "AWS" or "Service"; a bare "*" principal is AWS "*", as IAM reads it
    value: str


@dataclass(frozen=True)
class Statement:
    index: int  # 1-based position in the document
    sid: str | None
    effect: str  # "Allow" | "Deny"
    actions: tuple[str, ...]
    not_action: bool = False
    principals: tuple[Principal, ...] | None = None  # None in identity policies
    not_principal: bool = False
    resources: tuple[str, ...] | None = None  # None when the statement has no Resource element
    not_resource: bool = False
    conditions: tuple[Condition, ...] = ()

    @property
    def label(self) -> str:
        return f"'{shown(self.sid)}'" if self.sid else f"#{self.index}"


@dataclass(frozen=True)
class PolicyDocument:
    version: str
    statements: tuple[Statement, ...]
    id: str | None = None

    @cached_property
    def unconditional(self) -> bool:
        """No statement has a Condition: the verdict depends on who asks for what on which key, nothing else."""
        return not any(statement.conditions for statement in self.statements)


def _malformed(message: str) -> MalformedPolicyDocumentError:
    return MalformedPolicyDocumentError(message)


def _not_json(constant: str) -> Any:
    raise ValueError(f"{constant} is not a JSON value")  # Python's json accepts NaN and Infinity; JSON does not


def parse_policy(text: str, *, require_principal: bool = True) -> PolicyDocument:
    """Parse and check a key policy (default) or, with ``require_principal=False``, an identity policy."""
    kind = "key policy" if require_principal else "policy"
    if len(text.encode("utf-8", "surrogatepass")) > MAX_POLICY_BYTES:
        raise _malformed(f"The {kind} is larger than {MAX_POLICY_BYTES} bytes.")
    outside = None if require_principal else _IAM_CHARACTERS.search(text)
    if outside:
        raise _malformed(f"The {kind} has a character IAM does not accept (U+{ord(outside.group()):04X} at "
                         f"position {outside.start() + 1}): use tab, line feed, carriage return and U+0020 to U+00FF.")
    try:
        document = json.loads(text, parse_constant=_not_json)
    except ValueError as exc:
        raise _malformed(f"The {kind} is not valid JSON: {exc}.") from None
    except RecursionError:
        raise _malformed(f"The {kind} is nested too deeply.") from None
    if not isinstance(document, dict):
        raise _malformed(f"The {kind} must be a JSON object.")
    escaped = None if require_principal else _outside_iam_characters(document)
    if escaped:
        raise _malformed(f"The {kind} has a character IAM does not accept (U+{ord(escaped):04X}, written as a "
                         f"JSON escape): use tab, line feed, carriage return and U+0020 to U+00FF.")
    unknown = sorted(set(document) - {"Version", "Id", "Statement"})
    if unknown:
        raise _malformed(f"The {kind} has an unknown element '{shown(unknown[0])}' (allowed: Version, Id, Statement).")
    version = document.get("Version")
    if version not in VERSIONS:
        raise _malformed(f"The {kind} needs 'Version' of \"2012-10-17\" or \"2008-10-17\", not {shown(json.dumps(version))}.")
    policy_id = document.get("Id")
    if policy_id is not None and not isinstance(policy_id, str):
        raise _malformed(f"The {kind}'s 'Id' must be a string.")
    raw_statements = document.get("Statement")
    if isinstance(raw_statements, dict):
        raw_statements = [raw_statements]
    if not isinstance(raw_statements, list) or not raw_statements:
        raise _malformed(f"The {kind} needs a 'Statement': an object or a non-empty list of objects.")
    statements = tuple(_statement(raw, index, require_principal) for index, raw in enumerate(raw_statements, 1))
    sids = [statement.sid for statement in statements if statement.sid]
    if not require_principal and len(sids) != len(set(sids)):  # IAM requires unique Sids; KMS does not say
        raise _malformed(f"Statement ids (Sid) must be unique in the {kind}.")
    return PolicyDocument(version=version, statements=statements, id=policy_id)


def _outside_iam_characters(value: Any) -> str | None:
    """The first character outside IAM's set in the decoded document (a JSON escape hides it from the text)."""
    if isinstance(value, str):
        found = _IAM_CHARACTERS.search(value)
        return found.group() if found else None
    items = [*value.keys(), *value.values()] if isinstance(value, dict) else value if isinstance(value, list) else []
    return next((c for c in map(_outside_iam_characters, items) if c), None)


def policy_size(text: str) -> int:
    """A policy's size as IAM counts it against its quotas: characters other than white space."""
    return sum(1 for character in text if not character.isspace())


def _statement(raw: Any, index: int, key_policy: bool) -> Statement:
    if not isinstance(raw, dict):
        raise _malformed(f"Statement {index} must be a JSON object.")
    sid = raw.get("Sid")
    if sid is not None and not isinstance(sid, str):
        raise _malformed(f"Statement {index}: 'Sid' must be a string.")
    name = f"Statement '{shown(sid)}'" if sid else f"Statement {index}"
    if sid and not key_policy and not sid.isalnum():  # key policy Sids may hold spaces; IAM Sids may not
        raise _malformed(f"{name}: an identity policy Sid may contain only letters and digits.")
    unknown = sorted(set(raw) - _STATEMENT_ELEMENTS)
    if unknown:
        raise _malformed(f"{name} has an unknown element '{shown(unknown[0])}'.")
    effect = raw.get("Effect")
    if effect not in ("Allow", "Deny"):
        raise _malformed(f"{name} needs 'Effect' of \"Allow\" or \"Deny\", not {shown(json.dumps(effect))}.")
    action_key = _exactly_one(raw, "Action", "NotAction", name, required=True)
    actions = _strings(raw[action_key], action_key, name)
    for action in actions:
        _check_action(action, name, key_policy)
    principal_key = _exactly_one(raw, "Principal", "NotPrincipal", name, required=key_policy)
    principals = None
    if principal_key and not key_policy:
        raise _malformed(f"{name}: an identity policy must not name a {principal_key}; it applies to its owner.")
    if principal_key:
        if principal_key == "NotPrincipal" and effect == "Allow":
            raise _malformed(f"{name}: NotPrincipal can only be used with \"Effect\": \"Deny\".")
        principals = _principals(raw[principal_key], principal_key, name)
    resource_key = _exactly_one(raw, "Resource", "NotResource", name, required=not key_policy)
    resources = _strings(raw[resource_key], resource_key, name) if resource_key else None
    for resource in resources or ():
        if resource != "*" and not resource.startswith("arn:"):
            raise _malformed(f"{name} has an invalid {resource_key} '{shown(resource)}': use \"*\" or an ARN.")
    conditions = _conditions(raw["Condition"], name) if "Condition" in raw else ()
    return Statement(
        index=index, sid=sid or None, effect=effect, actions=actions, not_action=action_key == "NotAction",
        principals=principals, not_principal=principal_key == "NotPrincipal", resources=resources,
        not_resource=resource_key == "NotResource", conditions=conditions,
    )


def _exactly_one(raw: dict, positive: str, negative: str, name: str, *, required: bool) -> str | None:
    present = [key for key in (positive, negative) if key in raw]
    if len(present) == 2:
        raise _malformed(f"{name} has both '{positive}' and '{negative}'; use one.")
    if not present and required:
        raise _malformed(f"{name} needs '{positive}' or '{negative}'.")
    return present[0] if present else None


def _strings(value: Any, element: str, name: str) -> tuple[str, ...]:
    values = value if isinstance(value, list) else [value]
    if not values or not all(isinstance(item, str) and item for item in values):
        raise _malformed(f"{name}: '{element}' must be a non-empty string or a non-empty list of them.")
    return tuple(values)


def _check_action(action: str, name: str, key_policy: bool) -> None:
    if action == "*":
        return
    match = _ACTION.fullmatch(action)
    if match and match["service"].lower() != "kms":
        if not key_policy:  # identity policies cover other services too; those actions never match KMS
            return
        raise _malformed(f"{name} has action '{shown(action)}', which is not a KMS action; a key policy "
                         f"governs only kms:<operation> actions.")
    if not match or not any(wildcard_match(match["operation"], known, True) for known in KMS_OPERATIONS):
        raise _malformed(f"{name} has an unknown action '{shown(action)}': use kms:<operation> or a wildcard that "
                         f"matches one, for example kms:Encrypt or kms:GenerateDataKey*.")


def _principals(value: Any, element: str, name: str) -> tuple[Principal, ...]:
    if value == "*":
        return (Principal("AWS", "*"),)
    if not isinstance(value, dict) or not value:
        raise _malformed(f"{name}: '{element}' must be \"*\" or an object such as {{\"AWS\": \"<account or ARN>\"}}.")
    principals = []
    for kind, values in value.items():
        if kind not in ("AWS", "Service"):
            raise _malformed(f"{name} has an unsupported principal type '{shown(kind)}' (use AWS or Service).")
        for item in _strings(values, f"{element}.{kind}", name):
            if kind == "AWS" and item != "*" and ("*" in item or "?" in item):
                raise _malformed(f"{name} has principal '{shown(item)}': wildcards are allowed only as the whole "
                                 f"principal \"*\"; use a condition on aws:PrincipalArn instead.")
            valid = (item == "*" or _ACCOUNT_ID.fullmatch(item) or _PRINCIPAL_ARN.fullmatch(item)) \
                if kind == "AWS" else _SERVICE_PRINCIPAL.fullmatch(item)
            if not valid:
                raise _malformed(f"{name} has an invalid {shown(kind)} principal '{shown(item)}'.")
            principals.append(Principal(kind, item))
    return tuple(principals)


def _condition_text(value: Any) -> str | None:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return json.dumps(value) if math.isfinite(value) else None
    return value if isinstance(value, str) else None


def _conditions(value: Any, name: str) -> tuple[Condition, ...]:
    if not isinstance(value, dict):
        raise _malformed(f"{name}: 'Condition' must be an object of {{operator: {{key: value}}}}.")
    conditions = []
    for operator, block in value.items():
        if parse_operator(operator) is None:
            raise _malformed(f"{name} has an unknown condition operator '{shown(operator)}'.")
        if not isinstance(block, dict) or not block:
            raise _malformed(f"{name}: condition operator '{shown(operator)}' needs an object of condition keys.")
        for key, values in block.items():
            items = values if isinstance(values, list) else [values]
            texts = [_condition_text(item) for item in items]
            if not key or not texts or any(text is None for text in texts):
                raise _malformed(f"{name}: condition '{shown(operator)}' on '{shown(key)}' needs a string, number or boolean "
                                 f"value, or a non-empty list of them.")
            for text in texts:
                error = condition_value_error(operator, text)
                if error:
                    raise _malformed(f"{name}: {error} (condition key '{shown(key)}').")
            conditions.append(Condition(operator, key, tuple(texts)))
    return tuple(conditions)
