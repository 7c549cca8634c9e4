"""Root-key wrapping of backing keys (and of any other secret the service stores).

A wrapped value is ``root version (4, big endian) | iv (12) | AES-256-GCM(root key, secret) | tag`` with
AAD = purpose | key id | material id, so a wrapped row moved to another key, material or purpose fails.
"""
from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from typing import Mapping

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM


class UnwrapError(Exception):
    """A wrapped value did not authenticate under the root key it names, or names an unknown version."""


def _aad(purpose: str, key_id: str, material_id: str) -> bytes:
    parts = [p.encode("utf-8") for p in (purpose, key_id, material_id)]
    return b"".join(struct.pack(">I", len(p)) + p for p in parts)


@dataclass(frozen=True)
class RootKeyring:
    """The root key versions this process holds; ``current`` wraps, any held version unwraps."""

    versions: Mapping[int, bytes]
    current: int

    def wrap(self, secret: bytes, *, purpose: str, key_id: str, material_id: str = "") -> bytes:
        iv = os.urandom(12)
        sealed = AESGCM(self.versions[self.current]).encrypt(iv, secret, _aad(purpose, key_id, material_id))
        return struct.pack(">I", self.current) + iv + sealed

    def unwrap(self, wrapped: bytes, *, purpose: str, key_id: str, material_id: str = "") -> bytes:
        if len(wrapped) < 4 + 12 + 16:
            raise UnwrapError("wrapped value is truncated")
        (version,) = struct.unpack(">I", wrapped[:4])
        root = self.versions.get(version)
        if root is None:
            raise UnwrapError(f"root key version {version} is not available")
        try:
            return AESGCM(root).decrypt(wrapped[4:16], wrapped[16:], _aad(purpose, key_id, material_id))
        except InvalidTag:
            raise UnwrapError("wrapped value does not authenticate under the root key") from None
