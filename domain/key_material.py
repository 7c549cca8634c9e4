"""Backing-key material: generation, its public id and its commitment.

The commitment is HMAC-SHA256 keyed by the material itself over (key id, material id). It lets the
service recognise the same material again (re-import) without storing it, it does not depend on the
root key (so rotating the root key does not change history), and for 256-bit material it reveals nothing.
"""
from __future__ import annotations

import hashlib
import hmac
import os
from dataclasses import dataclass, field

MATERIAL_ID_BYTES = 16
SYMMETRIC_KEY_BYTES = 32
BACKING_KEY_PURPOSE = "backing-key"


@dataclass(frozen=True)
class Material:
    material_id: str  # 32 hex chars: 16 random bytes
    secret: bytes = field(repr=False)

    def commitment(self, key_id: str) -> str:
        message = b"keyledger/commitment/v1|" + key_id.encode() + b"|" + bytes.fromhex(self.material_id)
        return hmac.new(self.secret, message, hashlib.sha256).hexdigest()


def new_symmetric_material() -> Material:
    return Material(os.urandom(MATERIAL_ID_BYTES).hex(), os.urandom(SYMMETRIC_KEY_BYTES))
