"""SHA-256, AES-GCM and random bytes for the request path, computed without letting go of the GIL.

The server is one event-loop thread and one audit committer thread under one GIL. ``hashlib`` lets go of
the GIL for 2 KiB of data or more, ``cryptography``'s AESGCM from 2 KiB too, and ``os.urandom`` around its
system call. Each of those is a microsecond of work, but once another thread has taken the GIL, getting it
back costs a context switch or more, on both threads: measured under `make bench` load, the event loop
spent about 25 % more CPU per call and the committer about 40 % more (docs/performance.md). So:

* data is hashed and encrypted in pieces below the size where the library lets go (same result: SHA-256
  and GCM are streaming constructions, and the tests compare against the one-shot calls);
* random bytes come from OpenSSL's DRBG (``ssl.RAND_bytes``: seeded from the operating system, reseeded
  after fork, and it keeps the GIL), the generator the TLS stack draws its keys from.
"""
from __future__ import annotations

import hashlib
import ssl

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

# Below the libraries' threshold for letting go of the GIL (2048 bytes for both, checked by the tests).
PIECE = 2047
_TAG = 16


def random_bytes(count: int) -> bytes:
    return ssl.RAND_bytes(count)


def sha256_hex(data: bytes) -> str:
    if len(data) <= PIECE:
        return hashlib.sha256(data).hexdigest()
    digest, view = hashlib.sha256(), memoryview(data)
    for start in range(0, len(data), PIECE):
        digest.update(view[start:start + PIECE])
    return digest.hexdigest()


def aes_gcm_encrypt(key: bytes, iv: bytes, plaintext: bytes, aad: bytes) -> bytes:
    """``AESGCM(key).encrypt(iv, plaintext, aad)``: ciphertext followed by the 16-byte tag."""
    if len(plaintext) <= PIECE:
        return AESGCM(key).encrypt(iv, plaintext, aad)
    encryptor = Cipher(algorithms.AES(key), modes.GCM(iv)).encryptor()
    encryptor.authenticate_additional_data(aad)
    view = memoryview(plaintext)
    pieces = [encryptor.update(view[start:start + PIECE]) for start in range(0, len(plaintext), PIECE)]
    pieces.append(encryptor.finalize())
    pieces.append(encryptor.tag)
    return b"".join(pieces)


def aes_gcm_decrypt(key: bytes, iv: bytes, sealed: bytes, aad: bytes) -> bytes:
    """``AESGCM(key).decrypt(iv, sealed, aad)``; raises cryptography's InvalidTag as it does. Nothing
    decrypted is returned before the tag has been checked."""
    if len(sealed) <= PIECE + _TAG:
        return AESGCM(key).decrypt(iv, sealed, aad)
    decryptor = Cipher(algorithms.AES(key), modes.GCM(iv, sealed[-_TAG:])).decryptor()
    decryptor.authenticate_additional_data(aad)
    view = memoryview(sealed)[:-_TAG]
    pieces = [decryptor.update(view[start:start + PIECE]) for start in range(0, len(view), PIECE)]
    pieces.append(decryptor.finalize())  # InvalidTag here: the pieces above are dropped with this frame
    return b"".join(pieces)
