"""Cryptographic operations on symmetric keys. Reads the key-state view (one row), never the event log,
so the hot path is a primary-key lookup plus an in-memory backing key."""
from __future__ import annotations

import uuid
from typing import Any, Mapping

from application.calls import Call
from application.crypto.asymmetric_service import AsymmetricService
from application.keys.materials import KeyMaterials
from application.keys.resolver import KeyResolver
from application.keystores.external import ExternalKeyStores
from application.keystores.keys import StoreKeys
from application.ports import KeyRow
from domain.crypto import ciphertext, external_blob
from domain.crypto.encryption_context import validate_encryption_context
from domain.crypto.primitives import random_bytes
from domain.errors import (
    DryRunOperationError,
    IncorrectKeyError,
    InvalidCiphertextError,
    InvalidKeyUsageError,
    InvalidStateError,
    ValidationError,
)
from domain.keys.key import key_material_id
from domain.keys.specs import (
    DATA_KEY_SPECS,
    ENCRYPT_DECRYPT,
    ORIGIN_AWS_CLOUDHSM,
    ORIGIN_EXTERNAL_KEY_STORE,
    SYMMETRIC_DEFAULT,
)
from domain.keys.states import KeyState, require_state

SYMMETRIC_ALGORITHM = "SYMMETRIC_DEFAULT"
_DRY_RUN = "The request would have succeeded, but the DryRun option is set."


IGNORE_CIPHERTEXT = "IGNORE_CIPHERTEXT"


def _ignores_ciphertext(dry_run: bool, modifiers: list[str] | None) -> bool:
    """AWS: DryRunModifiers "only applies when DryRun is set to true". Sent without it, the caller expects a dry
    run and would get a real decryption, so it is refused (decision 87)."""
    if modifiers is None:
        return False
    if not dry_run:
        raise ValidationError("DryRunModifiers applies only when DryRun is true; set DryRun or omit DryRunModifiers.")
    return IGNORE_CIPHERTEXT in modifiers


class CryptoService:
    def __init__(self, resolver: KeyResolver, materials: KeyMaterials, asymmetric: AsymmetricService,
                 store_keys: StoreKeys | None = None, external: ExternalKeyStores | None = None) -> None:
        self._resolve = resolver
        self._materials = materials
        self._asymmetric = asymmetric
        self._store_keys = store_keys  # keys in custom key stores: AES-GCM inside their token
        self._external = external  # keys in external key stores: the outer layer in their XKS proxy
        asymmetric.seal_symmetric = self._seal  # data key pairs are sealed as Encrypt seals

    def _usable(self, row: KeyRow, operation: str, algorithm: str | None) -> None:
        """Symmetric encryption operations: the key state allows it and the key is a symmetric encryption key."""
        require_state(operation, KeyState(row.key_state), row.arn)
        if row.key_usage != ENCRYPT_DECRYPT or row.key_spec != SYMMETRIC_DEFAULT:
            raise InvalidKeyUsageError(
                f"{row.arn} is a {row.key_spec} key for {row.key_usage}, which is not valid for {operation}.")
        if algorithm not in (None, SYMMETRIC_ALGORITHM):
            raise InvalidKeyUsageError(f"The encryption algorithm {algorithm} is not supported for {row.arn}; use SYMMETRIC_DEFAULT.")

    def _seal(self, call: Call, row: KeyRow, plaintext: bytes, context: Mapping[str, str] | None) -> tuple[bytes, str]:
        material_id = row.current_material_id
        origin = row.metadata.get("Origin")
        if origin == ORIGIN_AWS_CLOUDHSM and material_id and self._store_keys is not None:
            store_keys = self._store_keys
            blob = ciphertext.encrypt_in_store(lambda iv, data, aad: store_keys.seal(row, iv, data, aad),
                                               uuid.UUID(row.key_id), bytes.fromhex(material_id), plaintext, context)
            return blob, key_material_id(row.key_id, material_id)
        backing = self._materials.get(row.storage_id, material_id) if material_id else None
        if backing is None:
            raise InvalidStateError(f"{row.arn} has no key material to encrypt with.")
        if origin == ORIGIN_EXTERNAL_KEY_STORE:  # double encryption: this backing key, then the external key
            external = self._require_external()
            blob = external_blob.encrypt(backing, uuid.UUID(row.key_id), bytes.fromhex(material_id), plaintext,
                                         context, lambda inner, aad: external.encrypt(call, row, inner, aad))
            return blob, key_material_id(row.key_id, material_id)
        # The blob names the key by the id callers use: a multi-Region key's is the same in every Region.
        blob = ciphertext.encrypt(backing, row.key_id, bytes.fromhex(material_id), plaintext, context)
        return blob, key_material_id(row.key_id, material_id)

    def _require_external(self) -> ExternalKeyStores:
        if self._external is None:
            raise InvalidStateError("External key stores are not available in this process.")
        return self._external

    def _open(self, call: Call, blob: bytes, key_ref: str | None, context: Mapping[str, str] | None,
              operation: str, algorithm: str | None, dry_run: bool = False) -> tuple[KeyRow, bytes, str]:
        validate_encryption_context(context)
        header = ciphertext.parse_header(blob)
        blob_key_id = header.public_key_id
        if key_ref is not None:
            named = self._resolve.row(call, key_ref, operation)
            if named.key_id != blob_key_id:
                raise IncorrectKeyError(
                    f"The key ID in the request does not identify the KMS key used to encrypt the ciphertext ({named.arn})."
                )
        # Any account: a ciphertext of another account's key is a cross-account Decrypt, which its key
        # policy may allow; the region must still match (key ids are global, keys are regional). A multi-Region
        # key id names the related key of this region, whichever Region made the ciphertext.
        row = self._resolve.row_by_id(call, None, blob_key_id, operation)
        if row is None or row.region != call.in_scope().region:
            raise InvalidCiphertextError("The ciphertext refers to a key that does not exist in this region.")
        self._usable(row, operation, algorithm)
        if dry_run:
            raise DryRunOperationError(_DRY_RUN)
        in_store = row.metadata.get("Origin") == ORIGIN_AWS_CLOUDHSM
        external = row.metadata.get("Origin") == ORIGIN_EXTERNAL_KEY_STORE
        if in_store != header.in_store or external != header.external:
            raise InvalidCiphertextError("The ciphertext was not made by this key.")
        if external:
            proxy = self._require_external()

            def backing_for(material: bytes) -> bytes:
                found = (None if material.hex() in row.absent_material_ids
                         else self._materials.get(row.storage_id, material.hex()))
                if found is None:
                    raise InvalidCiphertextError("The ciphertext was made with key material this key no longer has.")
                return found
            plaintext = external_blob.decrypt(backing_for, blob, context,
                                              lambda sealed, aad: proxy.decrypt(call, row, sealed, aad))
            return row, plaintext, key_material_id(row.key_id, header.material_id.hex())
        if in_store and self._store_keys is not None:
            store_keys = self._store_keys
            plaintext = ciphertext.decrypt_in_store(
                lambda iv, sealed, aad: store_keys.open(row, header.material_id, iv, sealed, aad), blob, context)
            return row, plaintext, key_material_id(row.key_id, header.material_id.hex())
        material_id = header.material_id.hex()
        # The row, not the cache, says whether the material still exists: another process may have deleted it.
        backing = None if material_id in row.absent_material_ids else self._materials.get(row.storage_id, material_id)
        if backing is None:
            raise InvalidCiphertextError("The ciphertext was made with key material this key no longer has.")
        plaintext = ciphertext.decrypt(backing, blob, context)
        return row, plaintext, key_material_id(row.key_id, header.material_id.hex())

    def encrypt(self, call: Call, key_ref: str, plaintext: bytes, context: Mapping[str, str] | None = None,
                algorithm: str | None = None, dry_run: bool = False) -> dict[str, Any]:
        validate_encryption_context(context)
        row = self._resolve.row(call, key_ref)
        if row.key_spec != SYMMETRIC_DEFAULT and row.key_usage == ENCRYPT_DECRYPT:
            require_state("Encrypt", KeyState(row.key_state), row.arn)
            if dry_run:
                raise DryRunOperationError(_DRY_RUN)
            return self._asymmetric.encrypt(row, plaintext, context, algorithm)
        self._usable(row, "Encrypt", algorithm)
        if dry_run:
            raise DryRunOperationError(_DRY_RUN)
        blob, _ = self._seal(call, row, plaintext, context)
        return {"CiphertextBlob": blob, "KeyId": row.arn, "EncryptionAlgorithm": SYMMETRIC_ALGORITHM}

    def _authorized_only(self, call: Call, key_ref: str | None, member: str, operation: str,
                         algorithm: str | None) -> None:
        """DryRun with IGNORE_CIPHERTEXT: the ciphertext is not read, so the caller names the key; it is
        authorized and checked for state and usage as the real call would be, then the dry run answers."""
        if key_ref is None:
            raise ValidationError(f"{member} is required when DryRunModifiers is IGNORE_CIPHERTEXT: with the "
                                  "ciphertext ignored, it names the KMS key whose permissions are tested.")
        row = self._resolve.row(call, key_ref, operation)
        require_state(operation, KeyState(row.key_state), row.arn)
        if row.key_usage != ENCRYPT_DECRYPT:
            raise InvalidKeyUsageError(f"{row.arn} key usage is {row.key_usage} which is not valid for {operation}.")
        if row.key_spec == SYMMETRIC_DEFAULT:
            self._usable(row, operation, algorithm)
        raise DryRunOperationError(_DRY_RUN)

    def decrypt(self, call: Call, blob: bytes | None, key_ref: str | None = None,
                context: Mapping[str, str] | None = None, algorithm: str | None = None,
                dry_run: bool = False, dry_run_modifiers: list[str] | None = None) -> dict[str, Any]:
        if _ignores_ciphertext(dry_run, dry_run_modifiers):
            validate_encryption_context(context)
            self._authorized_only(call, key_ref, "KeyId", "Decrypt", algorithm)
        if not blob:
            raise ValidationError("CiphertextBlob is required.")
        if key_ref is not None and algorithm not in (None, SYMMETRIC_ALGORITHM):
            # Before the key is looked up and the call authorized, as _open does: the context's size bounds
            # what policy conditions on it cost to evaluate (decision 68).
            validate_encryption_context(context)
            # Asymmetric ciphertext is raw RSA with no header: the caller names key and algorithm.
            named = self._resolve.row(call, key_ref)
            if named.key_spec != SYMMETRIC_DEFAULT:
                require_state("Decrypt", KeyState(named.key_state), named.arn)
                if dry_run:
                    raise DryRunOperationError(_DRY_RUN)
                return self._asymmetric.decrypt(named, blob, context, algorithm)
        row, plaintext, material = self._open(call, blob, key_ref, context, "Decrypt", algorithm, dry_run)
        return {"KeyId": row.arn, "Plaintext": plaintext, "EncryptionAlgorithm": SYMMETRIC_ALGORITHM,
                "KeyMaterialId": material}

    def re_encrypt(self, call: Call, blob: bytes | None, destination_key_ref: str, *,
                   source_key_ref: str | None = None, source_context: Mapping[str, str] | None = None,
                   destination_context: Mapping[str, str] | None = None, source_algorithm: str | None = None,
                   destination_algorithm: str | None = None, dry_run: bool = False,
                   dry_run_modifiers: list[str] | None = None) -> dict[str, Any]:
        ignore_ciphertext = _ignores_ciphertext(dry_run, dry_run_modifiers)
        if not blob and not ignore_ciphertext:
            raise ValidationError("CiphertextBlob is required.")
        validate_encryption_context(destination_context)
        destination = self._resolve.row(call, destination_key_ref, "ReEncryptTo")
        self._usable(destination, "ReEncryptTo", destination_algorithm)
        if ignore_ciphertext:
            validate_encryption_context(source_context)
            self._authorized_only(call, source_key_ref, "SourceKeyId", "ReEncryptFrom", source_algorithm)
        source, plaintext, source_material = self._open(
            call, blob, source_key_ref, source_context, "ReEncryptFrom", source_algorithm, dry_run)
        new_blob, destination_material = self._seal(call, destination, plaintext, destination_context)
        return {
            "CiphertextBlob": new_blob, "SourceKeyId": source.arn, "KeyId": destination.arn,
            "SourceEncryptionAlgorithm": SYMMETRIC_ALGORITHM, "DestinationEncryptionAlgorithm": SYMMETRIC_ALGORITHM,
            "SourceKeyMaterialId": source_material, "DestinationKeyMaterialId": destination_material,
        }

    def generate_data_key(self, call: Call, key_ref: str, *, key_spec: str | None = None,
                          number_of_bytes: int | None = None, context: Mapping[str, str] | None = None,
                          with_plaintext: bool = True, dry_run: bool = False) -> dict[str, Any]:
        if (key_spec is None) == (number_of_bytes is None):
            raise ValidationError("Specify either KeySpec or NumberOfBytes, but not both." if key_spec
                                  else "Specify either KeySpec or NumberOfBytes to set the length of the data key.")
        length = DATA_KEY_SPECS[key_spec] if key_spec is not None else number_of_bytes
        validate_encryption_context(context)
        row = self._resolve.row(call, key_ref)
        self._usable(row, "GenerateDataKey" if with_plaintext else "GenerateDataKeyWithoutPlaintext", None)
        if dry_run:
            raise DryRunOperationError(_DRY_RUN)
        data_key = random_bytes(length)
        blob, material = self._seal(call, row, data_key, context)
        out: dict[str, Any] = {"CiphertextBlob": blob, "KeyId": row.arn, "KeyMaterialId": material}
        if with_plaintext:
            out["Plaintext"] = data_key
        return out

    def generate_random(self, call: Call, number_of_bytes: int | None, store_id: str | None = None) -> dict[str, Any]:
        if number_of_bytes is None:
            raise ValidationError("NumberOfBytes is required: ask for 1 to 1024 random bytes.")
        if store_id:  # AWS: from the custom key store's cluster, which must be connected
            if self._store_keys is None:
                raise InvalidStateError("Custom key stores are not available in this process.")
            return {"Plaintext": self._store_keys.random(call, store_id, number_of_bytes)}
        return {"Plaintext": random_bytes(number_of_bytes)}
