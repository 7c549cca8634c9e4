"""Key material at rest: wrap under the root key before it touches storage, unwrap on use.

Unwrapped backing keys are cached in process memory (never on disk): AES-GCM unwrap is cheap but the
row fetch is a database round trip on every crypto call otherwise.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

from application.ports import BackingKeyStore
from domain.crypto.wrapping import RootKeyring, UnwrapError
from domain.errors import InternalError
from domain.keys.material import BACKING_KEY_PURPOSE, Material

CACHE_SIZE = 4096


class KeyMaterials:
    def __init__(self, store: BackingKeyStore, keyring: RootKeyring) -> None:
        self._store = store
        self._keyring = keyring
        self._cache: OrderedDict[tuple[str, str], bytes] = OrderedDict()
        self._lock = threading.Lock()

    def save(self, tx: Any, key_id: str, material: Material) -> None:
        wrapped = self._keyring.wrap(material.secret, purpose=BACKING_KEY_PURPOSE, key_id=key_id,
                                     material_id=material.material_id)
        self._store.put(tx, key_id, material.material_id, wrapped)

    def get(self, key_id: str, material_id: str) -> bytes | None:
        """The backing key, or None when this key has no such material (never had, or it was destroyed)."""
        cache_key = (key_id, material_id)
        with self._lock:
            secret = self._cache.get(cache_key)
            if secret is not None:
                self._cache.move_to_end(cache_key)
                return secret
        wrapped = self._store.get(key_id, material_id)
        if wrapped is None:
            return None
        try:
            secret = self._keyring.unwrap(wrapped, purpose=BACKING_KEY_PURPOSE, key_id=key_id, material_id=material_id)
        except UnwrapError:
            # A stored row that does not authenticate is corruption or tampering, not the caller's fault.
            raise InternalError("The key material for this key could not be unwrapped; the operator has been alerted.") from None
        with self._lock:
            self._cache[cache_key] = secret
            while len(self._cache) > CACHE_SIZE:
                self._cache.popitem(last=False)
        return secret

    def share(self, tx: Any, from_key_id: str, to_key_id: str, material_id: str) -> None:
        """Stores one key's material for another key too (a multi-Region replica's copy, wrapped for it: each
        Region's key holds, and on deletion shreds, its own copy)."""
        secret = self.get(from_key_id, material_id)
        if secret is None:
            raise InternalError(f"The key material {material_id} to share with a related key is missing.")
        self.save(tx, to_key_id, Material(material_id, secret))

    def replace(self, tx: Any, key_id: str, material: Material) -> None:
        """Stores material whose row may already exist (the same material imported again)."""
        self._store.delete_material(tx, key_id, material.material_id)
        self.save(tx, key_id, material)

    def seal(self, secret: bytes, *, purpose: str, key_id: str, material_id: str = "") -> bytes:
        return self._keyring.wrap(secret, purpose=purpose, key_id=key_id, material_id=material_id)

    def unseal(self, wrapped: bytes, *, purpose: str, key_id: str, material_id: str = "") -> bytes:
        try:
            return self._keyring.unwrap(wrapped, purpose=purpose, key_id=key_id, material_id=material_id)
        except UnwrapError:
            raise InternalError("A stored secret could not be unwrapped; the operator has been alerted.") from None

    def compact(self) -> None:
        """After material was destroyed and committed: make the storage drop every copy of it."""
        self._store.compact()

    def destroy_material(self, tx: Any, key_id: str, material_id: str) -> None:
        """Removes one material of a key (crypto-shredding of that material alone)."""
        self._store.delete_material(tx, key_id, material_id)
        with self._lock:
            self._cache.pop((key_id, material_id), None)

    def destroy(self, tx: Any, key_id: str) -> None:
        self._store.delete_key(tx, key_id)
        self.forget(key_id)

    def forget(self, key_id: str) -> None:
        with self._lock:
            for cache_key in [k for k in self._cache if k[0] == key_id]:
                del self._cache[cache_key]
