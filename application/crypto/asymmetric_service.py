"""Operations on asymmetric and HMAC keys: public keys, signatures, RSA encryption, MACs, key agreement,
and data key pairs (protected by a symmetric key). The private key or HMAC key is the backing key."""
from __future__ import annotations

from typing import Any, Callable, Mapping

from application.calls import Call
from application.keys.materials import KeyMaterials
from application.keys.resolver import KeyResolver
from application.ports import KeyRow
from domain.crypto import asymmetric, asymmetric_encryption, mac
from domain.errors import (
    DryRunOperationError,
    InvalidKeyUsageError,
    InvalidMacError,
    InvalidSignatureValueError,
    InvalidStateError,
    UnsupportedOperationError,
    ValidationError,
)
from domain.keys.specs import (
    ENCAPSULATE_DECAPSULATE,
    ENCRYPT_DECRYPT,
    GENERATE_VERIFY_MAC,
    KEY_AGREEMENT,
    KEY_SPECS,
    LEGACY_CUSTOMER_MASTER_KEY_SPECS,
    SIGN_VERIFY,
    SYMMETRIC_DEFAULT,
)
from domain.keys.states import KeyState, require_state

_DRY_RUN = "The request would have succeeded, but the DryRun option is set."


def refuse_context(context: Mapping[str, str] | None, row: KeyRow) -> None:
    if context:
        raise ValidationError(f"EncryptionContext is supported only with symmetric encryption keys; {row.arn} is {row.key_spec}.")


class AsymmetricService:
    def __init__(self, resolver: KeyResolver, materials: KeyMaterials) -> None:
        self._resolve = resolver
        self._materials = materials
        # (row, plaintext, context) -> (blob, KeyMaterialId): CryptoService's sealing, set when it is built.
        self.seal_symmetric: Callable[[Call, KeyRow, bytes, Mapping[str, str] | None], tuple[bytes, str]] | None = None

    def _key(self, call: Call, key_ref: str, operation: str, usage: str, dry_run: bool = False) -> tuple[KeyRow, bytes]:
        row = self._resolve.row(call, key_ref)
        require_state(operation, KeyState(row.key_state), row.arn)
        return row, self._secret(row, operation, usage, dry_run)

    def _secret(self, row: KeyRow, operation: str, usage: str, dry_run: bool = False) -> bytes:
        """The backing key of a row the call is authorized on, if the key's usage fits the operation."""
        if row.key_usage != usage:
            raise InvalidKeyUsageError(f"{row.arn} key usage is {row.key_usage} which is not valid for {operation}.")
        if dry_run:
            raise DryRunOperationError(_DRY_RUN)
        secret = self._materials.get(row.storage_id, row.current_material_id) if row.current_material_id else None
        if secret is None:
            raise InvalidStateError(f"{row.arn} has no key material.")
        return secret

    def _algorithm(self, row: KeyRow, algorithm: str | None, operation: str) -> str:
        allowed = KEY_SPECS[row.key_spec].usages.get(row.key_usage, ())
        if algorithm not in allowed and algorithm in asymmetric.ALGORITHMS.get(row.key_spec, {}).get(row.key_usage, ()):
            raise UnsupportedOperationError(f"{algorithm} is valid for {row.key_spec} keys in AWS KMS but this "
                                            f"keyledger build cannot run it; use one of: {', '.join(allowed)}.")
        if algorithm not in allowed:
            raise InvalidKeyUsageError(f"Algorithm {algorithm} is not valid for {operation} with {row.arn}; "
                                       f"it supports {', '.join(allowed)}.")
        return algorithm

    def get_public_key(self, call: Call, key_ref: str) -> dict[str, Any]:
        row = self._resolve.row(call, key_ref)
        if not KEY_SPECS[row.key_spec].asymmetric:
            raise UnsupportedOperationError(f"{row.arn} is a {row.key_spec} key; only asymmetric keys have a public key.")
        row, private = self._key(call, key_ref, "GetPublicKey", row.key_usage)
        member, algorithms = KEY_SPECS[row.key_spec].algorithms_for(row.key_usage) or ("", ())
        out = {"KeyId": row.arn, "PublicKey": asymmetric.public_key_der(private), "KeySpec": row.key_spec,
               "KeyUsage": row.key_usage}
        if row.key_spec in LEGACY_CUSTOMER_MASTER_KEY_SPECS:
            out["CustomerMasterKeySpec"] = row.key_spec
        if member:
            out[member] = list(algorithms)
        return out

    def sign(self, call: Call, key_ref: str, message: bytes, algorithm: str, message_type: str | None,
             dry_run: bool = False) -> dict[str, Any]:
        row, private = self._key(call, key_ref, "Sign", SIGN_VERIFY, dry_run)
        self._algorithm(row, algorithm, "Sign")
        signature = asymmetric.sign(private, row.key_spec, algorithm, message, message_type or "RAW")
        return {"KeyId": row.arn, "Signature": signature, "SigningAlgorithm": algorithm}

    def verify(self, call: Call, key_ref: str, message: bytes, signature: bytes, algorithm: str,
               message_type: str | None, dry_run: bool = False) -> dict[str, Any]:
        row, private = self._key(call, key_ref, "Verify", SIGN_VERIFY, dry_run)
        self._algorithm(row, algorithm, "Verify")
        if not asymmetric.verify(private, row.key_spec, algorithm, message, message_type or "RAW", signature):
            raise InvalidSignatureValueError("The signature is not valid for this message, key and signing algorithm.")
        return {"KeyId": row.arn, "SignatureValid": True, "SigningAlgorithm": algorithm}

    def encrypt(self, row: KeyRow, plaintext: bytes, context: Mapping[str, str] | None, algorithm: str | None) -> dict[str, Any]:
        refuse_context(context, row)
        private = self._secret(row, "Encrypt", ENCRYPT_DECRYPT)
        self._algorithm(row, algorithm, "Encrypt")
        blob = asymmetric_encryption.rsa_encrypt(asymmetric.public_key_der(private), algorithm, plaintext)
        return {"CiphertextBlob": blob, "KeyId": row.arn, "EncryptionAlgorithm": algorithm}

    def decrypt(self, row: KeyRow, blob: bytes, context: Mapping[str, str] | None, algorithm: str | None) -> dict[str, Any]:
        refuse_context(context, row)
        private = self._secret(row, "Decrypt", ENCRYPT_DECRYPT)
        self._algorithm(row, algorithm, "Decrypt")
        return {"KeyId": row.arn, "Plaintext": asymmetric_encryption.rsa_decrypt(private, algorithm, blob),
                "EncryptionAlgorithm": algorithm}

    def generate_mac(self, call: Call, key_ref: str, message: bytes, algorithm: str,
                     dry_run: bool = False) -> dict[str, Any]:
        row, key = self._key(call, key_ref, "GenerateMac", GENERATE_VERIFY_MAC, dry_run)
        self._algorithm(row, algorithm, "GenerateMac")
        return {"KeyId": row.arn, "Mac": mac.generate_mac(key, algorithm, message, key_spec=row.key_spec),
                "MacAlgorithm": algorithm}

    def verify_mac(self, call: Call, key_ref: str, message: bytes, mac_value: bytes, algorithm: str,
                   dry_run: bool = False) -> dict[str, Any]:
        row, key = self._key(call, key_ref, "VerifyMac", GENERATE_VERIFY_MAC, dry_run)
        self._algorithm(row, algorithm, "VerifyMac")
        if not mac.verify_mac(key, algorithm, message, mac_value, key_spec=row.key_spec):
            raise InvalidMacError("The MAC is not valid for this message, key and MAC algorithm.")
        return {"KeyId": row.arn, "MacValid": True, "MacAlgorithm": algorithm}

    def derive_shared_secret(self, call: Call, key_ref: str, algorithm: str, public_key: bytes,
                             dry_run: bool = False) -> dict[str, Any]:
        row, private = self._key(call, key_ref, "DeriveSharedSecret", KEY_AGREEMENT, dry_run)
        self._algorithm(row, algorithm, "DeriveSharedSecret")
        secret = asymmetric_encryption.derive_shared_secret(private, row.key_spec, public_key)
        return {"KeyId": row.arn, "SharedSecret": secret, "KeyAgreementAlgorithm": algorithm, "KeyOrigin": "AWS_KMS"}

    def encapsulate(self, call: Call, key_ref: str, algorithm: str, dry_run: bool = False) -> dict[str, Any]:
        row, private = self._key(call, key_ref, "Encapsulate", ENCAPSULATE_DECAPSULATE, dry_run)
        self._algorithm(row, algorithm, "Encapsulate")
        secret, blob = asymmetric_encryption.encapsulate(asymmetric.public_key_der(private), row.key_spec)
        return {"KeyId": row.arn, "SharedSecret": secret, "SharedSecretCiphertextBlob": blob,
                "EncapsulationAlgorithm": algorithm}

    def decapsulate(self, call: Call, key_ref: str, blob: bytes, algorithm: str,
                    dry_run: bool = False) -> dict[str, Any]:
        row, private = self._key(call, key_ref, "Decapsulate", ENCAPSULATE_DECAPSULATE, dry_run)
        self._algorithm(row, algorithm, "Decapsulate")
        return {"KeyId": row.arn, "SharedSecret": asymmetric_encryption.decapsulate(private, row.key_spec, blob),
                "EncapsulationAlgorithm": algorithm}

    def generate_data_key_pair(self, call: Call, key_ref: str, key_pair_spec: str,
                               context: Mapping[str, str] | None, with_plaintext: bool,
                               dry_run: bool = False) -> dict[str, Any]:
        operation = "GenerateDataKeyPair" if with_plaintext else "GenerateDataKeyPairWithoutPlaintext"
        row = self._resolve.row(call, key_ref)
        require_state(operation, KeyState(row.key_state), row.arn)
        if row.key_usage != ENCRYPT_DECRYPT:
            raise InvalidKeyUsageError(f"{row.arn} key usage is {row.key_usage} which is not valid for {operation}.")
        if row.key_spec != SYMMETRIC_DEFAULT:
            raise InvalidKeyUsageError(f"{operation} needs a symmetric encryption key; {row.arn} is {row.key_spec}.")
        if dry_run:
            raise DryRunOperationError(_DRY_RUN)
        private, public = asymmetric.generate_data_key_pair(key_pair_spec)
        assert self.seal_symmetric is not None  # set by CryptoService: the same sealing as Encrypt, token keys too
        blob, material = self.seal_symmetric(call, row, private, context)
        out: dict[str, Any] = {"PrivateKeyCiphertextBlob": blob, "PublicKey": public, "KeyId": row.arn,
                               "KeyPairSpec": key_pair_spec, "KeyMaterialId": material}
        if with_plaintext:
            out["PrivateKeyPlaintext"] = private
        return out
