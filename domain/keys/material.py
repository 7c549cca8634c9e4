"""Backing-key material: generation, its public id and its commitment.

The commitment is HMAC-SHA256 keyed by the material itself over (key id, material id). It lets the
service recognise the same material again (re-import) without storing it, it does not depend on the
root key (so rotating the root key does not change history), and for 256-bit material it reveals nothing.
"""
from __future__ import annotations

import functools
import hashlib
import hmac
import os
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

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


def new_material_id() -> str:
    return os.urandom(MATERIAL_ID_BYTES).hex()


def new_symmetric_material() -> Material:
    return Material(new_material_id(), os.urandom(SYMMETRIC_KEY_BYTES))


def new_material(key_spec: str) -> Material:
    """Fresh backing-key material for a key spec: 32 random bytes, an HMAC key, or a PKCS#8 private key."""
    if key_spec == "SYMMETRIC_DEFAULT":
        return new_symmetric_material()
    if key_spec.startswith("HMAC_"):
        from domain.crypto.mac import generate_hmac_key

        return Material(new_material_id(), generate_hmac_key(key_spec))
    from domain.crypto.asymmetric import generate_private_key

    return Material(new_material_id(), generate_private_key(key_spec))


@functools.lru_cache(maxsize=4096)  # a pure function of two ids, asked on every Decrypt and GenerateDataKey
def key_material_id(key_id: str, material_id: str) -> str:
    """The 64-hex KeyMaterialId callers see. The blob header carries a 16-byte material id (docs/key-hierarchy.md);
    AWS's wire shape is 32 bytes of hex, so we publish a hash of (key id, material id): stable, and it
    reveals nothing about the material."""
    return hashlib.sha256(b"keyledger/key-material-id/v1|" + key_id.encode() + b"|" + bytes.fromhex(material_id)).hexdigest()


def material_record(material_id: str, commitment: str, at: datetime, *, imported: bool,
                    rotation_type: str | None = None, valid_to: datetime | None = None,
                    expiration_model: str | None = None) -> dict[str, Any]:
    """One entry of Key.materials: what the aggregate remembers of a material (never its bytes)."""
    return {"material_id": material_id, "commitment": commitment, "created": at, "imported": imported,
            "rotation_type": rotation_type, "valid_to": valid_to, "expiration_model": expiration_model,
            "present": True}
