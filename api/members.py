"""Every request member of every KMS operation keyledger answers, and what becomes of it (decision 85).

A member is either honoured (a handler or the authorizer acts on it) or refused with a clear error when a
caller sends it, in whole or for the values keyledger cannot honour. A member botocore's model has and this
table does not name is refused too, so a member added by a newer botocore is never parsed and dropped:
tests/e2e/test_member_accounting.py fails until it is added here, with the behaviour test that proves it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping

from application.keys.grant_service import NO_SERVICE_PRINCIPALS
from domain.errors import KmsError, UnsupportedOperationError, ValidationError, shown


@dataclass(frozen=True)
class Refusal:
    """A member refused when ``when(value)`` holds (always, by default); ``partial`` when other values are
    honoured (and so need a behaviour test of their own)."""

    error: type[KmsError]
    message: str
    when: Callable[[Any], bool] = lambda value: True
    partial: bool = False

    def check(self, value: Any) -> None:
        if self.when(value):
            raise self.error(self.message)


HONOURED = None  # the member's value reaches a handler or the authorizer, which acts on it

_RECIPIENT = Refusal(
    ValidationError, "Recipient (an AWS Nitro Enclaves attestation document) is not supported by keyledger; "
    "call without Recipient.")
# External key stores: keyledger reaches XKS proxies at public endpoints only (it has no VPC endpoint services).
_VPC = Refusal(
    UnsupportedOperationError, "keyledger reaches XKS proxies at public endpoints only: use XksProxyConnectivity "
    "PUBLIC_ENDPOINT, without XksProxyVpcEndpointServiceName and XksProxyVpcEndpointServiceOwner.")
_VPC_CONNECTIVITY = Refusal(_VPC.error, _VPC.message, when=lambda value: value == "VPC_ENDPOINT_SERVICE", partial=True)
_XKS_PROXY = {"XksProxyUriEndpoint": HONOURED, "XksProxyUriPath": HONOURED, "XksProxyVpcEndpointServiceName": _VPC,
              "XksProxyVpcEndpointServiceOwner": _VPC, "XksProxyAuthenticationCredential": HONOURED,
              "XksProxyConnectivity": _VPC_CONNECTIVITY}
_STORE = {"CustomKeyStoreId": HONOURED}

_SERVICE_PRINCIPAL = Refusal(ValidationError, f"Service principals are not supported: {NO_SERVICE_PRINCIPALS}")


# The members that are honoured, per operation; any other member in the table is a Refusal.
_KEY = {"KeyId": HONOURED}
_GRANT_TOKENS = {"GrantTokens": HONOURED}
_DRY_RUN = {"DryRun": HONOURED}
_PAGE = {"Limit": HONOURED, "Marker": HONOURED}

MEMBERS: dict[str, dict[str, Refusal | None]] = {
    "CancelKeyDeletion": {**_KEY},
    "ConnectCustomKeyStore": {**_STORE},
    "CreateCustomKeyStore": {"CustomKeyStoreName": HONOURED, "CloudHsmClusterId": HONOURED,
                             "TrustAnchorCertificate": HONOURED, "KeyStorePassword": HONOURED,
                             "CustomKeyStoreType": HONOURED, **_XKS_PROXY},
    "DeleteCustomKeyStore": {**_STORE},
    "DescribeCustomKeyStores": {**_STORE, "CustomKeyStoreName": HONOURED, **_PAGE},
    "DisconnectCustomKeyStore": {**_STORE},
    "UpdateCustomKeyStore": {**_STORE, "NewCustomKeyStoreName": HONOURED, "KeyStorePassword": HONOURED,
                             "CloudHsmClusterId": HONOURED, **_XKS_PROXY},
    "CreateAlias": {"AliasName": HONOURED, "TargetKeyId": HONOURED},
    "CreateGrant": {**_KEY, "GranteePrincipal": HONOURED, "RetiringPrincipal": HONOURED, "Operations": HONOURED,
                    "Constraints": HONOURED, **_GRANT_TOKENS, "Name": HONOURED, **_DRY_RUN,
                    "GranteeServicePrincipal": _SERVICE_PRINCIPAL, "RetiringServicePrincipal": _SERVICE_PRINCIPAL},
    "CreateKey": {"Policy": HONOURED, "Description": HONOURED, "KeyUsage": HONOURED, "CustomerMasterKeySpec": HONOURED,
                  "KeySpec": HONOURED, "Origin": HONOURED, "CustomKeyStoreId": HONOURED,
                  "BypassPolicyLockoutSafetyCheck": HONOURED, "Tags": HONOURED, "MultiRegion": HONOURED,
                  "XksKeyId": HONOURED},
    "Decapsulate": {**_KEY, "SharedSecretCiphertextBlob": HONOURED, "EncapsulationAlgorithm": HONOURED,
                    **_GRANT_TOKENS, **_DRY_RUN},
    "Decrypt": {"CiphertextBlob": HONOURED, "EncryptionContext": HONOURED, **_GRANT_TOKENS, **_KEY,
                "EncryptionAlgorithm": HONOURED, "Recipient": _RECIPIENT, **_DRY_RUN, "DryRunModifiers": HONOURED},
    "DeleteAlias": {"AliasName": HONOURED},
    "DeleteImportedKeyMaterial": {**_KEY, "KeyMaterialId": HONOURED},
    "DeriveSharedSecret": {**_KEY, "KeyAgreementAlgorithm": HONOURED, "PublicKey": HONOURED, **_GRANT_TOKENS,
                           **_DRY_RUN, "Recipient": _RECIPIENT},
    "DescribeKey": {**_KEY, **_GRANT_TOKENS},
    "DisableKey": {**_KEY},
    "DisableKeyRotation": {**_KEY},
    "EnableKey": {**_KEY},
    "EnableKeyRotation": {**_KEY, "RotationPeriodInDays": HONOURED},
    "Encapsulate": {**_KEY, "EncapsulationAlgorithm": HONOURED, **_GRANT_TOKENS, **_DRY_RUN},
    "Encrypt": {**_KEY, "Plaintext": HONOURED, "EncryptionContext": HONOURED, **_GRANT_TOKENS,
                "EncryptionAlgorithm": HONOURED, **_DRY_RUN},
    "GenerateDataKey": {**_KEY, "EncryptionContext": HONOURED, "NumberOfBytes": HONOURED, "KeySpec": HONOURED,
                        **_GRANT_TOKENS, "Recipient": _RECIPIENT, **_DRY_RUN},
    "GenerateDataKeyPair": {"EncryptionContext": HONOURED, **_KEY, "KeyPairSpec": HONOURED, **_GRANT_TOKENS,
                            "Recipient": _RECIPIENT, **_DRY_RUN},
    "GenerateDataKeyPairWithoutPlaintext": {"EncryptionContext": HONOURED, **_KEY, "KeyPairSpec": HONOURED,
                                            **_GRANT_TOKENS, **_DRY_RUN},
    "GenerateDataKeyWithoutPlaintext": {**_KEY, "EncryptionContext": HONOURED, "KeySpec": HONOURED,
                                        "NumberOfBytes": HONOURED, **_GRANT_TOKENS, **_DRY_RUN},
    "GenerateMac": {"Message": HONOURED, **_KEY, "MacAlgorithm": HONOURED, **_GRANT_TOKENS, **_DRY_RUN},
    "GenerateRandom": {"NumberOfBytes": HONOURED, "CustomKeyStoreId": HONOURED, "Recipient": _RECIPIENT},
    "GetKeyLastUsage": {**_KEY},
    "GetKeyPolicy": {**_KEY, "PolicyName": HONOURED},
    "GetKeyRotationStatus": {**_KEY},
    "GetParametersForImport": {**_KEY, "WrappingAlgorithm": HONOURED, "WrappingKeySpec": HONOURED},
    "GetPublicKey": {**_KEY, **_GRANT_TOKENS},
    "ImportKeyMaterial": {**_KEY, "ImportToken": HONOURED, "EncryptedKeyMaterial": HONOURED, "ValidTo": HONOURED,
                          "ExpirationModel": HONOURED, "ImportType": HONOURED, "KeyMaterialDescription": HONOURED,
                          "KeyMaterialId": HONOURED},
    "ListAliases": {**_KEY, **_PAGE},
    "ListGrants": {**_PAGE, **_KEY, "GrantId": HONOURED, "GranteePrincipal": HONOURED,
                   "GranteeServicePrincipal": _SERVICE_PRINCIPAL},
    "ListKeyPolicies": {**_KEY, **_PAGE},
    "ListKeyRotations": {**_KEY, "IncludeKeyMaterial": HONOURED, **_PAGE},
    "ListKeys": {**_PAGE, "ResourceOwners": HONOURED},
    "ListResourceTags": {**_KEY, **_PAGE},
    "ListRetirableGrants": {**_PAGE, "RetiringPrincipal": HONOURED, "RetiringServicePrincipal": _SERVICE_PRINCIPAL},
    "PutKeyPolicy": {**_KEY, "PolicyName": HONOURED, "Policy": HONOURED, "BypassPolicyLockoutSafetyCheck": HONOURED},
    "ReEncrypt": {"CiphertextBlob": HONOURED, "SourceEncryptionContext": HONOURED, "SourceKeyId": HONOURED,
                  "DestinationKeyId": HONOURED, "DestinationEncryptionContext": HONOURED,
                  "SourceEncryptionAlgorithm": HONOURED, "DestinationEncryptionAlgorithm": HONOURED,
                  **_GRANT_TOKENS, **_DRY_RUN, "DryRunModifiers": HONOURED},
    "RetireGrant": {"GrantToken": HONOURED, **_KEY, "GrantId": HONOURED, **_DRY_RUN},
    "RevokeGrant": {**_KEY, "GrantId": HONOURED, **_DRY_RUN},
    "ReplicateKey": {**_KEY, "ReplicaRegion": HONOURED, "Policy": HONOURED, "BypassPolicyLockoutSafetyCheck": HONOURED,
                     "Description": HONOURED, "Tags": HONOURED},
    "RotateKeyOnDemand": {**_KEY},
    "ScheduleKeyDeletion": {**_KEY, "PendingWindowInDays": HONOURED},
    "Sign": {**_KEY, "Message": HONOURED, "MessageType": HONOURED, **_GRANT_TOKENS, "SigningAlgorithm": HONOURED,
             **_DRY_RUN},
    "TagResource": {**_KEY, "Tags": HONOURED},
    "UntagResource": {**_KEY, "TagKeys": HONOURED},
    "UpdateAlias": {"AliasName": HONOURED, "TargetKeyId": HONOURED},
    "UpdateKeyDescription": {**_KEY, "Description": HONOURED},
    "UpdatePrimaryRegion": {**_KEY, "PrimaryRegion": HONOURED},
    "Verify": {**_KEY, "Message": HONOURED, "MessageType": HONOURED, "Signature": HONOURED,
               "SigningAlgorithm": HONOURED, **_GRANT_TOKENS, **_DRY_RUN},
    "VerifyMac": {"Message": HONOURED, **_KEY, "MacAlgorithm": HONOURED, "Mac": HONOURED, **_GRANT_TOKENS,
                  **_DRY_RUN},
}


def refuse_unhonoured(operation: str, params: Mapping[str, Any]) -> None:
    """Refuses a request carrying a member keyledger would not act on. An operation missing from MEMBERS (one
    added by another change) is let through here and fails the accounting test instead."""
    members = MEMBERS.get(operation)
    if members is None:
        return
    for name, value in params.items():
        if name not in members:
            raise UnsupportedOperationError(
                f"{operation} member '{shown(name)}' is not supported by keyledger; call without it.")
        rule = members[name]
        if rule is not None:
            rule.check(value)
