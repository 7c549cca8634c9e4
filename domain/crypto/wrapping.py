"""Root-key wrapping of backing keys (and of any other secret the service stores).

A wrapped value is ``root version (4, big endian) | iv (12) | AES-256-GCM(root key, secret) | tag`` with
AAD = purpose | key id | material id, so a wrapped row moved to another key, material or purpose fails.

The AES-256-GCM step itself is a port (``RootKeyVersion``): a software version holds its 32 bytes in this
process; a PKCS#11 version (infrastructure/pkcs11_token.py) asks the token to run AES-GCM with a key that
never leaves it. Both produce the same bytes, so the format does not depend on where the root key lives.
"""
from __future__ import annotations

import os
import struct
import threading
from typing import Callable, Mapping, Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

WRAP_HEADER = 4 + 12


class UnwrapError(Exception):
    """A wrapped value did not authenticate under the root key it names, or names an unknown version."""


class RootKeyVersion(Protocol):
    """One version of the root key: AES-256-GCM sealing with a 12-byte iv and a 16-byte tag appended."""

    def seal(self, iv: bytes, secret: bytes, aad: bytes) -> bytes: ...

    def open(self, iv: bytes, sealed: bytes, aad: bytes) -> bytes:
        """Raises UnwrapError when the value does not authenticate."""
        ...


class SoftwareRootKey:
    """A root key version whose 32 bytes this process holds (file and environment providers)."""

    __slots__ = ("_aead",)

    def __init__(self, key: bytes) -> None:
        if len(key) != 32:
            raise ValueError("a root key is 32 bytes")
        self._aead = AESGCM(key)

    def seal(self, iv: bytes, secret: bytes, aad: bytes) -> bytes:
        return self._aead.encrypt(iv, secret, aad)

    def open(self, iv: bytes, sealed: bytes, aad: bytes) -> bytes:
        try:
            return self._aead.decrypt(iv, sealed, aad)
        except InvalidTag:
            raise UnwrapError("wrapped value does not authenticate under the root key") from None

    def __repr__(self) -> str:
        return "SoftwareRootKey(<hidden>)"


def _aad(purpose: str, key_id: str, material_id: str) -> bytes:
    parts = [p.encode("utf-8") for p in (purpose, key_id, material_id)]
    return b"".join(struct.pack(">I", len(p)) + p for p in parts)


def wrapped_version(wrapped: bytes) -> int | None:
    """The root version a wrapped value names, or None when it is too short to be one."""
    if len(wrapped) < WRAP_HEADER + 16:
        return None
    return struct.unpack(">I", wrapped[:4])[0]


class RootKeyring:
    """The root key versions this process can use: the current one wraps, any held version unwraps.

    Online root-key rotation changes both while the process serves: ``locate`` finds a version this process
    does not hold yet (a newer one another process made), and ``current_version``, when given, names the
    version to wrap under now (the rotation state in the database, read with a short cache).
    """

    def __init__(self, versions: Mapping[int, RootKeyVersion | bytes], current: int, *,
                 locate: Callable[[int], RootKeyVersion | None] | None = None,
                 current_version: Callable[[], int | None] | None = None) -> None:
        self._versions: dict[int, RootKeyVersion] = {
            v: SoftwareRootKey(k) if isinstance(k, (bytes, bytearray)) else k for v, k in versions.items()}
        self._current = current
        self._locate = locate
        self._current_version = current_version
        self._lock = threading.Lock()

    @property
    def versions(self) -> Mapping[int, RootKeyVersion]:
        return dict(self._versions)

    @property
    def current(self) -> int:
        if self._current_version is not None:
            named = self._current_version()
            if named is not None and self.version(named) is not None:
                return named
        return self._current

    def version(self, number: int) -> RootKeyVersion | None:
        held = self._versions.get(number)
        if held is None and self._locate is not None:
            with self._lock:
                held = self._versions.get(number)
                if held is None:
                    held = self._locate(number)
                    if held is not None:
                        self._versions[number] = held
        return held

    def forget(self, number: int) -> None:
        """A retired version: this process stops using it (its key is destroyed in the provider)."""
        with self._lock:
            self._versions.pop(number, None)

    def wrap(self, secret: bytes, *, purpose: str, key_id: str, material_id: str = "",
             version: int | None = None) -> bytes:
        number = self.current if version is None else version
        root = self.version(number)
        if root is None:
            raise UnwrapError(f"root key version {number} is not available")
        iv = os.urandom(12)
        return struct.pack(">I", number) + iv + root.seal(iv, secret, _aad(purpose, key_id, material_id))

    def unwrap(self, wrapped: bytes, *, purpose: str, key_id: str, material_id: str = "") -> bytes:
        number = wrapped_version(wrapped)
        if number is None:
            raise UnwrapError("wrapped value is truncated")
        root = self.version(number)
        if root is None:
            raise UnwrapError(f"root key version {number} is not available")
        return root.open(wrapped[4:16], wrapped[16:], _aad(purpose, key_id, material_id))
