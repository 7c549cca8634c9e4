"""keyledger as an XKS proxy: the four operations of the AWS KMS External Key Store Proxy API (GetHealthStatus,
GetKeyMetadata, Encrypt, Decrypt) on keyledger's own keys.

An external key is a keyledger key of the credential's account, named by its key id (the spec's
``externalKeyId``). Every call is authorized against that key's policy like a KMS call of the credential's
principal, for the KMS action it amounts to (GetKeyMetadata: kms:DescribeKey, Encrypt: kms:Encrypt, Decrypt:
kms:Decrypt), with the request metadata as ``xks:*`` condition keys (the api layer sets them on the Call), and
recorded in the audit log with that metadata. GetHealthStatus is authorized by authentication alone (the spec
excludes it from secondary authorization).

Only symmetric encryption keys whose material keyledger holds (origin AWS_KMS or EXTERNAL) encrypt; a key in a
custom key store is refused (UnsupportedOperationException). A key that is not Enabled reports keyStatus
DISABLED and refuses Encrypt and Decrypt (InvalidStateException on the wire).
"""
from __future__ import annotations

from typing import Any

from application.calls import Call
from application.keys.materials import KeyMaterials
from application.keys.resolver import KeyResolver
from application.ports import KeyRow
from domain.crypto import xks
from domain.errors import (
    DisabledError,
    InternalError,
    InvalidCiphertextError,
    InvalidKeyUsageError,
    InvalidStateError,
    NotFoundError,
    UnsupportedOperationError,
    shown,
)
from domain.keys.specs import ENCRYPT_DECRYPT, ORIGIN_AWS_KMS, ORIGIN_EXTERNAL, SYMMETRIC_DEFAULT
from domain.keys.states import KeyState

VENDOR = "keyledger"
# What each usage allows, in the spec's words (GetKeyMetadata's keyUsage; PKCS#11-style names beyond the two).
_USAGES = {ENCRYPT_DECRYPT: ["ENCRYPT", "DECRYPT"], "SIGN_VERIFY": ["SIGN", "VERIFY"],
           "GENERATE_VERIFY_MAC": ["SIGN", "VERIFY"], "KEY_AGREEMENT": ["DERIVE"],
           "ENCAPSULATE_DECAPSULATE": ["ENCAPSULATE", "DECAPSULATE"]}
# The KMS action each XKS operation is authorized as.
ACTIONS = {"XksGetKeyMetadata": "DescribeKey", "XksEncrypt": "Encrypt", "XksDecrypt": "Decrypt"}


def key_spec_name(row: KeyRow) -> str:
    return "AES_256" if row.key_spec == SYMMETRIC_DEFAULT else row.key_spec


class XksProxyService:
    def __init__(self, resolver: KeyResolver, materials: KeyMaterials, version: str = "") -> None:
        self._resolve = resolver
        self._materials = materials
        self._version = version

    def health(self, call: Call, ready: bool) -> dict[str, Any]:
        """GetHealthStatus: one proxy, one key manager (this keyledger), ACTIVE while it serves key operations."""
        model = f"keyledger {self._version}".strip()
        return {"xksProxyFleetSize": 1, "xksProxyVendor": VENDOR, "xksProxyModel": f"{model} XKS proxy",
                "ekmVendor": VENDOR, "ekmFleetDetails": [
                    {"id": "keyledger", "model": model, "healthStatus": "ACTIVE" if ready else "UNAVAILABLE"}]}

    def key_metadata(self, call: Call, external_key_id: str) -> dict[str, Any]:
        row = self._key(call, external_key_id)
        answer = {"keySpec": key_spec_name(row), "keyUsage": list(_USAGES.get(row.key_usage, [])),
                  "keyStatus": "ENABLED" if row.key_state == KeyState.ENABLED.value else "DISABLED"}
        call.response_elements = dict(answer)
        return answer

    def encrypt(self, call: Call, external_key_id: str, plaintext: bytes, aad: bytes,
                integrity: bool) -> tuple[xks.Sealed, str | None]:
        """(the sealed parts, the ciphertextDataIntegrityValue when asked for). As the spec's Appendix C advises,
        the integrity value is computed first, then the output is decrypted again before it is returned."""
        row = self._usable(call, external_key_id)
        material_id = row.current_material_id
        backing = self._materials.get(row.storage_id, material_id) if material_id else None
        if backing is None or material_id is None:
            raise InvalidStateError(f"{row.arn} has no key material to encrypt with.")
        sealed = xks.seal(backing, bytes.fromhex(material_id), plaintext, aad)
        value = xks.integrity_value(aad, sealed) if integrity else None
        if integrity and xks.open_sealed(backing, sealed, aad) != plaintext:
            raise InternalError("The encryption could not be verified; retry the request.")
        return sealed, value

    def decrypt(self, call: Call, external_key_id: str, sealed: xks.Sealed, aad: bytes) -> bytes:
        row = self._usable(call, external_key_id)
        material_id = xks.material_of(sealed.ciphertext_metadata).hex()
        backing = None if material_id in row.absent_material_ids else self._materials.get(row.storage_id, material_id)
        if backing is None:
            raise InvalidCiphertextError("The ciphertext was made with key material this key does not have.")
        return xks.open_sealed(backing, sealed, aad)

    # -- the key ---------------------------------------------------------------------------------

    def _key(self, call: Call, external_key_id: str) -> KeyRow:
        """The credential's account's key by id, with the call authorized on it (before its state is looked at)."""
        caller = call.required_caller()
        row = self._resolve.row_in_account(call, caller.account_id, external_key_id, ACTIONS[call.operation])
        if row is None:
            raise NotFoundError(f"External key '{shown(external_key_id)}' does not exist: name a key of account "
                                f"{caller.account_id} by its key id.")
        return row

    def _usable(self, call: Call, external_key_id: str) -> KeyRow:
        row = self._key(call, external_key_id)
        if row.key_spec != SYMMETRIC_DEFAULT or row.key_usage != ENCRYPT_DECRYPT:
            raise InvalidKeyUsageError(f"{row.arn} is a {row.key_spec} key for {row.key_usage}; the XKS proxy "
                                       "encrypts and decrypts with AES-256 (SYMMETRIC_DEFAULT) keys only.")
        if row.metadata.get("Origin", ORIGIN_AWS_KMS) not in (ORIGIN_AWS_KMS, ORIGIN_EXTERNAL):
            raise UnsupportedOperationError(f"{row.arn} is in a custom key store; the XKS proxy uses keys whose "
                                            "material keyledger holds (origin AWS_KMS or EXTERNAL).")
        if row.key_state == KeyState.DISABLED.value:
            raise DisabledError(f"{row.arn} is disabled.")
        if row.key_state != KeyState.ENABLED.value:
            raise InvalidStateError(f"{row.arn} is {row.key_state}.")
        return row
