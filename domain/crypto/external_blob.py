"""The ciphertext of a key in an external key store (origin EXTERNAL_KEY_STORE): double encryption, as AWS KMS
documents it. keyledger encrypts first, under the key's own backing key (a version-1 blob, which binds the key id,
the material id and the encryption context); then the external key store proxy encrypts that whole inner blob
with the external key. Decrypting needs both: the proxy's external key, then keyledger's backing key.

    version 4 (1) | key id (16) | material id (16) | iv length (1) | iv (12 or 16) | metadata length (1)
    | ciphertextMetadata (0 to 20) | authenticationTag (16) | the proxy's ciphertext of the inner blob

The AAD the proxy authenticates is the first 33 bytes (version, key id, material id) and the SHA-256 of the
canonical encryption context: the header and context are bound in the outer layer too, in a bounded size.
"""
from __future__ import annotations

import hashlib
import uuid
from typing import Callable, Mapping

from domain.crypto import ciphertext
from domain.crypto.encryption_context import canonical_encryption_context
from domain.crypto.xks import MAX_METADATA_BYTES, TAG_BYTES, Sealed
from domain.errors import InvalidCiphertextError

_PREFIX = 1 + 16 + 16
# (inner blob, aad) -> what the proxy's Encrypt returned; (parts, aad) -> the inner blob (the proxy's Decrypt)
ProxySeal = Callable[[bytes, bytes], Sealed]
ProxyOpen = Callable[[Sealed, bytes], bytes]
_CORRUPT = "The ciphertext is not a keyledger ciphertext of a key in an external key store, or it is truncated."


def proxy_aad(prefix: bytes, context: Mapping[str, str] | None) -> bytes:
    return prefix + hashlib.sha256(canonical_encryption_context(context)).digest()


def encrypt(backing_key: bytes, key_id: uuid.UUID, material_id: bytes, plaintext: bytes,
            context: Mapping[str, str] | None, proxy_seal: ProxySeal) -> bytes:
    inner = ciphertext.encrypt(backing_key, key_id, material_id, plaintext, context)
    prefix = bytes([ciphertext.EXTERNAL_VERSION]) + key_id.bytes + material_id
    sealed = proxy_seal(inner, proxy_aad(prefix, context))
    iv, metadata = sealed.initialization_vector, sealed.ciphertext_metadata
    return (prefix + bytes([len(iv)]) + iv + bytes([len(metadata)]) + metadata + sealed.authentication_tag
            + sealed.ciphertext)


def parse(blob: bytes) -> tuple[bytes, Sealed]:
    """(the 33-byte prefix, the proxy's parts); InvalidCiphertextError when the layout does not hold."""
    if not blob or blob[0] != ciphertext.EXTERNAL_VERSION or len(blob) < _PREFIX + 1:
        raise InvalidCiphertextError(_CORRUPT)
    at = _PREFIX
    iv_len = blob[at]
    iv = blob[at + 1:at + 1 + iv_len]
    at += 1 + iv_len
    if iv_len not in (12, 16) or len(blob) <= at:
        raise InvalidCiphertextError(_CORRUPT)
    metadata_len = blob[at]
    metadata = blob[at + 1:at + 1 + metadata_len]
    at += 1 + metadata_len
    tag, body = blob[at:at + TAG_BYTES], blob[at + TAG_BYTES:]
    if metadata_len > MAX_METADATA_BYTES or len(tag) != TAG_BYTES or len(body) < ciphertext.OVERHEAD:
        raise InvalidCiphertextError(_CORRUPT)
    return blob[:_PREFIX], Sealed(body, metadata, iv, tag)


def decrypt(backing_key: Callable[[bytes], bytes], blob: bytes, context: Mapping[str, str] | None,
            proxy_open: ProxyOpen) -> bytes:
    """``backing_key(material id)``: the key's backing key for that material (raises when it is gone)."""
    prefix, sealed = parse(blob)
    inner = proxy_open(sealed, proxy_aad(prefix, context))
    # The inner blob must be this key's, of this material: a proxy cannot hand back another blob.
    if inner[:1] != bytes([ciphertext.VERSION]) or inner[1:_PREFIX] != prefix[1:]:
        raise InvalidCiphertextError("The external key store proxy returned an inner ciphertext of another key.")
    return ciphertext.decrypt(backing_key(prefix[17:33]), inner, context)
