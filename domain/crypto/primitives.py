"""SHA-256, AES-GCM and random bytes for the request path.

SHA-256 and AES-GCM are the libraries' one-shot calls, which let go of the GIL for 2 KiB of data or more. Until
decision 267 they were computed in 2047-byte pieces to keep it: a serving process then held the audit committer
thread too, and each release handed the GIL to it and cost both threads a context switch (decision 47). A serving
process's calls now run on its event loop alone (the committer is a process of its own), a release with nobody
waiting costs next to nothing, and the one-shot calls measured 14-24 µs less CPU per 4 KiB call (decision 47,
amended; docs/performance.md, "Session 11").

Random bytes come from OpenSSL's DRBG (``ssl.RAND_bytes``: seeded from the operating system, reseeded after fork),
the generator the TLS stack draws its keys from.
"""
from __future__ import annotations

import hashlib
import ssl

from cryptography.hazmat.primitives.ciphers.aead import AESGCM


def random_bytes(count: int) -> bytes:
    return ssl.RAND_bytes(count)


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def aes_gcm_encrypt(key: bytes, iv: bytes, plaintext: bytes, aad: bytes) -> bytes:
    """Ciphertext followed by the 16-byte tag."""
    return AESGCM(key).encrypt(iv, plaintext, aad)


def aes_gcm_decrypt(key: bytes, iv: bytes, sealed: bytes, aad: bytes) -> bytes:
    """Raises cryptography's InvalidTag when the tag does not match; nothing is returned before it is checked."""
    return AESGCM(key).decrypt(iv, sealed, aad)
