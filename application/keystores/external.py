"""External key stores (EXTERNAL_KEY_STORE): keyledger as the KMS side of the XKS proxy API.

A store names an XKS proxy (endpoint, path, credential); its keys' outer encryption layer is done by the proxy
with an external key (domain/crypto/external_blob.py). This module makes the proxy calls and turns every way they
can fail into the error AWS KMS answers for that operation (the specification's "KMS Considerations" table):
CreateCustomKeyStore and UpdateCustomKeyStore get XksProxy*Exception, ConnectCustomKeyStore records a
ConnectionErrorCode, CreateKey gets XksKey*Exception or CustomKeyStoreInvalidStateException, and the cryptographic
operations KMSInvalidStateException with the table's message. Every call is bounded in time by the client.
"""
from __future__ import annotations

import asyncio
import base64
import binascii
from typing import Any, Callable

from application.calls import Call
from application.keystores.ports import (
    KEY_STORE_PASSWORD_PURPOSE,
    KeyStoreView,
    MustRunInThread,
    StorePasswords,
    XksConnection,
    XksProxyClient,
    XksProxyFailure,
)
from application.ports import KeyRow
from application.ttl_cache import TtlCache
from domain.crypto import xks
from domain.errors import (
    CustomKeyStoreInvalidStateError,
    InvalidStateError,
    KmsError,
    XksKeyInvalidConfigurationError,
    XksKeyNotFoundError,
    XksProxyIncorrectAuthenticationCredentialError,
    XksProxyInvalidConfigurationError,
    XksProxyInvalidResponseError,
    XksProxyUriUnreachableError,
    shown,
)
from domain.keystores import store as codes

KMS = "keyledger"
# What each failure means to a KMS caller (the specification's messages, "AWS KMS" being keyledger here).
MESSAGES = {
    "ValidationException": f"{KMS} cannot interpret the response from the external key store proxy. If you see this "
                           "error repeatedly, report it to your external key store proxy administrator.",
    "InvalidStateException": "The external key associated with this KMS key in an external key store is not enabled "
                             "in the external key manager. Enable the external key in the external key manager and "
                             "retry the request.",
    "InvalidCiphertextException": "The external key store proxy rejected the request because the specified ciphertext "
                                  "or encryption context is corrupted, missing, or otherwise invalid.",
    "InvalidKeyUsageException": "The external key associated with this KMS key in an external key store does not "
                                "support the requested operation. Enable the operation on the key in your external key "
                                "manager, and try the request again.",
    "AuthenticationFailedException": f"The external key store proxy rejected the request because it could not "
                                     f"authenticate {KMS}. Verify the XKS proxy authentication credentials for your "
                                     "external key store and update if necessary.",
    "AccessDeniedException": "The external key store proxy denied access to the operation. Verify that the user and "
                             "the external key are both authorized for this operation, and try the request again.",
    "KeyNotFoundException": "The external key associated with this KMS key in an external key store was not found in "
                            "its external key manager. If the external key ID associated with this KMS key is "
                            "incorrect, create a new KMS key with the correct external key ID.",
    "InvalidUriPathException": "The external key store proxy rejected the request because of an invalid URI path. "
                               "Verify the URI path for your external key store and update if necessary.",
    "UnsupportedOperationException": "The external key store proxy rejected the request because it does not support "
                                     "the requested operation. If you see this error repeatedly, report it to your "
                                     "external key store proxy administrator.",
    "DependencyTimeoutException": "The external key store proxy did not respond to the request in the time allotted. "
                                  "Retry the request. If you see this error repeatedly, report it to your external key "
                                  "store proxy administrator.",
    "ThrottlingException": "The external key store proxy rejected the request due to a very high request rate. Reduce "
                           "the frequency of your calls using KMS keys in this external key store.",
    "InternalException": "The external key store proxy rejected the request because it cannot communicate with the "
                         "external key manager. Verify that the external key store proxy configuration is correct and "
                         "that the external key manager is available.",
    "unreachable": f"{KMS} cannot communicate with the external key store proxy. This might be a transient network "
                   "issue. If you see this error repeatedly, verify that your external key store proxy is active and is "
                   "connected to the network, and that its endpoint URI is correct in your external keystore.",
    "tls": f"{KMS} cannot establish a TLS connection to the external key store proxy. Verify the TLS configuration, "
           "including its certificate.",
    "timeout": f"{KMS} rejected the request because the external key store proxy did not respond in time. Retry the "
               "request. If you see this error repeatedly, report it to your external key store proxy administrator.",
    "malformed": f"{KMS} cannot interpret the response from the external key store proxy. If you see this error "
                 "repeatedly, report it to your external key store proxy administrator.",
    "bad ciphertext": "The ciphertext that the external key store proxy submitted for decryption, or the encryption "
                      "context, is corrupted, missing, or otherwise invalid.",
}
# Create/UpdateCustomKeyStore: the exception for each failure (the message is the table's).
_STORE_ERRORS: dict[str, type[KmsError]] = {
    "AuthenticationFailedException": XksProxyIncorrectAuthenticationCredentialError,
    "InvalidUriPathException": XksProxyInvalidConfigurationError,
    "AccessDeniedException": XksProxyInvalidConfigurationError,
    "DependencyTimeoutException": XksProxyUriUnreachableError, "ThrottlingException": XksProxyUriUnreachableError,
    "InvalidStateException": XksProxyUriUnreachableError, "unreachable": XksProxyUriUnreachableError,
    "tls": XksProxyUriUnreachableError, "timeout": XksProxyUriUnreachableError,
}
# ConnectCustomKeyStore: the ConnectionErrorCode for each failure (anything else: XKS_PROXY_INVALID_RESPONSE).
_CONNECTION_CODES = {
    "AuthenticationFailedException": codes.INVALID_CREDENTIALS, "AccessDeniedException": codes.XKS_PROXY_ACCESS_DENIED,
    "InvalidUriPathException": codes.XKS_PROXY_INVALID_CONFIGURATION, "ThrottlingException": codes.XKS_PROXY_NOT_REACHABLE,
    "InvalidStateException": codes.XKS_PROXY_NOT_REACHABLE, "unreachable": codes.XKS_PROXY_NOT_REACHABLE,
    "DependencyTimeoutException": codes.XKS_PROXY_TIMED_OUT, "timeout": codes.XKS_PROXY_TIMED_OUT,
    "tls": codes.XKS_PROXY_INVALID_TLS_CONFIGURATION,
}
_HEALTH_STATUSES = {"ACTIVE", "DEGRADED", "UNAVAILABLE"}


def _cause(failure: XksProxyFailure) -> str:
    return failure.error_name if failure.kind == "refused" and failure.error_name in MESSAGES else (
        failure.kind if failure.kind != "refused" else "malformed")


def _bytes(answer: dict[str, Any], name: str, required: bool = True) -> bytes:
    value = answer.get(name)
    if value is None and not required:
        return b""
    if not isinstance(value, str):
        raise XksProxyFailure("malformed", f"the answer lacks {name}")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise XksProxyFailure("malformed", f"{name} is not Base64") from None


def off_the_event_loop() -> None:
    """A proxy call waits on the network: never on the event loop (api/kms_front.py runs it again in a thread)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return
    raise MustRunInThread()


class ExternalKeyStores:
    def __init__(self, view: KeyStoreView, passwords: StorePasswords, client: XksProxyClient,
                 unseal: Callable[..., bytes], cache_seconds: float) -> None:
        self._view = view
        self._passwords = passwords
        self._client = client
        self._unseal = unseal
        self._connections: TtlCache[XksConnection] = TtlCache(cache_seconds)

    # -- the proxy of a store --------------------------------------------------------------------

    def connection(self, store_id: str) -> XksConnection:
        return self._connections.get(store_id, lambda: self._load(store_id))

    def forget(self, store_id: str) -> None:
        self._connections.drop(store_id)

    def _load(self, store_id: str) -> XksConnection:
        row = self._view.get(store_id)
        wrapped = self._passwords.get(store_id)
        if row is None or wrapped is None:
            raise CustomKeyStoreInvalidStateError(f"Custom key store {store_id} has no XKS proxy credential stored.")
        config = row.entry.get("XksProxyConfiguration") or {}
        secret = self._unseal(wrapped, purpose=KEY_STORE_PASSWORD_PURPOSE, key_id=store_id).decode("utf-8")
        return XksConnection(config.get("UriEndpoint") or "", config.get("UriPath") or "", config.get("AccessKeyId") or "",
                             secret, row.region)

    # -- GetHealthStatus: creating, updating, connecting a store ----------------------------------

    def _health(self, connection: XksConnection, kms_operation: str, request_id: str) -> None:
        answer = self._client.post(connection, "/health", {
            "requestMetadata": {"kmsRequestId": request_id, "kmsOperation": kms_operation}})
        details = answer.get("ekmFleetDetails")
        size = answer.get("xksProxyFleetSize")
        if (not isinstance(size, int) or size < 1 or not isinstance(details, list) or not 1 <= len(details) <= 10
                or any(not isinstance(d, dict) or d.get("healthStatus") not in _HEALTH_STATUSES for d in details)):
            raise XksProxyFailure("malformed", "GetHealthStatus did not answer as the specification says")
        if all(d["healthStatus"] == "UNAVAILABLE" for d in details):
            raise XksProxyFailure("unreachable", "every external key manager is UNAVAILABLE")

    def check_proxy(self, connection: XksConnection, kms_operation: str, request_id: str) -> None:
        """Create/UpdateCustomKeyStore: the proxy answers GetHealthStatus with these settings, or the
        XksProxy*Exception AWS KMS answers."""
        try:
            self._health(connection, kms_operation, request_id)
        except XksProxyFailure as failure:
            cause = _cause(failure)
            error = _STORE_ERRORS.get(cause, XksProxyInvalidResponseError)
            raise error(f"{MESSAGES[cause]} ({shown(failure.detail, 200)})") from None

    def connection_error(self, store_id: str, request_id: str) -> str | None:
        """ConnectCustomKeyStore: None when the proxy is healthy, else the ConnectionErrorCode to record."""
        try:
            self._health(self.connection(store_id), "ConnectCustomKeyStore", request_id)
        except XksProxyFailure as failure:
            return _CONNECTION_CODES.get(_cause(failure), codes.XKS_PROXY_INVALID_RESPONSE)
        except KmsError:
            return codes.INTERNAL_ERROR
        return None

    # -- GetKeyMetadata: CreateKey ---------------------------------------------------------------

    def check_external_key(self, call: Call, store_id: str, xks_key_id: str) -> None:
        """CreateKey: the external key exists, is an enabled AES-256 key that encrypts and decrypts."""
        caller = call.caller  # None: an operator's or the service's own call
        metadata = {"awsPrincipalArn": caller.principal_arn if caller else KMS, "kmsOperation": call.operation,
                    "kmsRequestId": call.request_id}
        try:
            answer = self._client.post(self.connection(store_id), f"/keys/{xks_key_id}/metadata",
                                       {"requestMetadata": metadata})
        except XksProxyFailure as failure:
            cause = _cause(failure)
            if cause == "KeyNotFoundException":
                raise XksKeyNotFoundError(f"{MESSAGES[cause]} (XksKeyId {shown(xks_key_id)})") from None
            if cause in ("InvalidStateException", "InvalidKeyUsageException", "UnsupportedOperationException"):
                raise XksKeyInvalidConfigurationError(MESSAGES[cause]) from None
            if cause == "AccessDeniedException":
                raise InvalidStateError(MESSAGES[cause]) from None
            raise CustomKeyStoreInvalidStateError(MESSAGES[cause]) from None
        usage = answer.get("keyUsage")
        if answer.get("keySpec") != "AES_256" or not isinstance(usage, list) or not {"ENCRYPT", "DECRYPT"} <= set(usage) \
                or answer.get("keyStatus") != "ENABLED":
            raise XksKeyInvalidConfigurationError(
                f"The external key {shown(xks_key_id)} must be an enabled AES_256 key that can ENCRYPT and DECRYPT; "
                f"the proxy reports keySpec {shown(answer.get('keySpec'), 32)}, keyUsage {shown(usage, 64)}, keyStatus "
                f"{shown(answer.get('keyStatus'), 32)}.")

    # -- Encrypt and Decrypt: the outer layer of a key's ciphertext -------------------------------

    def _metadata(self, call: Call, row: KeyRow) -> dict[str, str]:
        caller = call.caller
        metadata = {"awsPrincipalArn": caller.principal_arn if caller else KMS, "kmsKeyArn": row.arn,
                    "kmsOperation": call.operation, "kmsRequestId": call.request_id}
        if call.via_service:
            metadata["kmsViaService"] = call.via_service
        return metadata

    def _xks_key(self, row: KeyRow) -> tuple[XksConnection, str]:
        off_the_event_loop()
        config = row.metadata.get("XksKeyConfiguration") or {}
        return self.connection(row.metadata["CustomKeyStoreId"]), str(config.get("Id", ""))

    def encrypt(self, call: Call, row: KeyRow, plaintext: bytes, aad: bytes) -> xks.Sealed:
        connection, xks_key_id = self._xks_key(row)
        try:
            answer = self._client.post(connection, f"/keys/{xks_key_id}/encrypt", {
                "requestMetadata": self._metadata(call, row), "plaintext": base64.b64encode(plaintext).decode(),
                "encryptionAlgorithm": "AES_GCM", "additionalAuthenticatedData": base64.b64encode(aad).decode(),
                "ciphertextDataIntegrityValueAlgorithm": "SHA_256"})
            sealed = xks.Sealed(_bytes(answer, "ciphertext"), _bytes(answer, "ciphertextMetadata", False),
                                _bytes(answer, "initializationVector"), _bytes(answer, "authenticationTag"))
            if (len(sealed.ciphertext) != len(plaintext) or len(sealed.initialization_vector) not in (12, 16)
                    or len(sealed.authentication_tag) != xks.TAG_BYTES
                    or len(sealed.ciphertext_metadata) > xks.MAX_METADATA_BYTES):
                raise XksProxyFailure("malformed", "the Encrypt answer's fields have the wrong sizes")
        except XksProxyFailure as failure:
            raise InvalidStateError(MESSAGES[_cause(failure)]) from None
        # KMS computes the ciphertextDataIntegrityValue itself: a mismatch means the proxy's output is not what
        # a later Decrypt would accept, and the data key must not be handed out.
        if answer.get("ciphertextDataIntegrityValue") != xks.integrity_value(aad, sealed):
            raise InvalidStateError(MESSAGES["bad ciphertext"])
        return sealed

    def decrypt(self, call: Call, row: KeyRow, sealed: xks.Sealed, aad: bytes) -> bytes:
        connection, xks_key_id = self._xks_key(row)
        text = lambda data: base64.b64encode(data).decode()  # noqa: E731
        body = {"requestMetadata": self._metadata(call, row), "ciphertext": text(sealed.ciphertext),
                "encryptionAlgorithm": "AES_GCM", "additionalAuthenticatedData": text(aad),
                "initializationVector": text(sealed.initialization_vector),
                "authenticationTag": text(sealed.authentication_tag)}
        if sealed.ciphertext_metadata:
            body["ciphertextMetadata"] = text(sealed.ciphertext_metadata)
        try:
            plaintext = _bytes(self._client.post(connection, f"/keys/{xks_key_id}/decrypt", body), "plaintext")
        except XksProxyFailure as failure:
            raise InvalidStateError(MESSAGES[_cause(failure)]) from None
        if len(plaintext) != len(sealed.ciphertext):
            raise InvalidStateError(MESSAGES["malformed"])
        return plaintext
