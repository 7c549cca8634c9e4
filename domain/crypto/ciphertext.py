"""The symmetric ciphertext blob and the per-call key derivation (docs/key-hierarchy.md).

    version(1) | key id(16) | material id(16) | kdf nonce(16) | iv(12) | ciphertext | tag(16)

Version 1 names a single-Region key by its UUID; version 3, the same layout, names a multi-Region key by the 16
bytes its mrk- id spells in hex: the id every related key shares, so a blob made in one Region decrypts under the
related key of any other (decision 156).
The whole header is AAD, followed by the canonical encryption context, so no header byte can change
without the tag failing. The per-call key is SP 800-108 KDF in counter mode (HMAC-SHA256) over the
backing key and the random KDF nonce: a backing key never encrypts more than one message directly.
"""
from __future__ import annotations

import hmac
import uuid
from dataclasses import dataclass
from functools import cached_property, lru_cache
from typing import Callable, Mapping

from cryptography.exceptions import InvalidTag

from domain.crypto.encryption_context import canonical_encryption_context
from domain.crypto.primitives import aes_gcm_decrypt, aes_gcm_encrypt, public_random_bytes
from domain.errors import InvalidCiphertextError

VERSION = 1
MULTI_REGION_VERSION = 3
_MRK = "mrk-"
_KEY_ID, _MATERIAL_ID, _NONCE, _IV, _TAG = 16, 16, 16, 12, 16
HEADER_LEN = 1 + _KEY_ID + _MATERIAL_ID + _NONCE + _IV
OVERHEAD = HEADER_LEN + _TAG
CALL_KEY_LABEL = b"keyledger/symmetric-call-key/v1"  # the KDF label: part of the blob format
_KDF_PREFIX = (1).to_bytes(4, "big") + CALL_KEY_LABEL + b"\x00"  # counter i = 1, label, separator
_KDF_SUFFIX = (256).to_bytes(4, "big")  # L: the derived key's length in bits


# Keys in a custom key store (origin AWS_CLOUDHSM): AES-256-GCM runs inside the token with the key itself, so
# there is no per-call key to derive and no KDF nonce (docs/key-hierarchy.md, "Keys in a custom key store"):
#     version 2 (1) | key id (16) | material id (16) | iv (12) | ciphertext | tag (16)
STORE_VERSION = 2
STORE_HEADER_LEN = 1 + _KEY_ID + _MATERIAL_ID + _IV
STORE_OVERHEAD = STORE_HEADER_LEN + _TAG
# (iv, plaintext, aad) -> ciphertext | tag, and (iv, ciphertext | tag, aad) -> plaintext, run by the token;
# the second raises InvalidCiphertextError when the tag does not verify.
TokenSeal = Callable[[bytes, bytes, bytes], bytes]


# Keys in an external key store (origin EXTERNAL_KEY_STORE): double encryption, as AWS KMS does it. The inner layer
# is a version-1 blob under the key's own backing key; the XKS proxy encrypts that whole blob with the external
# key, and what it returns is kept (domain/crypto/external_blob.py):
#     version 4 (1) | key id (16) | material id (16) | iv length (1) | iv | metadata length (1) | metadata
#     | tag (16) | the proxy's ciphertext of the inner blob
EXTERNAL_VERSION = 4
EXTERNAL_MIN_LEN = 1 + _KEY_ID + _MATERIAL_ID + 1 + 12 + 1 + _TAG + OVERHEAD


@dataclass(frozen=True)
class BlobHeader:
    key_id: uuid.UUID
    material_id: bytes
    version: int = VERSION

    @property
    def in_store(self) -> bool:
        return self.version == STORE_VERSION

    @cached_property  # a header is kept per blob prefix (_header): its key id is spelled once
    def public_key_id(self) -> str:
        """The key id as callers write it: a UUID, or mrk- and 32 hex digits."""
        return _MRK + self.key_id.hex if self.version == MULTI_REGION_VERSION else str(self.key_id)

    @property
    def external(self) -> bool:
        return self.version == EXTERNAL_VERSION


def _key_field(key_id: uuid.UUID | str) -> tuple[int, bytes]:
    """(blob version, the 16 key-id bytes) for a key id."""
    if isinstance(key_id, uuid.UUID):
        return VERSION, key_id.bytes
    return _text_key_field(key_id)


@lru_cache(maxsize=4096)  # a key id's text is parsed once, not on every call that encrypts under it
def _text_key_field(key_id: str) -> tuple[int, bytes]:
    if key_id.startswith(_MRK):
        return MULTI_REGION_VERSION, bytes.fromhex(key_id[len(_MRK):])
    return VERSION, uuid.UUID(key_id).bytes


def derive_call_key(backing_key: bytes, nonce: bytes) -> bytes:
    """SP 800-108 counter mode, HMAC-SHA256, 32 bytes: one PRF block, so the KDF is exactly
    HMAC(backing key, [1]_4 | label | 0x00 | nonce | [256]_4). Computed as that one HMAC (what
    ``KBKDFHMAC(SHA256, CounterMode, length=32, rlen=4, llen=4, BeforeFixed, label, context=nonce)``
    derives; tests/unit/test_domain_ciphertext.py checks they agree) without building a KDF object per call."""
    # hmac.new, not the one-shot hmac.digest: the one-shot releases the GIL around a microsecond of work,
    # and on a busy server getting it back costs far more than the HMAC. The digest by its name: given
    # hashlib.sha256 instead, hmac.new takes a microsecond longer to find the same digest.
    return hmac.new(backing_key, _KDF_PREFIX + nonce + _KDF_SUFFIX, "sha256").digest()


def encrypt(backing_key: bytes, key_id: uuid.UUID | str, material_id: bytes, plaintext: bytes,
            context: Mapping[str, str] | None) -> bytes:
    fresh = public_random_bytes(_NONCE + _IV)  # both are written in the blob
    nonce, iv = fresh[:_NONCE], fresh[_NONCE:]
    version, key_bytes = _key_field(key_id)
    header = bytes([version]) + key_bytes + material_id + nonce + iv
    aad = header + canonical_encryption_context(context)
    return header + aes_gcm_encrypt(derive_call_key(backing_key, nonce), iv, plaintext, aad)


def parse_header(blob: bytes) -> BlobHeader:
    version = blob[0] if blob else None
    if not ((version in (VERSION, MULTI_REGION_VERSION) and len(blob) >= OVERHEAD)
            or (version == STORE_VERSION and len(blob) >= STORE_OVERHEAD)
            or (version == EXTERNAL_VERSION and len(blob) >= EXTERNAL_MIN_LEN)):
        raise InvalidCiphertextError("The ciphertext is not a keyledger symmetric ciphertext, or it is truncated.")
    return _header(blob[:33])


@lru_cache(maxsize=4096)  # every blob of one key's material starts with the same 33 bytes: made once, not per call
def _header(prefix: bytes) -> BlobHeader:
    return BlobHeader(key_id=uuid.UUID(bytes=prefix[1:17]), material_id=prefix[17:33], version=prefix[0])


def encrypt_in_store(seal: TokenSeal, key_id: uuid.UUID, material_id: bytes, plaintext: bytes,
                     context: Mapping[str, str] | None) -> bytes:
    """The blob of a key held in a token: ``seal`` is the token's AES-GCM with that key."""
    iv = public_random_bytes(_IV)
    header = bytes([STORE_VERSION]) + key_id.bytes + material_id + iv
    return header + seal(iv, plaintext, header + canonical_encryption_context(context))


def decrypt_in_store(open_: TokenSeal, blob: bytes, context: Mapping[str, str] | None) -> bytes:
    if not parse_header(blob).in_store:
        raise InvalidCiphertextError("The ciphertext was not made by a key in a custom key store.")
    header = blob[:STORE_HEADER_LEN]
    return open_(header[33:45], blob[STORE_HEADER_LEN:], header + canonical_encryption_context(context))


def decrypt(backing_key: bytes, blob: bytes, context: Mapping[str, str] | None) -> bytes:
    if parse_header(blob).version not in (VERSION, MULTI_REGION_VERSION):
        raise InvalidCiphertextError("The ciphertext was made by a key in a custom key store.")
    header = blob[:HEADER_LEN]
    nonce, iv = header[33:49], header[49:61]
    aad = header + canonical_encryption_context(context)
    try:
        return aes_gcm_decrypt(derive_call_key(backing_key, nonce), iv, blob[HEADER_LEN:], aad)
    except InvalidTag:
        raise InvalidCiphertextError(
            "The ciphertext could not be decrypted: it was altered, or the encryption context differs from the one used to encrypt."
        ) from None
