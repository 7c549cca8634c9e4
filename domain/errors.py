"""Domain exceptions. Each carries the AWS KMS error code it maps to; ``api/errors.py`` turns them into
wire responses. Messages are for people: they name the problem and what to do, never a secret, and show
a value the caller sent only through ``shown`` (a short prefix: the caller knows the rest)."""
from __future__ import annotations

from typing import Any

SHOWN_CHARS = 128  # a key ARN (75 characters) and most alias ARNs show whole; a 10 MB value shows 128


def shown(value: Any, limit: int = SHOWN_CHARS) -> str:
    """A caller's value as an error message may show it: at most ``limit`` characters, then "…" if cut.
    Error messages go back on the wire and into the audit record, so an echoed value must not carry a
    request's bulk (a 10 MB Description) into either."""
    text = value if type(value) is str else format(value)  # what an f-string would show
    return text if len(text) <= limit else text[:limit] + "…"


class KmsError(Exception):
    """Base of every error a caller may see. ``code`` is the AWS error code (the wire ``__type``)."""

    code = "KMSInternalException"
    status = 400

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class ValidationError(KmsError):
    code = "ValidationException"


class NotFoundError(KmsError):
    code = "NotFoundException"


class InvalidArnError(KmsError):
    code = "InvalidArnException"


class DisabledError(KmsError):
    code = "DisabledException"
    status = 409


class InvalidStateError(KmsError):
    code = "KMSInvalidStateException"
    status = 409


class InvalidCiphertextError(KmsError):
    code = "InvalidCiphertextException"


class IncorrectKeyError(KmsError):
    code = "IncorrectKeyException"


class InvalidKeyUsageError(KmsError):
    code = "InvalidKeyUsageException"


class AlreadyExistsError(KmsError):
    code = "AlreadyExistsException"


class InvalidAliasNameError(KmsError):
    code = "InvalidAliasNameException"


class InvalidMarkerError(KmsError):
    code = "InvalidMarkerException"


class TagError(KmsError):
    code = "TagException"


class MalformedPolicyDocumentError(KmsError):
    code = "MalformedPolicyDocumentException"


class UnsupportedOperationError(KmsError):
    code = "UnsupportedOperationException"


class LimitExceededError(KmsError):
    code = "LimitExceededException"


class ConflictError(KmsError):
    code = "ConflictException"
    status = 409


class AccessDeniedError(KmsError):
    code = "AccessDeniedException"


class DryRunOperationError(KmsError):
    code = "DryRunOperationException"
    status = 412


class ThrottlingError(KmsError):
    """A request quota (application/quotas.py) or the per-source limit on failed authentication is spent."""

    code = "ThrottlingException"


class RequestEntityTooLargeError(KmsError):
    """The body is larger than the operation's limit (api/limits.py); refused before it is read."""

    code = "RequestEntityTooLargeException"
    status = 413


class RequestHeaderFieldsTooLargeError(KmsError):
    """The request's header names and values together exceed KEYLEDGER_MAX_HEADER_BYTES."""

    code = "RequestHeaderFieldsTooLargeException"
    status = 431


class InternalError(KmsError):
    code = "KMSInternalException"
    status = 500


class TamperedStateError(InternalError):
    """A stored event or read-model row failed its integrity check (docs/audit.md, "One ledger"): the call
    that needed it fails closed instead of believing it."""

    def __init__(self, what: str) -> None:
        super().__init__(f"The stored state of {what} failed its integrity check, so the request was refused. "
                         "The service's operator must run 'keyledger audit verify'.")
        self.what = what


class SealedError(KmsError):
    """The service has no usable root key: it answers health checks and refuses every key operation."""

    code = "KMSInternalException"
    status = 503


# Authentication failures (SigV4). AWS answers these before any KMS logic runs.
class MissingAuthenticationTokenError(KmsError):
    code = "MissingAuthenticationTokenException"
    status = 403


class IncompleteSignatureError(KmsError):
    code = "IncompleteSignatureException"


class InvalidSignatureError(KmsError):
    code = "InvalidSignatureException"


class UnrecognizedClientError(KmsError):
    code = "UnrecognizedClientException"


class UnknownOperationError(KmsError):
    code = "UnknownOperationException"


class SerializationError(KmsError):
    """Body is not JSON, or a member has the wrong JSON type (AWS: SerializationException)."""

    code = "SerializationException"


# Importing key material (BYOK).
class InvalidImportTokenError(KmsError):
    code = "InvalidImportTokenException"


class ExpiredImportTokenError(KmsError):
    code = "ExpiredImportTokenException"


class IncorrectKeyMaterialError(KmsError):
    code = "IncorrectKeyMaterialException"


class InvalidSignatureValueError(KmsError):
    """Verify found the signature does not match (AWS answers an exception, not SignatureValid=false)."""

    code = "KMSInvalidSignatureException"


class InvalidMacError(KmsError):
    code = "KMSInvalidMacException"


class CustomKeyStoreNotFoundError(KmsError):
    code = "CustomKeyStoreNotFoundException"


# Custom key stores (AWS_CLOUDHSM): the codes AWS KMS answers.
class CustomKeyStoreInvalidStateError(KmsError):
    code = "CustomKeyStoreInvalidStateException"


class CustomKeyStoreNameInUseError(KmsError):
    code = "CustomKeyStoreNameInUseException"


class CustomKeyStoreHasKeysError(KmsError):
    code = "CustomKeyStoreHasCMKsException"


class CloudHsmClusterNotFoundError(KmsError):
    code = "CloudHsmClusterNotFoundException"


class CloudHsmClusterInUseError(KmsError):
    code = "CloudHsmClusterInUseException"


class CloudHsmClusterNotActiveError(KmsError):
    code = "CloudHsmClusterNotActiveException"


class CloudHsmClusterInvalidConfigurationError(KmsError):
    code = "CloudHsmClusterInvalidConfigurationException"


class CloudHsmClusterNotRelatedError(KmsError):
    code = "CloudHsmClusterNotRelatedException"


class IncorrectTrustAnchorError(KmsError):
    code = "IncorrectTrustAnchorException"


# The XKS proxy API (keyledger serving it): a request to a path under /kms/xks/ that names no XKS operation.
class InvalidUriPathError(KmsError):
    code = "InvalidUriPathException"
    status = 404


# External key stores (keyledger calling an XKS proxy): the codes AWS KMS answers.
class XksProxyUriUnreachableError(KmsError):
    code = "XksProxyUriUnreachableException"


class XksProxyIncorrectAuthenticationCredentialError(KmsError):
    code = "XksProxyIncorrectAuthenticationCredentialException"


class XksProxyInvalidConfigurationError(KmsError):
    code = "XksProxyInvalidConfigurationException"


class XksProxyInvalidResponseError(KmsError):
    code = "XksProxyInvalidResponseException"


class XksProxyUriInUseError(KmsError):
    code = "XksProxyUriInUseException"


class XksKeyNotFoundError(KmsError):
    code = "XksKeyNotFoundException"


class XksKeyInvalidConfigurationError(KmsError):
    code = "XksKeyInvalidConfigurationException"


class XksKeyAlreadyInUseError(KmsError):
    code = "XksKeyAlreadyInUseException"


# Grants.
class InvalidGrantTokenError(KmsError):
    code = "InvalidGrantTokenException"


class InvalidGrantIdError(KmsError):
    code = "InvalidGrantIdException"

# IAM errors of the operator's principal and access-key commands, with the codes IAM uses.
class NoSuchEntityError(NotFoundError):
    code = "NoSuchEntity"


class EntityAlreadyExistsError(AlreadyExistsError):
    code = "EntityAlreadyExists"


class DeleteConflictError(KmsError):
    code = "DeleteConflict"
    status = 409


class IamLimitExceededError(LimitExceededError):
    code = "LimitExceeded"


class IamValidationError(ValidationError):
    code = "ValidationError"


class MalformedIdentityPolicyError(MalformedPolicyDocumentError):
    code = "MalformedPolicyDocument"
