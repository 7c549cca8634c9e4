"""Asymmetric encryption and key agreement: RSA-OAEP, ECDH, ML-KEM (split from asymmetric.py, which
holds key generation and signatures)."""
from __future__ import annotations

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding

from domain.crypto.asymmetric import (
    ENCAPSULATE_DECAPSULATE,
    ENCRYPT_DECRYPT,
    ENCRYPTION_ALGORITHMS,
    KEY_AGREEMENT,
    MAX_PEER_PUBLIC_KEY_BYTES,
    RSA_KEY_BITS,
    hash_for_algorithm,
    key_matches_spec,
    load_any_public_key,
    load_private,
    require_algorithm,
    require_key_of_spec,
    require_key_spec,
)
from domain.errors import InvalidCiphertextError, InvalidKeyUsageError, ValidationError


def _oaep(algorithm: str) -> padding.OAEP:
    digest = hash_for_algorithm(algorithm)
    return padding.OAEP(mgf=padding.MGF1(digest), algorithm=digest, label=None)


def max_rsa_plaintext(key_bits: int, algorithm: str) -> int:
    """OAEP limit (RFC 8017 §7.1.1): k - 2·hLen - 2, e.g. 214/190 bytes for RSA-2048 with SHA-1/SHA-256."""
    return key_bits // 8 - 2 * hash_for_algorithm(algorithm).digest_size - 2


def _rsa_spec(key) -> str:
    spec = next((s for s in RSA_KEY_BITS if key_matches_spec(key, s)), None)
    if spec is None:
        raise InvalidKeyUsageError("Only RSA_2048, RSA_3072 and RSA_4096 keys encrypt and decrypt asymmetrically.")
    return spec


def rsa_encrypt(public_der: bytes, algorithm: str, plaintext: bytes) -> bytes:
    key = load_any_public_key(public_der)
    require_algorithm(_rsa_spec(key), ENCRYPT_DECRYPT, algorithm, ENCRYPTION_ALGORITHMS)
    limit = max_rsa_plaintext(key.key_size, algorithm)
    if not 1 <= len(plaintext) <= limit:
        raise ValidationError(f"Plaintext is {len(plaintext)} bytes; {algorithm} with a {key.key_size}-bit key "
                              f"accepts 1 to {limit} bytes.")
    return key.encrypt(plaintext, _oaep(algorithm))


def rsa_decrypt(private_der: bytes, algorithm: str, ciphertext: bytes) -> bytes:
    key = load_private(private_der)
    require_algorithm(_rsa_spec(key), ENCRYPT_DECRYPT, algorithm, ENCRYPTION_ALGORITHMS)
    try:
        return key.decrypt(ciphertext, _oaep(algorithm))
    except ValueError as exc:
        # One message for every failure, so callers learn nothing about padding (no decryption oracle).
        raise InvalidCiphertextError("The ciphertext is invalid for this key and encryption algorithm.") from exc


def derive_shared_secret(private_der: bytes, key_spec: str, peer_public_key_der: bytes) -> bytes:
    """ECDH; returns the raw shared secret (the x coordinate), unhashed, as AWS DeriveSharedSecret does."""
    require_key_spec(key_spec)
    require_algorithm(key_spec, KEY_AGREEMENT, "ECDH", {"ECDH"})
    if not 1 <= len(peer_public_key_der) <= MAX_PEER_PUBLIC_KEY_BYTES:
        raise ValidationError("PublicKey must be 1 to 8192 bytes of SubjectPublicKeyInfo DER.")
    try:
        peer = serialization.load_der_public_key(peer_public_key_der)
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise ValidationError("PublicKey is not a DER-encoded SubjectPublicKeyInfo public key.") from exc
    if not key_matches_spec(peer, key_spec):
        raise ValidationError(f"PublicKey must be an elliptic-curve key on the same curve as the {key_spec} key.")
    return require_key_of_spec(load_private(private_der), key_spec).exchange(ec.ECDH(), peer)


def _require_ml_kem(key_spec: str) -> None:
    require_key_spec(key_spec)
    require_algorithm(key_spec, ENCAPSULATE_DECAPSULATE, "ML_KEM", {"ML_KEM"})


def encapsulate(public_der: bytes, key_spec: str) -> tuple[bytes, bytes]:
    """ML-KEM encapsulation to an ML-KEM key: returns (shared_secret, ciphertext)."""
    _require_ml_kem(key_spec)
    return require_key_of_spec(load_any_public_key(public_der), key_spec).encapsulate()


def decapsulate(private_der: bytes, key_spec: str, ciphertext: bytes) -> bytes:
    _require_ml_kem(key_spec)
    try:
        return require_key_of_spec(load_private(private_der), key_spec).decapsulate(ciphertext)
    except ValueError as exc:
        raise InvalidCiphertextError(f"The ciphertext is not a valid {key_spec} ciphertext.") from exc
