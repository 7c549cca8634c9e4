"""AES-GCM as keyledger's XKS proxy performs it (AWS KMS External Key Store Proxy API, Encrypt and Decrypt).

What the proxy returns, and what the caller hands back to Decrypt unchanged:

    ciphertextMetadata   = version 1 (1) | material id (16)          17 bytes; the spec allows up to 20
    initializationVector = 16 random bytes                           the spec allows 12 or 16
    ciphertext, authenticationTag (16)

The material id names which of the key's materials encrypted (a rotated key keeps decrypting old ciphertext).
As for keyledger's own blobs, the backing key never encrypts directly: the call key is SP 800-108 KDF in
counter mode (HMAC-SHA256) over the backing key with the 16-byte IV as its nonce, under a label of its own
(docs/key-hierarchy.md). The AES-GCM AAD is the spec's: the caller's AAD and the ciphertext metadata, each
preceded by its length (2 bytes big-endian, 1 byte), so neither can be shifted into the other.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag

from domain.crypto.primitives import aes_gcm_decrypt, aes_gcm_encrypt, random_bytes
from domain.errors import InvalidCiphertextError

METADATA_VERSION = 1
IV_BYTES = 16
TAG_BYTES = 16
METADATA_BYTES = 1 + 16
MAX_METADATA_BYTES = 20  # the spec's bound on ciphertextMetadata
MAX_AAD_BYTES = 8192  # what the spec requires a proxy to accept; keyledger accepts no more
MAX_PLAINTEXT_BYTES = 8192  # the spec requires 4300; keyledger accepts up to this much
CALL_KEY_LABEL = b"keyledger/xks-call-key/v1"
_KDF_PREFIX = (1).to_bytes(4, "big") + CALL_KEY_LABEL + b"\x00"
_KDF_SUFFIX = (256).to_bytes(4, "big")
_CORRUPT = ("The ciphertext, initialization vector, additional authenticated data, ciphertext metadata or "
            "authentication tag is corrupted, or was not made by this key.")


@dataclass(frozen=True)
class Sealed:
    """The output of Encrypt, as the spec names its fields (raw bytes, not Base64)."""

    ciphertext: bytes
    ciphertext_metadata: bytes
    initialization_vector: bytes
    authentication_tag: bytes


def call_key(backing_key: bytes, iv: bytes) -> bytes:
    """HMAC(backing key, [1]_4 | label | 0x00 | iv | [256]_4): one PRF block of SP 800-108 counter mode."""
    return hmac.new(backing_key, _KDF_PREFIX + iv + _KDF_SUFFIX, hashlib.sha256).digest()


def gcm_aad(aad: bytes, metadata: bytes) -> bytes:
    """The spec's AAD input: len(aad) (2 bytes, big-endian) | aad | len(metadata) (1 byte) | metadata."""
    return len(aad).to_bytes(2, "big") + aad + bytes([len(metadata)]) + metadata


def metadata_for(material_id: bytes) -> bytes:
    return bytes([METADATA_VERSION]) + material_id


def material_of(metadata: bytes) -> bytes:
    """The material id a ciphertextMetadata names; InvalidCiphertextError when it is not one of ours."""
    if len(metadata) != METADATA_BYTES or metadata[0] != METADATA_VERSION:
        raise InvalidCiphertextError("The ciphertext metadata was not made by this XKS proxy.")
    return metadata[1:]


def seal(backing_key: bytes, material_id: bytes, plaintext: bytes, aad: bytes) -> Sealed:
    iv = random_bytes(IV_BYTES)
    metadata = metadata_for(material_id)
    out = aes_gcm_encrypt(call_key(backing_key, iv), iv, plaintext, gcm_aad(aad, metadata))
    return Sealed(out[:-TAG_BYTES], metadata, iv, out[-TAG_BYTES:])


def open_sealed(backing_key: bytes, sealed: Sealed, aad: bytes) -> bytes:
    if len(sealed.initialization_vector) not in (12, IV_BYTES) or len(sealed.authentication_tag) != TAG_BYTES:
        raise InvalidCiphertextError("The initialization vector must be 12 or 16 bytes and the authentication tag 16.")
    iv = sealed.initialization_vector
    try:
        return aes_gcm_decrypt(call_key(backing_key, iv), iv, sealed.ciphertext + sealed.authentication_tag,
                               gcm_aad(aad, sealed.ciphertext_metadata))
    except InvalidTag:
        raise InvalidCiphertextError(_CORRUPT) from None


def integrity_value(aad: bytes, sealed: Sealed) -> str:
    """The ciphertextDataIntegrityValue (spec, Appendix C): Base64 of SHA-256 over aad | metadata | iv |
    ciphertext | tag, decoded bytes, no lengths (it guards against bit flips, not against an adversary)."""
    digest = hashlib.sha256(aad + sealed.ciphertext_metadata + sealed.initialization_vector + sealed.ciphertext
                            + sealed.authentication_tag).digest()
    return base64.b64encode(digest).decode("ascii")
