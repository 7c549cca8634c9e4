"""The KMS operations this server answers: each maps a parsed request to one application call.

Requests arrive already validated against botocore's model (api/wire_model.py), so handlers only
translate member names; all rules live in the application and domain layers.
"""
from __future__ import annotations

from typing import Any, Callable

from application.calls import Call
from domain.errors import TagError, shown
from infrastructure.runtime import Services

# (services, the call, its parsed parameters) -> the response members
Handler = Callable[[Services, Call, dict[str, Any]], dict[str, Any] | None]


def _tags(p: dict[str, Any], member: str = "Tags") -> dict[str, str]:
    tags: dict[str, str] = {}
    for tag in p.get(member) or []:
        if tag["TagKey"] in tags:  # a dict would keep the last and drop the rest unsaid (decision 92)
            raise TagError(f"Duplicate tag keys are not allowed: '{shown(tag['TagKey'])}' appears more than once.")
        tags[tag["TagKey"]] = tag["TagValue"]
    return tags


def _generate_random(sv: Services, c: Call, p: dict[str, Any]) -> dict[str, Any]:
    return sv.crypto.generate_random(c, p.get("NumberOfBytes"), p.get("CustomKeyStoreId"))


def _create_grant(sv: Services, c: Call, p: dict[str, Any]) -> dict[str, Any]:
    return sv.grants.create_grant(
        c, p["KeyId"], operations=p["Operations"], grantee_principal=p.get("GranteePrincipal"),
        retiring_principal=p.get("RetiringPrincipal"), constraints=p.get("Constraints"), name=p.get("Name"),
        grantee_service_principal=p.get("GranteeServicePrincipal"),
        retiring_service_principal=p.get("RetiringServicePrincipal"), dry_run=bool(p.get("DryRun")))


def _create_key(sv: Services, c: Call, p: dict[str, Any]) -> dict[str, Any]:
    return sv.keys.create_key(
        c, key_spec=p.get("KeySpec") or p.get("CustomerMasterKeySpec"), key_usage=p.get("KeyUsage"),
        origin=p.get("Origin"), description=p.get("Description", ""), policy=p.get("Policy"), tags=_tags(p),
        bypass_lockout_check=bool(p.get("BypassPolicyLockoutSafetyCheck")), custom_key_store_id=p.get("CustomKeyStoreId"),
        multi_region=bool(p.get("MultiRegion")), xks_key_id=p.get("XksKeyId"))


def _call(service: str, method: str, *positional: str, **members: str) -> Handler:
    """A handler calling ``services.<service>.<method>(call, *positional members, **keyword members)``;
    a DryRun member, where the operation has one, is passed as dry_run."""
    def handler(sv: Services, c: Call, p: dict[str, Any]) -> dict[str, Any] | None:
        kwargs = {arg: p.get(member) for arg, member in members.items()}
        if "DryRun" in p:
            kwargs["dry_run"] = bool(p["DryRun"])
        return getattr(getattr(sv, service), method)(c, *(p.get(m) for m in positional), **kwargs)
    return handler


HANDLERS: dict[str, Handler] = {
    "CreateKey": _create_key,
    "DescribeKey": _call("keys", "describe_key", "KeyId"),
    "ListKeys": _call("keys", "list_keys", "Limit", "Marker", resource_owners="ResourceOwners"),
    "EnableKey": _call("keys", "enable_key", "KeyId"),
    "DisableKey": _call("keys", "disable_key", "KeyId"),
    "UpdateKeyDescription": _call("keys", "update_key_description", "KeyId", "Description"),
    "ScheduleKeyDeletion": _call("keys", "schedule_key_deletion", "KeyId", "PendingWindowInDays"),
    "CancelKeyDeletion": _call("keys", "cancel_key_deletion", "KeyId"),
    # multi-Region keys (application/keys/multi_region_service.py)
    "ReplicateKey": lambda sv, c, p: sv.multi_region.replicate_key(
        c, p["KeyId"], p["ReplicaRegion"], p.get("Policy"), bool(p.get("BypassPolicyLockoutSafetyCheck")),
        p.get("Description"), _tags(p)),
    "UpdatePrimaryRegion": _call("multi_region", "update_primary_region", "KeyId", "PrimaryRegion"),
    "TagResource": lambda sv, c, p: sv.keys.tag_resource(c, p["KeyId"], _tags(p)),
    "UntagResource": _call("keys", "untag_resource", "KeyId", "TagKeys"),
    "ListResourceTags": _call("keys", "list_resource_tags", "KeyId", "Limit", "Marker"),
    "GetKeyPolicy": _call("keys", "get_key_policy", "KeyId", "PolicyName"),
    "PutKeyPolicy": lambda sv, c, p: sv.keys.put_key_policy(
        c, p["KeyId"], p["Policy"], p.get("PolicyName"), bool(p.get("BypassPolicyLockoutSafetyCheck"))),
    "ListKeyPolicies": _call("keys", "list_key_policies", "KeyId", "Limit", "Marker"),
    "CreateAlias": _call("aliases", "create_alias", "AliasName", "TargetKeyId"),
    "UpdateAlias": _call("aliases", "update_alias", "AliasName", "TargetKeyId"),
    "DeleteAlias": _call("aliases", "delete_alias", "AliasName"),
    "ListAliases": _call("aliases", "list_aliases", "KeyId", "Limit", "Marker"),
    "Encrypt": _call("crypto", "encrypt", "KeyId", "Plaintext", context="EncryptionContext",
                     algorithm="EncryptionAlgorithm"),
    "Decrypt": _call("crypto", "decrypt", "CiphertextBlob", key_ref="KeyId", context="EncryptionContext",
                     algorithm="EncryptionAlgorithm", dry_run_modifiers="DryRunModifiers"),
    "ReEncrypt": _call("crypto", "re_encrypt", "CiphertextBlob", "DestinationKeyId",
                       source_key_ref="SourceKeyId", source_context="SourceEncryptionContext",
                       destination_context="DestinationEncryptionContext",
                       source_algorithm="SourceEncryptionAlgorithm",
                       destination_algorithm="DestinationEncryptionAlgorithm",
                       dry_run_modifiers="DryRunModifiers"),
    "GenerateDataKey": _call("crypto", "generate_data_key", "KeyId", key_spec="KeySpec",
                             number_of_bytes="NumberOfBytes", context="EncryptionContext"),
    "GenerateDataKeyWithoutPlaintext": lambda sv, c, p: sv.crypto.generate_data_key(
        c, p["KeyId"], key_spec=p.get("KeySpec"), number_of_bytes=p.get("NumberOfBytes"),
        context=p.get("EncryptionContext"), with_plaintext=False, dry_run=bool(p.get("DryRun"))),
    "GenerateRandom": _generate_random,
    # rotation
    "EnableKeyRotation": _call("rotation", "enable_key_rotation", "KeyId", "RotationPeriodInDays"),
    "DisableKeyRotation": _call("rotation", "disable_key_rotation", "KeyId"),
    "GetKeyLastUsage": lambda sv, c, p: sv.last_usage.get_key_last_usage(c, p["KeyId"]),  # type: ignore[union-attr]
    "GetKeyRotationStatus": _call("rotation", "get_key_rotation_status", "KeyId"),
    "RotateKeyOnDemand": _call("rotation", "rotate_key_on_demand", "KeyId"),
    "ListKeyRotations": _call("rotation", "list_key_rotations", "KeyId", "IncludeKeyMaterial", "Limit", "Marker"),
    # imported key material
    "GetParametersForImport": _call("imports", "get_parameters_for_import", "KeyId", "WrappingAlgorithm",
                                    "WrappingKeySpec"),
    "ImportKeyMaterial": _call("imports", "import_key_material", "KeyId", "ImportToken", "EncryptedKeyMaterial",
                               valid_to="ValidTo", expiration_model="ExpirationModel", import_type="ImportType",
                               key_material_id="KeyMaterialId", description="KeyMaterialDescription"),
    "DeleteImportedKeyMaterial": _call("imports", "delete_imported_key_material", "KeyId",
                                       key_material_id="KeyMaterialId"),
    # asymmetric and HMAC keys
    "GetPublicKey": _call("asymmetric", "get_public_key", "KeyId"),
    "Sign": _call("asymmetric", "sign", "KeyId", "Message", "SigningAlgorithm", "MessageType"),
    "Verify": _call("asymmetric", "verify", "KeyId", "Message", "Signature", "SigningAlgorithm", "MessageType"),
    "GenerateMac": _call("asymmetric", "generate_mac", "KeyId", "Message", "MacAlgorithm"),
    "VerifyMac": _call("asymmetric", "verify_mac", "KeyId", "Message", "Mac", "MacAlgorithm"),
    "Encapsulate": _call("asymmetric", "encapsulate", "KeyId", "EncapsulationAlgorithm"),
    "Decapsulate": _call("asymmetric", "decapsulate", "KeyId", "SharedSecretCiphertextBlob", "EncapsulationAlgorithm"),
    "DeriveSharedSecret": _call("asymmetric", "derive_shared_secret", "KeyId", "KeyAgreementAlgorithm", "PublicKey"),
    "GenerateDataKeyPair": lambda sv, c, p: sv.asymmetric.generate_data_key_pair(
        c, p["KeyId"], p["KeyPairSpec"], p.get("EncryptionContext"), True, bool(p.get("DryRun"))),
    "GenerateDataKeyPairWithoutPlaintext": lambda sv, c, p: sv.asymmetric.generate_data_key_pair(
        c, p["KeyId"], p["KeyPairSpec"], p.get("EncryptionContext"), False, bool(p.get("DryRun"))),
    # grants
    "CreateGrant": _create_grant,
    "ListGrants": _call("grants", "list_grants", "KeyId", "Limit", "Marker", grant_id="GrantId",
                        grantee_principal="GranteePrincipal", grantee_service_principal="GranteeServicePrincipal"),
    "ListRetirableGrants": _call("grants", "list_retirable_grants", "Limit", "Marker", "RetiringPrincipal",
                                 "RetiringServicePrincipal"),
    "RetireGrant": _call("grants", "retire_grant", "GrantToken", "KeyId", "GrantId"),
    "RevokeGrant": _call("grants", "revoke_grant", "KeyId", "GrantId"),
    # custom key stores (application/keystores/service.py)
    "CreateCustomKeyStore": lambda sv, c, p: sv.key_stores.create(c, p),
    "DescribeCustomKeyStores": _call("key_stores", "describe", "CustomKeyStoreId", "CustomKeyStoreName", "Limit",
                                     "Marker"),
    "UpdateCustomKeyStore": lambda sv, c, p: sv.key_stores.update(c, p),
    "DeleteCustomKeyStore": _call("key_stores", "delete", "CustomKeyStoreId"),
    "ConnectCustomKeyStore": _call("key_stores", "connect", "CustomKeyStoreId"),
    "DisconnectCustomKeyStore": _call("key_stores", "disconnect", "CustomKeyStoreId"),
}

