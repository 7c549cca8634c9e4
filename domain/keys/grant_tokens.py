"""Grant tokens: opaque strings that name a grant (key id, grant id), authenticated with a service HMAC key.

A token is ``base64url(version ‖ key uuid (16) ‖ grant id (32) ‖ nonce (16) ‖ HMAC-SHA256 (32))``. The nonce
makes every CreateGrant answer a new token, as AWS does, while any token of a grant names the same grant.
The token grants nothing by itself: it only lets the authorizer find a grant before it could be listed.
Only the encoding is canonical: a string that decodes to valid bytes but is not how ``encode`` writes them
(padding, spare bits in the last character) is refused, so a token cannot be altered and still accepted.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re
import uuid

from domain.errors import InvalidGrantTokenError

VERSION = 1
_LABEL = b"keyledger/grant-token/v1|"
_NONCE_SIZE, _TAG_SIZE = 16, 32
_SIZE = 1 + 16 + 32 + _NONCE_SIZE + _TAG_SIZE
_GRANT_ID = re.compile(r"[0-9a-f]{64}")
_ALPHABET = re.compile(r"[A-Za-z0-9_-]+")
_INVALID = "The grant token is not valid: pass a GrantToken exactly as CreateGrant returned it."


def _tag(secret: bytes, body: bytes) -> bytes:
    return hmac.new(secret, _LABEL + body, hashlib.sha256).digest()


def _text(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def encode(secret: bytes, key_id: str, grant_id: str, nonce: bytes | None = None) -> str:
    if not _GRANT_ID.fullmatch(grant_id):
        raise ValueError("a grant id is 64 lowercase hex characters")
    nonce = os.urandom(_NONCE_SIZE) if nonce is None else nonce
    if len(nonce) != _NONCE_SIZE:
        raise ValueError(f"the nonce is {_NONCE_SIZE} bytes")
    body = bytes([VERSION]) + uuid.UUID(key_id).bytes + bytes.fromhex(grant_id) + nonce
    return _text(body + _tag(secret, body))


def decode(secret: bytes, token: str) -> tuple[str, str]:
    """(key id, grant id) named by a token this service issued; InvalidGrantTokenError for anything else."""
    if not isinstance(token, str) or not _ALPHABET.fullmatch(token):
        raise InvalidGrantTokenError(_INVALID)
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (binascii.Error, ValueError):
        raise InvalidGrantTokenError(_INVALID) from None
    if len(raw) != _SIZE or raw[0] != VERSION or _text(raw) != token:
        raise InvalidGrantTokenError(_INVALID)
    body, tag = raw[:-_TAG_SIZE], raw[-_TAG_SIZE:]
    if not hmac.compare_digest(tag, _tag(secret, body)):
        raise InvalidGrantTokenError(_INVALID)
    return str(uuid.UUID(bytes=body[1:17])), body[17:49].hex()
