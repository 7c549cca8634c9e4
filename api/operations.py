"""The KMS operations this server answers: each maps a parsed request to one application call.

Requests arrive already validated against botocore's model (api/wire_model.py), so handlers only
translate member names; all rules live in the application and domain layers.
"""
from __future__ import annotations

from typing import Any, Callable

from domain.identifiers import Scope
from infrastructure.bootstrap import Runtime

Handler = Callable[[Runtime, Scope, dict[str, Any]], dict[str, Any] | None]


def _tags(p: dict[str, Any], member: str = "Tags") -> dict[str, str]:
    return {t["TagKey"]: t["TagValue"] for t in p.get(member) or []}


def _create_key(rt: Runtime, s: Scope, p: dict[str, Any]) -> dict[str, Any]:
    return rt.keys.create_key(
        s, key_spec=p.get("KeySpec") or p.get("CustomerMasterKeySpec"), key_usage=p.get("KeyUsage"),
        origin=p.get("Origin"), description=p.get("Description", ""), policy=p.get("Policy"), tags=_tags(p))


def _crypto(method: str, **members: str) -> Handler:
    """A crypto handler: ``members`` maps keyword argument -> request member."""
    def handler(rt: Runtime, s: Scope, p: dict[str, Any]) -> dict[str, Any]:
        return getattr(rt.crypto, method)(s, **{arg: p.get(member) for arg, member in members.items()},
                                          dry_run=bool(p.get("DryRun")))
    return handler


HANDLERS: dict[str, Handler] = {
    "CreateKey": _create_key,
    "DescribeKey": lambda rt, s, p: rt.keys.describe_key(s, p["KeyId"]),
    "ListKeys": lambda rt, s, p: rt.keys.list_keys(s, p.get("Limit"), p.get("Marker")),
    "EnableKey": lambda rt, s, p: rt.keys.enable_key(s, p["KeyId"]),
    "DisableKey": lambda rt, s, p: rt.keys.disable_key(s, p["KeyId"]),
    "UpdateKeyDescription": lambda rt, s, p: rt.keys.update_key_description(s, p["KeyId"], p["Description"]),
    "ScheduleKeyDeletion": lambda rt, s, p: rt.keys.schedule_key_deletion(s, p["KeyId"], p.get("PendingWindowInDays")),
    "CancelKeyDeletion": lambda rt, s, p: rt.keys.cancel_key_deletion(s, p["KeyId"]),
    "TagResource": lambda rt, s, p: rt.keys.tag_resource(s, p["KeyId"], _tags(p)),
    "UntagResource": lambda rt, s, p: rt.keys.untag_resource(s, p["KeyId"], p["TagKeys"]),
    "ListResourceTags": lambda rt, s, p: rt.keys.list_resource_tags(s, p["KeyId"], p.get("Limit"), p.get("Marker")),
    "GetKeyPolicy": lambda rt, s, p: rt.keys.get_key_policy(s, p["KeyId"], p.get("PolicyName")),
    "CreateAlias": lambda rt, s, p: rt.keys.create_alias(s, p["AliasName"], p["TargetKeyId"]),
    "UpdateAlias": lambda rt, s, p: rt.keys.update_alias(s, p["AliasName"], p["TargetKeyId"]),
    "DeleteAlias": lambda rt, s, p: rt.keys.delete_alias(s, p["AliasName"]),
    "ListAliases": lambda rt, s, p: rt.keys.list_aliases(s, p.get("KeyId"), p.get("Limit"), p.get("Marker")),
    "Encrypt": _crypto("encrypt", key_ref="KeyId", plaintext="Plaintext", context="EncryptionContext",
                       algorithm="EncryptionAlgorithm"),
    "Decrypt": _crypto("decrypt", blob="CiphertextBlob", key_ref="KeyId", context="EncryptionContext",
                       algorithm="EncryptionAlgorithm"),
    "ReEncrypt": _crypto("re_encrypt", blob="CiphertextBlob", destination_key_ref="DestinationKeyId",
                         source_key_ref="SourceKeyId", source_context="SourceEncryptionContext",
                         destination_context="DestinationEncryptionContext",
                         source_algorithm="SourceEncryptionAlgorithm",
                         destination_algorithm="DestinationEncryptionAlgorithm"),
    "GenerateDataKey": _crypto("generate_data_key", key_ref="KeyId", key_spec="KeySpec",
                               number_of_bytes="NumberOfBytes", context="EncryptionContext"),
    "GenerateDataKeyWithoutPlaintext": lambda rt, s, p: rt.crypto.generate_data_key(
        s, p["KeyId"], key_spec=p.get("KeySpec"), number_of_bytes=p.get("NumberOfBytes"),
        context=p.get("EncryptionContext"), with_plaintext=False, dry_run=bool(p.get("DryRun"))),
    "GenerateRandom": lambda rt, s, p: rt.crypto.generate_random(p.get("NumberOfBytes")),
}
