"""Importing key material (BYOK): wrapping key pairs, import tokens and unwrapping, as AWS KMS does it.

GetParametersForImport hands out a fresh RSA wrapping public key and an import token; ImportKeyMaterial
takes the token back with the key material the customer wrapped under that public key. The private
wrapping key never leaves the service: the caller stores it root-wrapped under an ``import_id`` and the
token only names that id.

Import token format (version 1), opaque to customers but not secret::

    0x01 | claims (canonical JSON, UTF-8) | HMAC-SHA256(token_key, "keyledger/import-token/v1" | 0x01 | claims)

claims = {"key_id", "import_id", "wrapping_algorithm", "wrapping_key_spec", "issued_at", "expires_at"},
times as ISO 8601 UTC. The MAC makes the token bound to its KMS key: a token presented for another key,
or with any byte changed, is refused. It carries no secret, so a MAC (not encryption) is enough.
"""
from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.keywrap import InvalidUnwrap, aes_key_unwrap_with_padding

from domain.errors import (
    ExpiredImportTokenError,
    InvalidCiphertextError,
    InvalidImportTokenError,
    UnsupportedOperationError,
    ValidationError,
    shown,
)


@dataclass(frozen=True)
class WrappingAlgorithm:
    name: str
    hash: type[hashes.HashAlgorithm]
    hybrid: bool  # RSA_AES_KEY_WRAP: RSA-OAEP(ephemeral AES-256 key) | AES-KWP(key material)


WRAPPING_ALGORITHMS: dict[str, WrappingAlgorithm] = {
    a.name: a
    for a in (
        WrappingAlgorithm("RSAES_OAEP_SHA_1", hashes.SHA1, False),
        WrappingAlgorithm("RSAES_OAEP_SHA_256", hashes.SHA256, False),
        WrappingAlgorithm("RSA_AES_KEY_WRAP_SHA_1", hashes.SHA1, True),
        WrappingAlgorithm("RSA_AES_KEY_WRAP_SHA_256", hashes.SHA256, True),
    )
}
# Well-formed AWS values that we refuse: AWS dropped PKCS#1 v1.5 on 2023-10-10 (padding-oracle prone),
# and SM2 exists only in AWS China Regions.
_REFUSED_ALGORITHMS = {
    "RSAES_PKCS1_V1_5": "RSAES_PKCS1_V1_5 is no longer supported for importing key material, as in AWS KMS; "
    "use RSAES_OAEP_SHA_256 or RSA_AES_KEY_WRAP_SHA_256.",
    "SM2PKE": "SM2PKE is only offered in AWS China Regions and is not supported; "
    "use RSAES_OAEP_SHA_256 or RSA_AES_KEY_WRAP_SHA_256.",
}
WRAPPING_KEY_SPECS: dict[str, int] = {"RSA_2048": 2048, "RSA_3072": 3072, "RSA_4096": 4096}
IMPORT_TOKEN_VALIDITY = timedelta(hours=24)
EPHEMERAL_AES_KEY_BYTES = 32
SYMMETRIC_MATERIAL_BYTES = 32

_TOKEN_VERSION = b"\x01"
_TOKEN_DOMAIN = b"keyledger/import-token/v1"
_TAG_BYTES = 32
_CLAIMS = ("key_id", "import_id", "wrapping_algorithm", "wrapping_key_spec", "issued_at", "expires_at")


def check_wrapping_algorithm(name: str) -> WrappingAlgorithm:
    if name in _REFUSED_ALGORITHMS:
        raise UnsupportedOperationError(_REFUSED_ALGORITHMS[name])
    algorithm = WRAPPING_ALGORITHMS.get(name)
    if algorithm is None:
        raise ValidationError(f"WrappingAlgorithm '{shown(name)}' is not valid; use one of: {', '.join(WRAPPING_ALGORITHMS)}.")
    return algorithm


def check_wrapping_key_spec(name: str) -> int:
    if name == "SM2":
        raise UnsupportedOperationError("WrappingKeySpec SM2 is only offered in AWS China Regions and is not "
                                        "supported; use RSA_2048, RSA_3072 or RSA_4096.")
    bits = WRAPPING_KEY_SPECS.get(name)
    if bits is None:
        raise ValidationError(f"WrappingKeySpec '{shown(name)}' is not valid; use one of: {', '.join(WRAPPING_KEY_SPECS)}.")
    return bits


def new_wrapping_key(wrapping_key_spec: str) -> tuple[bytes, bytes]:
    """A fresh RSA wrapping key pair: (private PKCS#8 DER, public SPKI DER, as GetParametersForImport returns)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=check_wrapping_key_spec(wrapping_key_spec))
    der = serialization.Encoding.DER
    return (key.private_bytes(der, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()),
            key.public_key().public_bytes(der, serialization.PublicFormat.SubjectPublicKeyInfo))


# --- Import tokens ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ImportTicket:
    key_id: str
    import_id: str
    wrapping_algorithm: str
    wrapping_key_spec: str
    issued_at: datetime
    expires_at: datetime


def _utc(moment: datetime, what: str) -> datetime:
    # Naive datetimes would silently mean "server local time" and make expiry depend on the host.
    if moment.tzinfo is None:
        raise ValueError(f"{what} must be timezone-aware")
    return moment.astimezone(timezone.utc)


def _tag(token_key: bytes, body: bytes) -> bytes:
    return hmac.new(token_key, _TOKEN_DOMAIN + body, hashlib.sha256).digest()


def issue_import_token(*, token_key: bytes, key_id: str, import_id: str, wrapping_algorithm: str,
                       wrapping_key_spec: str, issued_at: datetime,
                       valid_for: timedelta = IMPORT_TOKEN_VALIDITY) -> bytes:
    check_wrapping_algorithm(wrapping_algorithm)
    check_wrapping_key_spec(wrapping_key_spec)
    issued = _utc(issued_at, "issued_at")
    claims = {
        "key_id": key_id,
        "import_id": import_id,
        "wrapping_algorithm": wrapping_algorithm,
        "wrapping_key_spec": wrapping_key_spec,
        "issued_at": issued.isoformat(),
        "expires_at": (issued + valid_for).isoformat(),
    }
    body = _TOKEN_VERSION + json.dumps(claims, sort_keys=True, separators=(",", ":")).encode()
    return body + _tag(token_key, body)


def read_import_token(token_key: bytes, token: bytes, *, key_id: str, now: datetime) -> ImportTicket:
    """The ticket inside ``token`` if it is authentic, issued for ``key_id`` (the key's id, not an ARN)
    and not expired at ``now``."""
    invalid = InvalidImportTokenError(
        "The import token is not valid for this KMS key; call GetParametersForImport for this key to get a new one."
    )
    body, tag = token[:-_TAG_BYTES], token[-_TAG_BYTES:]
    # Authenticate before parsing, so nothing an attacker wrote reaches the JSON parser.
    if len(token) <= 1 + _TAG_BYTES or not hmac.compare_digest(tag, _tag(token_key, body)):
        raise invalid
    if body[:1] != _TOKEN_VERSION:
        raise invalid
    try:
        claims = json.loads(body[1:])
        if not isinstance(claims, dict) or set(claims) != set(_CLAIMS):
            raise ValueError
        if not all(isinstance(claims[c], str) for c in _CLAIMS):
            raise ValueError
        ticket = ImportTicket(
            **{c: claims[c] for c in _CLAIMS[:4]},
            issued_at=_utc(datetime.fromisoformat(claims["issued_at"]), "issued_at"),
            expires_at=_utc(datetime.fromisoformat(claims["expires_at"]), "expires_at"),
        )
    except ValueError:
        raise invalid from None
    if ticket.key_id != key_id or ticket.wrapping_algorithm not in WRAPPING_ALGORITHMS:
        raise invalid
    if _utc(now, "now") > ticket.expires_at:
        raise ExpiredImportTokenError(
            f"The import token expired at {ticket.expires_at.isoformat()}; "
            "call GetParametersForImport to get a new wrapping key and import token."
        )
    return ticket


# --- Wrapping and unwrapping key material --------------------------------------------------------------


def _oaep(algorithm: WrappingAlgorithm) -> padding.OAEP:
    return padding.OAEP(mgf=padding.MGF1(algorithm.hash()), algorithm=algorithm.hash(), label=None)


def unwrap_key_material(private_der: bytes, wrapping_algorithm: str, encrypted_key_material: bytes) -> bytes:
    """Undo the customer's wrapping. RSAES_OAEP_* carries the material in one RSA block (190 to 470
    bytes): enough for 32-byte symmetric keys, never for a PKCS#8 RSA private key (nor P-521 under
    RSA_2048, as AWS notes). Larger material only fits RSA_AES_KEY_WRAP_*; sent otherwise, it fails here."""
    algorithm = check_wrapping_algorithm(wrapping_algorithm)
    # Loaded outside the try: a corrupt stored key is our fault, not the customer's ciphertext.
    key = serialization.load_der_private_key(private_der, password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise TypeError("the import wrapping key is not an RSA key")
    try:
        if not algorithm.hybrid:
            return key.decrypt(encrypted_key_material, _oaep(algorithm))
        split = (key.key_size + 7) // 8
        aes_key = key.decrypt(encrypted_key_material[:split], _oaep(algorithm))
        # AWS documents a 256-bit ephemeral key; accepting shorter ones would weaken the transport.
        if len(aes_key) != EPHEMERAL_AES_KEY_BYTES:
            raise ValueError("ephemeral AES key is not 256 bits")
        return aes_key_unwrap_with_padding(aes_key, encrypted_key_material[split:])
    except (ValueError, InvalidUnwrap):
        # One message for every failure: distinguishing RSA from AES-KWP failures would be an oracle.
        raise InvalidCiphertextError(
            "The EncryptedKeyMaterial could not be unwrapped with the import parameters of this token; wrap the "
            f"key material with the public key returned with this ImportToken, using {wrapping_algorithm}."
        ) from None


def validate_symmetric_import(material: bytes) -> None:
    if len(material) != SYMMETRIC_MATERIAL_BYTES:
        raise ValidationError(f"Symmetric key material must be 256 bits (32 bytes); got {len(material)} bytes.")


# --- Expiration ----------------------------------------------------------------------------------------

KEY_MATERIAL_EXPIRES = "KEY_MATERIAL_EXPIRES"
KEY_MATERIAL_DOES_NOT_EXPIRE = "KEY_MATERIAL_DOES_NOT_EXPIRE"
EXPIRATION_MODELS = (KEY_MATERIAL_EXPIRES, KEY_MATERIAL_DOES_NOT_EXPIRE)
MAX_VALID_TO = timedelta(days=365)


def validate_expiration(expiration_model: str | None, valid_to: datetime | None, now: datetime) -> str:
    """The effective expiration model, after AWS's rules (API reference, ImportKeyMaterial, ValidTo:
    "required when the value of the ExpirationModel parameter is KEY_MATERIAL_EXPIRES. Otherwise it is not
    valid. ... must be a future date and time. The maximum value is 365 days from the request date").
    With no ExpirationModel we infer it from ValidTo. The API reference says the default is
    KEY_MATERIAL_EXPIRES, which without ValidTo could only fail; the developer guide calls expiration
    optional, so an import with neither member does not expire."""
    if expiration_model is None:
        expiration_model = KEY_MATERIAL_EXPIRES if valid_to is not None else KEY_MATERIAL_DOES_NOT_EXPIRE
    if expiration_model not in EXPIRATION_MODELS:
        raise ValidationError(f"ExpirationModel '{shown(expiration_model)}' is not valid; "
                              f"use one of: {', '.join(EXPIRATION_MODELS)}.")
    if expiration_model == KEY_MATERIAL_DOES_NOT_EXPIRE:
        if valid_to is not None:
            raise ValidationError("ValidTo is not valid when ExpirationModel is KEY_MATERIAL_DOES_NOT_EXPIRE; omit it.")
        return expiration_model
    if valid_to is None:
        raise ValidationError("ValidTo is required when ExpirationModel is KEY_MATERIAL_EXPIRES.")
    valid_to, now = _utc(valid_to, "ValidTo"), _utc(now, "now")
    if valid_to <= now:
        raise ValidationError("ValidTo must be a future date and time.")
    if valid_to > now + MAX_VALID_TO:
        raise ValidationError("ValidTo must be at most 365 days from now.")
    return expiration_model
