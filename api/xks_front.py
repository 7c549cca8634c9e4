"""The XKS proxy API's front in the request pipeline (api/pipeline.py): keyledger serving AWS KMS's External Key
Store Proxy API at ``/<KEYLEDGER_XKS_URI_PREFIX>/kms/xks/v1/...`` (docs/custom-key-stores.md).

What differs from the KMS front: the route names the operation (``.../health``, ``.../keys/<id>/metadata``,
``/encrypt``, ``/decrypt``; anything else under ``/kms/xks/`` is InvalidUriPathException), SigV4 is checked for
the service ``kms-xks-proxy`` against XKS proxy credentials (``keyledger xks credentials``), not access keys,
and refusals are answered in the specification's shape and statuses (api/xks_errors.py). Calls are recorded with
eventSource ``kms-xks-proxy`` and eventName ``Xks<Operation>``, the request metadata in their requestParameters.
"""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from api import xks_wire
from api.pipeline import HttpRequest
from api.sigv4 import verify_sigv4
from api.xks_errors import CONTENT_TYPE, error_answer
from application.calls import Call, Caller
from application.xks.ports import XKS_SOURCE
from domain.errors import InvalidUriPathError, KmsError, SealedError, UnrecognizedClientError
from domain.identifiers import Scope
from domain.principals.arns import acting_arn
from infrastructure.runtime import Runtime

SIGV4_SERVICE = "kms-xks-proxy"  # the spec's Appendix A: Credential=<id>/<date>/<region>/kms-xks-proxy/aws4_request
UNROUTED = "XksProxyRequest"  # eventName of a request whose path names no XKS operation
_NOT_ROUTED = "The URI path names no XKS proxy API operation of this proxy; check the external key store's XksProxyUriPath."


def api_root(prefix: str) -> str:
    """``/<prefix>/kms/xks/v1`` (``/kms/xks/v1`` with no prefix)."""
    return f"/{prefix}/{xks_wire.API_ROOT}" if prefix else f"/{xks_wire.API_ROOT}"


def is_xks_path(path: str) -> bool:
    """Paths the XKS front answers: anything under a ``kms/xks/`` segment, so a wrong prefix is told
    InvalidUriPathException in the specification's shape instead of an HTTP 404 page."""
    return "/kms/xks/" in path or path.endswith("/kms/xks")


def _header(request: HttpRequest, name: bytes) -> str | None:
    return next((v.decode("latin-1") for k, v in request.raw_headers if k.lower() == name), None)


class XksFront:
    content_type = CONTENT_TYPE
    error_content_type = CONTENT_TYPE

    def __init__(self, runtime: Runtime, prefix: str, max_body_bytes: int) -> None:
        self.runtime = runtime
        self.root = api_root(prefix)
        self.body_limit = min(xks_wire.BODY_BYTES, max_body_bytes)

    @staticmethod
    def error_answer(error: KmsError) -> tuple[int, str, str, bytes]:
        return error_answer(error)

    # -- the pipeline's stages ------------------------------------------------------------------

    def open(self, request: HttpRequest, at: datetime, request_id: str, event_id: str) -> tuple[Call, str | None]:
        found = xks_wire.route(request.raw_path.decode("latin-1"), self.root)
        call = Call.api(found.operation or UNROUTED, at=at, request_id=request_id, event_id=event_id,
                        source_ip=request.client, user_agent=_header(request, b"user-agent"),
                        secure_transport=request.secure)
        call.source = XKS_SOURCE
        if found.external_key_id is not None:  # recorded even if the request is refused before it is parsed
            call.parameters = {"externalKeyId": found.external_key_id}
            call.request_parameters = {"externalKeyId": found.external_key_id}
        return call, found.operation

    def authenticate(self, call: Call, request: HttpRequest, body: bytes) -> None:
        """The path first (a request no operation answers is refused whoever signed it), then SigV4 with an
        XKS proxy credential; the caller is the credential's principal, in the credential's account."""
        if call.operation == UNROUTED:
            raise InvalidUriPathError(_NOT_ROUTED)
        runtime = self.runtime
        if runtime.sealed_reason or runtime.services is None:
            raise SealedError(f"keyledger is sealed and refuses key operations: {runtime.sealed_reason}")
        services = runtime.services
        store = services.xks_credentials
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.raw_headers]
        authorization = next((v for k, v in headers if k.lower() == "authorization"), "")
        claimed = authorization.partition("Credential=")[2].split("/")
        if len(claimed) >= 3:
            call.claim(claimed[0][:64], claimed[2][:32])
        signed = verify_sigv4(method=request.method, path=request.raw_path.decode("latin-1"),
                              query_string=request.query_string.decode("latin-1"), headers=headers, body=body,
                              lookup_secret=lambda key_id: (c.secret if (c := store.lookup(key_id)) else None),
                              now=datetime.now(tz=timezone.utc), service=SIGV4_SERVICE)
        credential = store.lookup(signed.access_key_id)
        if credential is None:
            raise UnrecognizedClientError("The XKS proxy credential is not known.")
        acts_as = acting_arn(credential.principal_arn, credential.access_key_id)
        owner = services.principals.get(credential.principal_arn)
        caller = Caller(acts_as, credential.account_id, credential.access_key_id,
                        unique_id=owner.unique_id if owner and owner.kind != "root" else None,
                        role_arn=owner.arn if owner and owner.kind == "role" else None)
        # The region is AWS KMS's (where the calling KMS runs), not necessarily one this deployment serves.
        call.authenticate(caller, Scope(credential.account_id, signed.region))

    def prepare(self, call: Call, operation: str | None, body: bytes) -> None:
        assert operation is not None  # authenticate refused the rest
        params, view = xks_wire.parse(operation, body)
        external_key_id = call.parameters.get("externalKeyId")
        if external_key_id is not None:
            params["externalKeyId"] = external_key_id
            view = {"externalKeyId": external_key_id, **view}
        call.parameters = params
        call.request_parameters = view
        call.extra_condition_keys = xks_wire.condition_keys(params["requestMetadata"])

    def authorize(self, call: Call, operation: str | None) -> None:
        services = self.runtime.services
        assert services is not None
        services.authorizer.authorize_call(call)  # GetHealthStatus: authentication is enough (the spec)

    async def run(self, call: Call, operation: str | None) -> bytes:
        services = self.runtime.services
        assert services is not None and operation is not None
        proxy, p = services.xks_proxy, call.parameters
        answer: dict[str, Any]
        if operation == "XksGetHealthStatus":
            answer = proxy.health(call, (await self.runtime.health.readiness()).ready)
        elif operation == "XksGetKeyMetadata":
            answer = proxy.key_metadata(call, p["externalKeyId"])
        elif operation == "XksEncrypt":
            sealed, integrity = proxy.encrypt(call, p["externalKeyId"], p["plaintext"],
                                              p["additionalAuthenticatedData"], p["integrity"])
            answer = xks_wire.encrypt_answer(sealed, integrity)
        else:
            answer = xks_wire.plaintext_answer(
                proxy.decrypt(call, p["externalKeyId"], p["sealed"], p["additionalAuthenticatedData"]))
        return xks_wire.body_of(answer)
