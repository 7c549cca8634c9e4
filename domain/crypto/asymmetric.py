"""Asymmetric key material and operations with AWS KMS semantics (key specs, algorithms, size limits).

Private keys travel as unencrypted PKCS#8 DER (the caller root-wraps them); public keys as
SubjectPublicKeyInfo DER, the form AWS's GetPublicKey returns. Every primitive is `cryptography`'s.
"""
from __future__ import annotations

import importlib

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa, utils

from domain.errors import InvalidKeyUsageError, UnsupportedOperationError, ValidationError, shown

ENCRYPT_DECRYPT, SIGN_VERIFY = "ENCRYPT_DECRYPT", "SIGN_VERIFY"
KEY_AGREEMENT, ENCAPSULATE_DECAPSULATE = "KEY_AGREEMENT", "ENCAPSULATE_DECAPSULATE"
RAW, DIGEST, EXTERNAL_MU = "RAW", "DIGEST", "EXTERNAL_MU"
MAX_MESSAGE_BYTES = 4096
MAX_PEER_PUBLIC_KEY_BYTES = 8192
ML_DSA_MU_BYTES = 64
SM2_REFUSAL = "SM2 is only offered in China regions; keyledger does not support it."

RSA_KEY_BITS = {"RSA_2048": 2048, "RSA_3072": 3072, "RSA_4096": 4096}
_CURVES: dict[str, type[ec.EllipticCurve]] = {
    "ECC_NIST_P256": ec.SECP256R1, "ECC_NIST_P384": ec.SECP384R1, "ECC_NIST_P521": ec.SECP521R1,
    "ECC_SECG_P256K1": ec.SECP256K1,
}
ED25519 = "ECC_NIST_EDWARDS25519"
_HASHES = {"SHA_1": hashes.SHA1, "SHA_256": hashes.SHA256, "SHA_384": hashes.SHA384, "SHA_512": hashes.SHA512}
_RSA_SIGNING = tuple(f"RSASSA_{s}_SHA_{n}" for s in ("PSS", "PKCS1_V1_5") for n in (256, 384, 512))
_OAEP = ("RSAES_OAEP_SHA_1", "RSAES_OAEP_SHA_256")
_NIST_ECDSA = {"ECC_NIST_P256": "ECDSA_SHA_256", "ECC_NIST_P384": "ECDSA_SHA_384", "ECC_NIST_P521": "ECDSA_SHA_512"}
_PQ_NAMES = {"ML_DSA_44": ("mldsa", "MLDSA44"), "ML_DSA_65": ("mldsa", "MLDSA65"), "ML_DSA_87": ("mldsa", "MLDSA87"),
             "ML_KEM_512": ("mlkem", "MLKEM512"), "ML_KEM_768": ("mlkem", "MLKEM768"),
             "ML_KEM_1024": ("mlkem", "MLKEM1024")}

# What AWS allows per key spec: {KeySpec: {KeyUsage: algorithms}}. This describes AWS, so it lists specs and
# algorithms this build cannot run (see POST_QUANTUM_SUPPORTED, ED25519_PH_SUPPORTED, SUPPORTED_KEY_SPECS).
ALGORITHMS: dict[str, dict[str, tuple[str, ...]]] = {
    **{spec: {ENCRYPT_DECRYPT: _OAEP, SIGN_VERIFY: _RSA_SIGNING} for spec in RSA_KEY_BITS},
    **{spec: {SIGN_VERIFY: (alg,), KEY_AGREEMENT: ("ECDH",)} for spec, alg in _NIST_ECDSA.items()},
    "ECC_SECG_P256K1": {SIGN_VERIFY: ("ECDSA_SHA_256",)},
    ED25519: {SIGN_VERIFY: ("ED25519_SHA_512", "ED25519_PH_SHA_512")},
    **{spec: {SIGN_VERIFY: ("ML_DSA_SHAKE_256",)} for spec in ("ML_DSA_44", "ML_DSA_65", "ML_DSA_87")},
    **{spec: {ENCAPSULATE_DECAPSULATE: ("ML_KEM",)} for spec in ("ML_KEM_512", "ML_KEM_768", "ML_KEM_1024")},
}
_ALL_SIGNING = {alg for usages in ALGORITHMS.values() for alg in usages.get(SIGN_VERIFY, ())}
ENCRYPTION_ALGORITHMS = {"SYMMETRIC_DEFAULT", "SM2PKE", *_OAEP}
DATA_KEY_PAIR_SPECS = (*RSA_KEY_BITS, *_CURVES, ED25519, "ML_KEM_512", "ML_KEM_768", "ML_KEM_1024", "SM2")

# cryptography (through 50) has no Ed25519ph/Ed25519ctx API: Ed25519PrivateKey.sign takes only the message.
ED25519_PH_SUPPORTED = False


def _probe_post_quantum() -> dict[str, tuple[type, type] | None]:
    """(private class, public class) per PQ spec, or None. Generating a key is the only reliable probe:
    the classes exist even when the linked OpenSSL lacks the algorithm, and cryptography 50 has no ML-KEM-512."""
    found: dict[str, tuple[type, type] | None] = {}
    for spec, (module_name, prefix) in _PQ_NAMES.items():
        try:
            module = importlib.import_module(f"cryptography.hazmat.primitives.asymmetric.{module_name}")
            private_cls, public_cls = getattr(module, prefix + "PrivateKey"), getattr(module, prefix + "PublicKey")
            private_cls.generate()
            found[spec] = (private_cls, public_cls)
        except (ImportError, AttributeError, UnsupportedAlgorithm):
            found[spec] = None
    return found


_PQ_CLASSES = _probe_post_quantum()
POST_QUANTUM_SUPPORTED: dict[str, bool] = {spec: classes is not None for spec, classes in _PQ_CLASSES.items()}
SUPPORTED_KEY_SPECS = frozenset(s for s in ALGORITHMS if s not in _PQ_CLASSES or POST_QUANTUM_SUPPORTED[s])


def require_key_spec(key_spec: str) -> None:
    if key_spec == "SM2":
        raise UnsupportedOperationError(SM2_REFUSAL)
    if key_spec not in ALGORITHMS:
        raise ValidationError(f"'{key_spec}' is not an asymmetric key spec; use one of: {', '.join(ALGORITHMS)}.")
    if key_spec not in SUPPORTED_KEY_SPECS:
        raise UnsupportedOperationError(
            f"KeySpec {key_spec} needs a post-quantum algorithm the installed cryptography library does not provide.")


def require_algorithm(key_spec: str, usage: str, algorithm: str, known: set[str]) -> None:
    allowed = ALGORITHMS[key_spec].get(usage, ())
    if algorithm in allowed:
        return
    if algorithm not in known:
        raise ValidationError(f"'{algorithm}' is not a valid algorithm; use one of: {', '.join(sorted(known))}.")
    if not allowed:
        raise InvalidKeyUsageError(f"KeySpec {key_spec} does not support {usage}.")
    raise InvalidKeyUsageError(f"{algorithm} is not valid for KeySpec {key_spec}; use one of: {', '.join(allowed)}.")


def key_matches_spec(key: object, key_spec: str) -> bool:
    """True when a private or public key is of the given spec (RSA size, curve, algorithm)."""
    if key_spec in RSA_KEY_BITS:
        return isinstance(key, (rsa.RSAPrivateKey, rsa.RSAPublicKey)) and key.key_size == RSA_KEY_BITS[key_spec]
    if key_spec in _CURVES:
        return (isinstance(key, (ec.EllipticCurvePrivateKey, ec.EllipticCurvePublicKey))
                and key.curve.name == _CURVES[key_spec].name)
    if key_spec == ED25519:
        return isinstance(key, (ed25519.Ed25519PrivateKey, ed25519.Ed25519PublicKey))
    classes = _PQ_CLASSES.get(key_spec)
    return classes is not None and isinstance(key, classes)


def _pkcs8(key) -> bytes:
    return key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def generate_private_key(key_spec: str) -> bytes:
    require_key_spec(key_spec)
    if key_spec in RSA_KEY_BITS:
        return _pkcs8(rsa.generate_private_key(public_exponent=65537, key_size=RSA_KEY_BITS[key_spec]))
    if key_spec in _CURVES:
        return _pkcs8(ec.generate_private_key(_CURVES[key_spec]()))
    if key_spec == ED25519:
        return _pkcs8(ed25519.Ed25519PrivateKey.generate())
    return _pkcs8(_PQ_CLASSES[key_spec][0].generate())


def load_private(private_der: bytes):
    """Loads stored material: keys this service generated, or imported ones validate_imported_private_key checked.
    It skips cryptography's RSA consistency check (about 0.3 s per RSA-4096 load) because that material is
    already validated and arrives through authenticated root wrapping; untrusted keys go through the validator."""
    try:
        return serialization.load_der_private_key(private_der, password=None, unsafe_skip_rsa_key_validation=True)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise ValidationError("The private key is not an unencrypted PKCS#8 DER key this service can read.") from exc


def public_key_der(private_der: bytes) -> bytes:
    public_key = load_private(private_der).public_key()
    return public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def load_any_public_key(key_der: bytes):
    """Public key from SPKI DER, or from PKCS#8 DER for callers that hold only the private key."""
    try:
        return serialization.load_der_public_key(key_der)
    except (ValueError, UnsupportedAlgorithm):
        pass
    try:
        return serialization.load_der_private_key(key_der, password=None,
                                                  unsafe_skip_rsa_key_validation=True).public_key()
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise ValidationError("The key is neither SubjectPublicKeyInfo DER nor unencrypted PKCS#8 DER.") from exc


def require_key_of_spec(key, key_spec: str):
    if not key_matches_spec(key, key_spec):
        raise ValidationError(f"The key does not match KeySpec {key_spec}.")
    return key


def hash_for_algorithm(algorithm: str) -> hashes.HashAlgorithm | None:
    suffix = algorithm.rpartition("SHA_")[2]
    return _HASHES["SHA_" + suffix]() if "SHA_" + suffix in _HASHES else None


def _check_message(key_spec: str, algorithm: str, message: bytes, message_type: str) -> bool:
    """Validates the message for its type; returns True when it is already a digest (or ML-DSA mu)."""
    require_algorithm(key_spec, SIGN_VERIFY, algorithm, _ALL_SIGNING)
    if not message:
        raise ValidationError("Message must be 1 to 4096 bytes; it is empty.")
    if message_type == RAW:
        if algorithm == "ED25519_PH_SHA_512":
            raise ValidationError("ED25519_PH_SHA_512 requires MessageType DIGEST.")
        if len(message) > MAX_MESSAGE_BYTES:
            raise ValidationError(f"Message is {len(message)} bytes; a RAW message may be at most 4096 bytes.")
        return False
    if message_type == EXTERNAL_MU:
        if algorithm != "ML_DSA_SHAKE_256":
            raise ValidationError(f"MessageType EXTERNAL_MU is only valid with ML_DSA_SHAKE_256, not {algorithm}.")
        if len(message) != ML_DSA_MU_BYTES:
            raise ValidationError(f"Mu is {len(message)} bytes; ML_DSA_SHAKE_256 needs a 64-byte external mu.")
        return True
    if message_type != DIGEST:
        raise ValidationError(f"'{shown(message_type)}' is not a valid MessageType; use RAW, DIGEST or EXTERNAL_MU.")
    if algorithm in ("ED25519_SHA_512", "ML_DSA_SHAKE_256"):
        raise ValidationError(f"{algorithm} does not accept MessageType DIGEST.")
    digest_size = hash_for_algorithm(algorithm).digest_size
    if len(message) != digest_size:
        hash_name = "SHA-" + algorithm.rpartition("SHA_")[2]
        raise ValidationError(f"Digest is {len(message)} bytes; {algorithm} needs a {digest_size}-byte {hash_name} digest.")
    return True


def _refuse_ed25519ph(algorithm: str) -> None:
    if algorithm == "ED25519_PH_SHA_512" and not ED25519_PH_SUPPORTED:
        raise UnsupportedOperationError(
            "ED25519_PH_SHA_512 (Ed25519ph) is not supported: the cryptography library offers only pure Ed25519. "
            "Use ED25519_SHA_512 with MessageType RAW.")


def _hash_arg(algorithm: str, prehashed: bool):
    digest = hash_for_algorithm(algorithm)
    return utils.Prehashed(digest) if prehashed else digest


def _rsa_padding(algorithm: str):
    if algorithm.startswith("RSASSA_PKCS1"):
        return padding.PKCS1v15()
    # AWS uses a salt as long as the digest (as LocalStack does); MAX_LENGTH would not interoperate.
    digest = hash_for_algorithm(algorithm)
    return padding.PSS(mgf=padding.MGF1(digest), salt_length=digest.digest_size)


def sign(private_der: bytes, key_spec: str, algorithm: str, message: bytes, message_type: str = RAW) -> bytes:
    """RAW messages are hashed here; a DIGEST (or ML-DSA EXTERNAL_MU) is signed as given, never hashed again."""
    require_key_spec(key_spec)
    prehashed = _check_message(key_spec, algorithm, message, message_type)
    _refuse_ed25519ph(algorithm)
    key = require_key_of_spec(load_private(private_der), key_spec)
    if key_spec in RSA_KEY_BITS:
        return key.sign(message, _rsa_padding(algorithm), _hash_arg(algorithm, prehashed))
    if key_spec in _CURVES:
        return key.sign(message, ec.ECDSA(_hash_arg(algorithm, prehashed)))
    if key_spec == ED25519:
        return key.sign(message)
    # ML-DSA: pure mode with the empty context, or over a caller-computed mu (FIPS 204 external mu).
    return key.sign_mu(message) if prehashed else key.sign(message)


def verify(key_der: bytes, key_spec: str, algorithm: str, message: bytes, message_type: str,
           signature: bytes) -> bool:
    """False for any signature that does not verify, malformed ones included; request errors still raise."""
    require_key_spec(key_spec)
    prehashed = _check_message(key_spec, algorithm, message, message_type)
    _refuse_ed25519ph(algorithm)
    key = require_key_of_spec(load_any_public_key(key_der), key_spec)
    try:
        if key_spec in RSA_KEY_BITS:
            key.verify(signature, message, _rsa_padding(algorithm), _hash_arg(algorithm, prehashed))
        elif key_spec in _CURVES:
            key.verify(signature, message, ec.ECDSA(_hash_arg(algorithm, prehashed)))
        elif key_spec == ED25519:
            key.verify(signature, message)
        elif prehashed:
            key.verify_mu(signature, message)
        else:
            key.verify(signature, message)
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True


def generate_data_key_pair(spec: str) -> tuple[bytes, bytes]:
    """(private PKCS#8 DER, public SPKI DER) for a DataKeyPairSpec."""
    if spec not in DATA_KEY_PAIR_SPECS:
        raise ValidationError(f"'{shown(spec)}' is not a valid KeyPairSpec; use one of: {', '.join(DATA_KEY_PAIR_SPECS)}.")
    private_der = generate_private_key(spec)
    return private_der, public_key_der(private_der)


def _looks_like_pkcs8(der: bytes) -> bool:
    """PrivateKeyInfo is SEQUENCE { INTEGER version, SEQUENCE algorithm, ... }. PKCS#1 and SEC1 keys, which
    cryptography would also load, have an INTEGER or OCTET STRING there; AWS accepts only PKCS#8."""
    def element_end(at: int) -> tuple[int, int]:  # (start of content, end of element)
        length, at = der[at + 1], at + 2
        if length & 0x80:
            count = length & 0x7F
            length, at = int.from_bytes(der[at:at + count], "big"), at + count
        return at, at + length
    try:
        content, _ = element_end(0)
        return der[0] == 0x30 and der[content] == 0x02 and der[element_end(content)[1]] == 0x30
    except IndexError:
        return False


def validate_imported_private_key(key_spec: str, pkcs8_der: bytes) -> bytes:
    """Checks imported material is a PKCS#8 key of the key spec; returns it re-encoded (normalized) PKCS#8 DER."""
    require_key_spec(key_spec)
    refusal = "The imported key material is not an unencrypted PKCS#8 DER private key."
    if not _looks_like_pkcs8(pkcs8_der):
        raise ValidationError(refusal)
    try:
        key = serialization.load_der_private_key(pkcs8_der, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise ValidationError(refusal) from exc
    if not key_matches_spec(key, key_spec):
        raise ValidationError(f"The imported key material does not match KeySpec {key_spec}.")
    return _pkcs8(key)
