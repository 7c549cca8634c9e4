"""HMAC keys (KeySpec HMAC_224/256/384/512) with AWS KMS semantics: GenerateMac, VerifyMac, imported material."""
from __future__ import annotations

import os
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, hmac

from domain.errors import InvalidKeyUsageError, ValidationError, shown

MAX_MESSAGE_BYTES = 4096


@dataclass(frozen=True)
class HmacSpec:
    algorithm: str  # the one MacAlgorithm AWS allows for the spec
    hash: type[hashes.HashAlgorithm]
    generated_bytes: int  # AWS generates keys as long as the digest
    import_range: tuple[int, int]  # accepted lengths of imported material, inclusive


HMAC_SPECS: dict[str, HmacSpec] = {
    "HMAC_224": HmacSpec("HMAC_SHA_224", hashes.SHA224, 28, (28, 64)),
    "HMAC_256": HmacSpec("HMAC_SHA_256", hashes.SHA256, 32, (32, 64)),
    "HMAC_384": HmacSpec("HMAC_SHA_384", hashes.SHA384, 48, (48, 128)),
    "HMAC_512": HmacSpec("HMAC_SHA_512", hashes.SHA512, 64, (64, 128)),
}
MAC_ALGORITHMS: dict[str, str] = {spec: info.algorithm for spec, info in HMAC_SPECS.items()}
_BY_ALGORITHM = {info.algorithm: info for info in HMAC_SPECS.values()}


def _spec(key_spec: str) -> HmacSpec:
    info = HMAC_SPECS.get(key_spec)
    if info is None:
        raise ValidationError(f"'{shown(key_spec)}' is not an HMAC key spec; use one of: {', '.join(HMAC_SPECS)}.")
    return info


def check_mac_algorithm(key_spec: str, algorithm: str) -> None:
    """AWS ties each HMAC spec to exactly one MacAlgorithm; any other is InvalidKeyUsage."""
    if algorithm not in _BY_ALGORITHM:
        raise ValidationError(f"'{shown(algorithm)}' is not a valid MacAlgorithm; use one of: {', '.join(_BY_ALGORITHM)}.")
    expected = _spec(key_spec).algorithm
    if algorithm != expected:
        raise InvalidKeyUsageError(f"{shown(algorithm)} is not valid for KeySpec {shown(key_spec)}; use {expected}.")


def generate_hmac_key(key_spec: str) -> bytes:
    return os.urandom(_spec(key_spec).generated_bytes)


def _hmac(key: bytes, algorithm: str, message: bytes, key_spec: str | None) -> hmac.HMAC:
    if key_spec is not None:
        check_mac_algorithm(key_spec, algorithm)
    info = _BY_ALGORITHM.get(algorithm)
    if info is None:
        raise ValidationError(f"'{shown(algorithm)}' is not a valid MacAlgorithm; use one of: {', '.join(_BY_ALGORITHM)}.")
    if not 1 <= len(message) <= MAX_MESSAGE_BYTES:
        raise ValidationError(f"Message is {len(message)} bytes; it must be 1 to {MAX_MESSAGE_BYTES} bytes.")
    mac = hmac.HMAC(key, info.hash())
    mac.update(message)
    return mac


def generate_mac(key: bytes, algorithm: str, message: bytes, *, key_spec: str | None = None) -> bytes:
    """HMAC of the message. Pass key_spec to have a MacAlgorithm that does not fit the key refused."""
    return _hmac(key, algorithm, message, key_spec).finalize()


def verify_mac(key: bytes, algorithm: str, message: bytes, mac: bytes, *, key_spec: str | None = None) -> bool:
    """Constant-time comparison (HMAC.verify); False for any mismatch, wrong-length tags included."""
    try:
        _hmac(key, algorithm, message, key_spec).verify(mac)
    except InvalidSignature:
        return False
    return True


def validate_imported_hmac_key(key_spec: str, key: bytes) -> bytes:
    low, high = _spec(key_spec).import_range
    if not low <= len(key) <= high:
        raise ValidationError(f"Imported key material for {shown(key_spec)} must be {low} to {high} bytes; it is {len(key)}.")
    return bytes(key)
