"""SHA-256, AES-GCM and random bytes for the request path.

SHA-256 and AES-GCM are the libraries' one-shot calls, which let go of the GIL for 2 KiB of data or more. Until
decision 267 they were computed in 2047-byte pieces to keep it: a serving process then held the audit committer
thread too, and each release handed the GIL to it and cost both threads a context switch (decision 47). A serving
process's calls now run on its event loop alone (the committer is a process of its own), a release with nobody
waiting costs next to nothing, and the one-shot calls measured 14-24 µs less CPU per 4 KiB call (decision 47,
amended; docs/performance.md, "Session 11").

Random bytes come from the operating system's generator, read a few KiB at a time into a pool and handed out in
order, each byte once (decision 275): a draw per value (OpenSSL's ``RAND_bytes`` asks the process id on every draw,
to notice a fork) made a system call on the request path, and on a virtual machine each cost the whole call far more
than its own microsecond. A pool is per process (a forked child starts with nothing) and takes a lock (whichever
thread asks gets its own bytes). Secrets (data keys, GenerateRandom's bytes) come from a pool that wipes what it
hands out; values written in a blob (its IV and KDF nonce) from one that need not.
"""
from __future__ import annotations

import hashlib
import os
import threading

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

_CHUNK = 4096  # bytes read at once
_MOST = 256  # a larger request is read on its own


def _read_random(buffer: bytearray) -> None:
    """Fills ``buffer`` in place from the kernel's generator (no copy of it is left behind)."""
    view, done = memoryview(buffer), 0
    try:
        fd = os.open("/dev/urandom", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:  # no /dev in a bare chroot: the same generator through getrandom, by way of a copy
        buffer[:] = os.urandom(len(buffer))
        return
    try:
        while done < len(buffer):
            done += os.readv(fd, [view[done:]])
    finally:
        os.close(fd)


class _RandomPool:
    """Random bytes handed out once each, in order, from chunks read from the kernel. A repeated IV and nonce would
    repeat a blob's key stream, a repeated data key would be another caller's: the lock makes every take a distinct
    slice whichever thread asks, and a forked child starts with nothing (``os.register_at_fork``)."""

    def __init__(self, wipe: bool) -> None:
        self._wipe = wipe  # overwrite what was handed out, and a chunk left behind
        self._lock = threading.Lock()
        self._chunk = bytearray()
        self._at = 0

    def take(self, count: int) -> bytes:
        if count > _MOST:
            return os.urandom(count)
        with self._lock:
            chunk, at = self._chunk, self._at
            if at + count > len(chunk):
                if self._wipe:
                    chunk[:] = bytes(len(chunk))
                chunk, at = bytearray(_CHUNK), 0
                _read_random(chunk)
                self._chunk = chunk
            taken = bytes(memoryview(chunk)[at:at + count])
            if self._wipe:
                chunk[at:at + count] = bytes(count)
            self._at = at + count
            return taken

    def forget(self) -> None:
        """In a forked child: nothing of the parent's to hand out, and a new lock (another thread may have held the
        old one when the process forked)."""
        self._chunk[:] = bytes(len(self._chunk))
        self._lock = threading.Lock()
        self._chunk, self._at = bytearray(), 0


_secret, _public = _RandomPool(wipe=True), _RandomPool(wipe=False)
os.register_at_fork(after_in_child=_secret.forget)
os.register_at_fork(after_in_child=_public.forget)


def random_bytes(count: int) -> bytes:
    """Random bytes for a secret (a data key, GenerateRandom's answer)."""
    return _secret.take(count)


def public_random_bytes(count: int) -> bytes:
    """Random bytes for a value that is public once made (an IV, a nonce written in the blob)."""
    return _public.take(count)


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def aes_gcm_encrypt(key: bytes, iv: bytes, plaintext: bytes, aad: bytes) -> bytes:
    """Ciphertext followed by the 16-byte tag."""
    return AESGCM(key).encrypt(iv, plaintext, aad)


def aes_gcm_decrypt(key: bytes, iv: bytes, sealed: bytes, aad: bytes) -> bytes:
    """Raises cryptography's InvalidTag when the tag does not match; nothing is returned before it is checked."""
    return AESGCM(key).decrypt(iv, sealed, aad)
