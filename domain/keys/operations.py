"""Which key operations a key can take at all, by what it is: its spec, usage and origin. A report of
"who could do O with K" lists only these; asking whether anyone could Sign with a symmetric encryption key
has no answer worth printing (AWS refuses it with InvalidKeyUsageException whoever asks)."""
from __future__ import annotations

from domain.keys.specs import (
    ENCAPSULATE_DECAPSULATE,
    ENCRYPT_DECRYPT,
    GENERATE_VERIFY_MAC,
    KEY_AGREEMENT,
    SIGN_VERIFY,
    SYMMETRIC_DEFAULT,
)
from domain.keys.states import MATRIX

_CRYPTOGRAPHIC = frozenset({
    "Encrypt", "Decrypt", "ReEncryptFrom", "ReEncryptTo", "GenerateDataKey", "GenerateDataKeyWithoutPlaintext",
    "GenerateDataKeyPair", "GenerateDataKeyPairWithoutPlaintext", "Sign", "Verify", "GetPublicKey", "GenerateMac",
    "VerifyMac", "DeriveSharedSecret", "Encapsulate", "Decapsulate",
})
_SYMMETRIC_ENCRYPTION = frozenset({
    "Encrypt", "Decrypt", "ReEncryptFrom", "ReEncryptTo", "GenerateDataKey", "GenerateDataKeyWithoutPlaintext",
    "GenerateDataKeyPair", "GenerateDataKeyPairWithoutPlaintext",
})
_BY_USAGE = {
    ENCRYPT_DECRYPT: frozenset({"Encrypt", "Decrypt", "ReEncryptFrom", "ReEncryptTo", "GetPublicKey"}),
    SIGN_VERIFY: frozenset({"Sign", "Verify", "GetPublicKey"}),
    KEY_AGREEMENT: frozenset({"DeriveSharedSecret", "GetPublicKey"}),
    GENERATE_VERIFY_MAC: frozenset({"GenerateMac", "VerifyMac"}),
    ENCAPSULATE_DECAPSULATE: frozenset({"Encapsulate", "Decapsulate", "GetPublicKey"}),
}
_ROTATION = frozenset({"EnableKeyRotation", "DisableKeyRotation", "RotateKeyOnDemand"})  # symmetric keys only
_IMPORT = frozenset({"GetParametersForImport", "ImportKeyMaterial", "DeleteImportedKeyMaterial"})  # EXTERNAL only
_MULTI_REGION = frozenset({"ReplicateKey", "UpdatePrimaryRegion"})  # multi-Region keys only


def key_operations(key_spec: str, key_usage: str, origin: str, multi_region: bool = False) -> list[str]:
    """The operations of the key-state matrix that this key supports, sorted."""
    symmetric = key_spec == SYMMETRIC_DEFAULT
    crypto = _SYMMETRIC_ENCRYPTION if symmetric else _BY_USAGE.get(key_usage, frozenset())
    chosen = []
    for operation in MATRIX:
        if operation in _CRYPTOGRAPHIC and operation not in crypto:
            continue
        if operation in _ROTATION and not symmetric:
            continue
        if operation in _IMPORT and origin != "EXTERNAL":
            continue
        if operation in _MULTI_REGION and not multi_region:
            continue
        chosen.append(operation)
    return sorted(chosen)


def operations_of(meta: dict) -> list[str]:
    """key_operations for a key's KeyMetadata."""
    return key_operations(meta["KeySpec"], meta["KeyUsage"], meta["Origin"], bool(meta.get("MultiRegion")))
