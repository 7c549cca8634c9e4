"""The one place where errors become XKS proxy API wire responses: the specification's ``errorName`` and HTTP
status ("Error codes"), in its body shape ``{"errorName": ..., "errorMessage": ...}``. The message is printable
ASCII and shorter than 512 characters, as the specification requires."""
from __future__ import annotations

import json

from domain.errors import (
    AccessDeniedError,
    CustomKeyStoreInvalidStateError,
    DisabledError,
    IncompleteSignatureError,
    InvalidCiphertextError,
    InvalidKeyUsageError,
    InvalidSignatureError,
    InvalidStateError,
    InvalidUriPathError,
    KmsError,
    MissingAuthenticationTokenError,
    NotFoundError,
    RequestEntityTooLargeError,
    SerializationError,
    ThrottlingError,
    UnrecognizedClientError,
    UnsupportedOperationError,
    ValidationError,
)

CONTENT_TYPE = b"application/json"
MAX_MESSAGE = 511
INTERNAL = (500, "InternalException")

# (error class, status, errorName), first match wins.
_MAP: tuple[tuple[type[KmsError] | tuple[type[KmsError], ...], int, str], ...] = (
    (InvalidUriPathError, 404, "InvalidUriPathException"),
    ((MissingAuthenticationTokenError, IncompleteSignatureError, InvalidSignatureError, UnrecognizedClientError),
     401, "AuthenticationFailedException"),
    (AccessDeniedError, 403, "AccessDeniedException"),
    (NotFoundError, 404, "KeyNotFoundException"),
    ((DisabledError, InvalidStateError, CustomKeyStoreInvalidStateError), 400, "InvalidStateException"),
    (InvalidCiphertextError, 400, "InvalidCiphertextException"),
    (InvalidKeyUsageError, 400, "InvalidKeyUsageException"),
    # "a parameter value exceeded the maximum size that is currently supported by a specific implementation"
    ((UnsupportedOperationError, RequestEntityTooLargeError), 501, "UnsupportedOperationException"),
    (ThrottlingError, 429, "ThrottlingException"),
    ((ValidationError, SerializationError), 400, "ValidationException"),
)


def xks_status(error: KmsError) -> tuple[int, str]:
    """(HTTP status, errorName) of a refusal; anything unforeseen (a sealed service too) is InternalException."""
    for kind, status, name in _MAP:
        if isinstance(error, kind):
            return status, name
    return INTERNAL


def printable(message: str) -> str:
    text = "".join(c if " " <= c <= "~" else "?" for c in message)
    return text if len(text) <= MAX_MESSAGE else text[:MAX_MESSAGE - 3] + "..."


def error_answer(error: KmsError) -> tuple[int, str, str, bytes]:
    """(status, errorName, errorMessage, body)."""
    status, name = xks_status(error)
    message = printable(error.message)
    return status, name, message, json.dumps({"errorName": name, "errorMessage": message}, separators=(",", ":")).encode("utf-8")
