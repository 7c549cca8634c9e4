"""The condition keys of a call (AWS KMS Developer Guide, "Condition keys for AWS KMS"; IAM "global condition
context keys"): what a policy's Condition block can test, derived from the request and the key it names.

Only keys the request actually carries are set: a missing key is how IAM tells "absent" from "empty", and
``...IfExists`` / ``Null`` conditions depend on that difference.
"""
from __future__ import annotations

from datetime import datetime
from typing import Any, Mapping

# Which request member holds the encryption context an action is judged on: ReEncrypt is authorized as
# ReEncryptFrom (the source context) and ReEncryptTo (the destination context).
_CONTEXT_MEMBER = {"kms:ReEncryptFrom": "SourceEncryptionContext", "kms:ReEncryptTo": "DestinationEncryptionContext"}
_ALGORITHM_MEMBER = {"kms:ReEncryptFrom": "SourceEncryptionAlgorithm",
                     "kms:ReEncryptTo": "DestinationEncryptionAlgorithm"}
# Condition key <- request member, where the member's value is the key's value as is.
_FROM_PARAMS = {
    "kms:SigningAlgorithm": "SigningAlgorithm", "kms:MacAlgorithm": "MacAlgorithm",
    "kms:MessageType": "MessageType", "kms:KeyAgreementAlgorithm": "KeyAgreementAlgorithm",
    "kms:DataKeyPairSpec": "KeyPairSpec", "kms:GrantOperations": "Operations",
    "kms:GranteePrincipal": "GranteePrincipal", "kms:RetiringPrincipal": "RetiringPrincipal",
    "kms:RotationPeriodInDays": "RotationPeriodInDays", "kms:WrappingAlgorithm": "WrappingAlgorithm",
    "kms:WrappingKeySpec": "WrappingKeySpec", "kms:ExpirationModel": "ExpirationModel",
    "kms:BypassPolicyLockoutSafetyCheck": "BypassPolicyLockoutSafetyCheck",
    "kms:CustomerMasterKeySpec": "CustomerMasterKeySpec",
    "kms:ReplicaRegion": "ReplicaRegion", "kms:PrimaryRegion": "PrimaryRegion",  # ReplicateKey, UpdatePrimaryRegion
}


def encryption_context(action: str, params: Mapping[str, Any]) -> Mapping[str, str] | None:
    value = params.get(_CONTEXT_MEMBER.get(action, "EncryptionContext"))
    return value if isinstance(value, dict) else None


def request_alias(params: Mapping[str, Any], member: str = "KeyId") -> str | None:
    """kms:RequestAlias: the alias name the caller used to name the key (alias name or alias ARN)."""
    value = params.get(member)
    if not isinstance(value, str):
        return None
    if value.startswith("alias/"):
        return value
    return value.split(":", 5)[5] if value.startswith("arn:") and ":alias/" in value else None


def condition_keys(action: str, params: Mapping[str, Any], *, source_ip: str | None, secure_transport: bool,
                   now: datetime, key_spec: str | None = None, key_usage: str | None = None,
                   key_origin: str | None = None) -> dict[str, Any]:
    keys: dict[str, Any] = {"aws:SecureTransport": secure_transport, "aws:CurrentTime": now,
                            "aws:EpochTime": str(int(now.timestamp())), "kms:GrantIsForAWSResource": False}
    if source_ip:
        keys["aws:SourceIp"] = source_ip
    for name, value in (("kms:KeySpec", key_spec), ("kms:KeyUsage", key_usage), ("kms:KeyOrigin", key_origin)):
        if value:
            keys[name] = value
    for name, member in _FROM_PARAMS.items():
        if params.get(member) is not None:
            keys[name] = params[member]
    algorithm = params.get(_ALGORITHM_MEMBER.get(action, "EncryptionAlgorithm"))
    if algorithm is not None:
        keys["kms:EncryptionAlgorithm"] = algorithm
    elif action in ("kms:Encrypt", "kms:Decrypt", "kms:ReEncryptFrom", "kms:ReEncryptTo", "kms:GenerateDataKey",
                    "kms:GenerateDataKeyWithoutPlaintext"):
        keys["kms:EncryptionAlgorithm"] = "SYMMETRIC_DEFAULT"  # the API's default, and what AWS evaluates
    if action == "kms:CreateKey":  # CreateKey's key facts come from the request
        keys.update({k: v for k, v in (("kms:KeySpec", params.get("KeySpec") or params.get("CustomerMasterKeySpec")),
                                       ("kms:KeyUsage", params.get("KeyUsage")),
                                       ("kms:KeyOrigin", params.get("Origin"))) if v})
        if params.get("MultiRegion") is not None:
            keys["kms:MultiRegion"] = bool(params["MultiRegion"])
    alias = request_alias(params, "SourceKeyId" if action == "kms:ReEncryptFrom" else
                          "DestinationKeyId" if action == "kms:ReEncryptTo" else "KeyId")
    if alias:
        keys["kms:RequestAlias"] = alias
    return keys
