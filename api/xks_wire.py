"""The XKS proxy API's JSON, as the specification spells it: routes, request bodies (requestMetadata and each
operation's members, Base64 decoded and checked), the audit view of a request (no plaintext, no ciphertext),
and response bodies."""
from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass
from typing import Any

from domain.crypto import xks
from domain.errors import InvalidCiphertextError, KmsError, UnsupportedOperationError, ValidationError, shown

API_ROOT = "kms/xks/v1"
OPERATIONS = ("XksGetHealthStatus", "XksGetKeyMetadata", "XksEncrypt", "XksDecrypt")
_KEY_ROUTES = {"metadata": "XksGetKeyMetadata", "encrypt": "XksEncrypt", "decrypt": "XksDecrypt"}
_EXTERNAL_KEY_ID = re.compile(r"[A-Za-z0-9._-]{1,128}")
MAX_METADATA_CHARS = 2048  # the spec: ARNs up to 2048 characters
MAX_METADATA_FIELDS = 32  # KMS may add fields (Appendix B); beyond this many a request is not one KMS sends
BODY_BYTES = 65536  # the largest valid request (8192 bytes each of plaintext and AAD, Base64) fits with room
_REQUIRED = {"XksGetKeyMetadata": ("awsPrincipalArn", "kmsOperation", "kmsRequestId"),
             "XksEncrypt": ("awsPrincipalArn", "kmsKeyArn", "kmsOperation", "kmsRequestId"),
             "XksDecrypt": ("awsPrincipalArn", "kmsKeyArn", "kmsOperation", "kmsRequestId")}
ALGORITHM = "AES_GCM"
INTEGRITY_ALGORITHM = "SHA_256"


@dataclass(frozen=True)
class Route:
    operation: str | None  # None: the path names no XKS operation (InvalidUriPathException)
    external_key_id: str | None = None


def route(path: str, root: str) -> Route:
    """The operation a path names under ``root`` (``/<prefix>/kms/xks/v1``)."""
    if not path.startswith(root + "/"):
        return Route(None)
    rest = path[len(root) + 1:]
    if rest == "health":
        return Route("XksGetHealthStatus")
    parts = rest.split("/")
    if len(parts) == 3 and parts[0] == "keys" and parts[2] in _KEY_ROUTES and _EXTERNAL_KEY_ID.fullmatch(parts[1]):
        return Route(_KEY_ROUTES[parts[2]], parts[1])
    return Route(None)


def _object(body: bytes) -> dict[str, Any]:
    try:
        value = json.loads(body)
    except (ValueError, RecursionError):
        raise ValidationError("The request body is not JSON.") from None
    if not isinstance(value, dict):
        raise ValidationError("The request body must be a JSON object.")
    return value


def request_metadata(operation: str, body: dict[str, Any]) -> dict[str, str]:
    """The requestMetadata's string fields (KMS may add fields: they are kept, as strings, not refused)."""
    metadata = body.get("requestMetadata")
    if metadata is None and operation == "XksGetHealthStatus":
        return {}
    if not isinstance(metadata, dict):
        raise ValidationError("requestMetadata is required and must be a JSON object.")
    if len(metadata) > MAX_METADATA_FIELDS:
        raise ValidationError(f"requestMetadata has more than {MAX_METADATA_FIELDS} fields.")
    fields: dict[str, str] = {}
    for name, value in metadata.items():
        if not isinstance(value, str):
            raise ValidationError(f"requestMetadata.{shown(name, 64)} must be a string.")
        if len(value) > MAX_METADATA_CHARS or len(name) > 64:
            raise ValidationError(f"requestMetadata.{shown(name, 64)} is longer than {MAX_METADATA_CHARS} characters.")
        fields[name] = value
    if fields.keys() == {"_type_", "_data_"}:  # the event store reads that form as a typed value (decision 184)
        raise ValidationError("requestMetadata's fields are exactly '_type_' and '_data_', a form keyledger's event "
                              "store reserves.")
    missing = [name for name in _REQUIRED.get(operation, ()) if not fields.get(name)]
    if missing:
        raise ValidationError(f"requestMetadata lacks {', '.join(missing)}.")
    return fields


def _b64(body: dict[str, Any], name: str, *, required: bool, limit: int, error: type[KmsError] = ValidationError,
         too_large: type[KmsError] = UnsupportedOperationError) -> bytes:
    value = body.get(name)
    if value is None:
        if required:
            raise error(f"{name} is required.")
        return b""
    if not isinstance(value, str):
        raise ValidationError(f"{name} must be a Base64 string.")
    if len(value) <= (limit + 2) // 3 * 4:  # not longer than the Base64 of ``limit`` bytes: decode it
        try:
            decoded = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise error(f"{name} is not standard Base64.") from None
        if len(decoded) <= limit:
            return decoded
    raise too_large(f"{name} is longer than {limit} bytes, the most this XKS proxy accepts.")


def _algorithm(body: dict[str, Any]) -> str:
    algorithm = body.get("encryptionAlgorithm")
    if algorithm != ALGORITHM:
        raise ValidationError(f"encryptionAlgorithm must be {ALGORITHM}, not '{shown(algorithm, 64)}'.")
    return algorithm


def parse(operation: str, raw: bytes) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the operation's parameters, their audit view). Parameters hold plaintext: never persisted."""
    body = _object(raw)
    metadata = request_metadata(operation, body)
    params: dict[str, Any] = {"requestMetadata": metadata}
    view: dict[str, Any] = {"requestMetadata": metadata}
    if operation in ("XksEncrypt", "XksDecrypt"):
        params["encryptionAlgorithm"] = view["encryptionAlgorithm"] = _algorithm(body)
        aad = _b64(body, "additionalAuthenticatedData", required=False, limit=xks.MAX_AAD_BYTES)
        params["additionalAuthenticatedData"] = aad
        if "additionalAuthenticatedData" in body:
            view["additionalAuthenticatedDataLength"] = len(aad)
    if operation == "XksEncrypt":
        params["plaintext"] = _b64(body, "plaintext", required=True, limit=xks.MAX_PLAINTEXT_BYTES)
        integrity = body.get("ciphertextDataIntegrityValueAlgorithm")
        if integrity is not None and integrity != INTEGRITY_ALGORITHM:
            raise ValidationError(f"ciphertextDataIntegrityValueAlgorithm must be {INTEGRITY_ALGORITHM}, "
                                  f"not '{shown(integrity, 64)}'.")
        params["integrity"] = integrity is not None
        if integrity is not None:
            view["ciphertextDataIntegrityValueAlgorithm"] = integrity
    if operation == "XksDecrypt":
        bad = InvalidCiphertextError
        params["sealed"] = xks.Sealed(
            _b64(body, "ciphertext", required=True, limit=xks.MAX_PLAINTEXT_BYTES, error=bad),
            _b64(body, "ciphertextMetadata", required=False, limit=xks.MAX_METADATA_BYTES, error=bad, too_large=bad),
            _b64(body, "initializationVector", required=True, limit=16, error=bad, too_large=bad),
            _b64(body, "authenticationTag", required=True, limit=16, error=bad, too_large=bad))
    return params, view


def condition_keys(metadata: dict[str, str]) -> dict[str, str]:
    """The request metadata as policy condition keys: ``xks:awsPrincipalArn``, ``xks:kmsKeyArn``,
    ``xks:kmsOperation``, ``xks:kmsRequestId``, ``xks:kmsViaService``, ``xks:awsSourceVpc``, ``xks:awsSourceVpce``
    (and any field KMS adds)."""
    return {f"xks:{name}": value for name, value in metadata.items()}


def _text(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def encrypt_answer(sealed: xks.Sealed, integrity_value: str | None) -> dict[str, Any]:
    out = {"authenticationTag": _text(sealed.authentication_tag), "ciphertext": _text(sealed.ciphertext),
           "ciphertextMetadata": _text(sealed.ciphertext_metadata),
           "initializationVector": _text(sealed.initialization_vector)}
    if integrity_value is not None:
        out["ciphertextDataIntegrityValue"] = integrity_value
    return out


def plaintext_answer(plaintext: bytes) -> dict[str, Any]:
    return {"plaintext": _text(plaintext)}


def body_of(answer: dict[str, Any]) -> bytes:
    return json.dumps(answer, separators=(",", ":")).encode("utf-8")
