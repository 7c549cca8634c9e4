"""The one request lifecycle, shared by the KMS endpoint (``POST /``, api/kms_front.py) and the /v1 query API
(api/query_api.py):

    entry: an unauthenticated Call → limits (headers, then the body) → authenticate → limits (admit)
    → prepare (parse) → authorize (once) → run → map errors → wait for the audit record → metrics

A front says what differs: how its calls are named and parsed, what authorizes them, what runs them and how
the answer is written. The order, the error mapping, the audit wait and the metrics are here, once. The
answer is sent only after the call's record is durable; if it cannot be made durable the caller gets
KMSInternalException and nothing else.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Awaitable, Callable, MutableMapping, Protocol, Sequence

from api.caller import authenticate
from api.errors import CONTENT_TYPE, INTERNAL_ERROR_BODY, INTERNAL_MESSAGE, error_body
from api.limits import CLOSE, RequestLimits
from api.metrics import Metrics
from application.audit.group_commit import AuditUnavailable
from application.audit.records import cloudtrail_record, new_ids
from application.calls import Call
from domain.errors import InternalError, KmsError, RequestEntityTooLargeError, RequestHeaderFieldsTooLargeError
from infrastructure.runtime import Runtime

log = logging.getLogger("keyledger.api")
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Headers = list[tuple[bytes, bytes]]
_ERROR_CONTENT_TYPE = CONTENT_TYPE.encode("latin-1")


@dataclass(slots=True)
class HttpRequest:
    """An HTTP request as the ASGI server handed it over, body not yet read."""

    method: str
    raw_path: bytes
    query_string: bytes
    raw_headers: Sequence[tuple[bytes, bytes]]  # names lower-cased by the server, values as sent
    client: str | None  # the peer's address
    secure: bool  # over TLS
    receive: Receive

    @classmethod
    def of(cls, scope: MutableMapping[str, Any], receive: Receive) -> HttpRequest:
        client = scope.get("client")
        return cls(scope["method"], scope.get("raw_path") or b"/", scope.get("query_string", b""), scope["headers"],
                   client[0] if client else None, scope.get("scheme", "http") == "https", receive)


class Front(Protocol):
    """What a kind of HTTP call (KMS, /v1) tells the pipeline. ``operation`` is what ``open`` returned."""

    content_type: bytes  # of a successful answer

    def open(self, request: HttpRequest, at: datetime, request_id: str, event_id: str) -> tuple[Call, str | None]:
        """The entry: the Call, unauthenticated, and the operation to run (None: none the front knows)."""
        ...

    def prepare(self, call: Call, operation: str | None, body: bytes) -> None:
        """Once the caller is known: the call's parameters and their audit view."""
        ...

    def authorize(self, call: Call, operation: str | None) -> Awaitable[None] | None:
        """The call's one entry into authorization before it runs (awaited if it returns an awaitable)."""
        ...

    async def run(self, call: Call, operation: str | None) -> bytes:
        """The body of the successful answer."""
        ...


def _kms_error(error: KmsError) -> tuple[int, str, str, bytes]:
    """(status, code, message, body) of a refusal in AWS KMS's shape."""
    if error.code == InternalError.code and error.message == INTERNAL_MESSAGE:
        return error.status, error.code, error.message, INTERNAL_ERROR_BODY
    return error.status, error.code, error.message, error_body(error)


class RequestPipeline:
    def __init__(self, runtime: Runtime, metrics: Metrics, limits: RequestLimits) -> None:
        self.runtime = runtime
        self.metrics = metrics
        self.limits = limits

    async def serve(self, front: Front, request: HttpRequest) -> tuple[int, Headers, bytes] | None:
        """(status, headers, body) of the answer, once the call's record is durable; None if the client went
        away before its request was read (nothing was done, nothing is answered)."""
        started = time.perf_counter()
        runtime, limits = self.runtime, self.limits
        request_id, event_id = new_ids(2)
        call, operation = front.open(request, runtime.now(), request_id, event_id)
        own_record, close = True, False
        # A front with its own wire shape for refusals (the XKS proxy API) words them itself.
        render = getattr(front, "error_answer", None) or _kms_error
        error_type = getattr(front, "error_content_type", _ERROR_CONTENT_TYPE)
        try:
            body_limit = limits.check_headers(call, request.raw_headers, getattr(front, "body_limit", None))
            body = await limits.read_body(call, request.receive, body_limit)
            if body is None:
                return None
            own_authentication = getattr(front, "authenticate", None)  # the web console: its session, not SigV4
            if own_authentication is not None:
                own_authentication(call, request, body)
            else:
                authenticate(runtime, call, method=request.method, path=request.raw_path.decode("latin-1") or "/",
                             query_string=request.query_string.decode("latin-1"),
                             headers=[(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.raw_headers],
                             body=body)
            limits.admit(call)
            front.prepare(call, operation, body)
            pending = front.authorize(call, operation)
            if pending is not None:
                await pending
            payload = await front.run(call, operation)
            if not call.authorized:  # a path that reached no authorization check must not answer
                log.error("request %s: %s finished without an authorization decision", request_id, call.operation)
                raise InternalError(INTERNAL_MESSAGE)
            status, content_type = 200, front.content_type
        except KmsError as error:
            if call.caller is None:  # refused before the caller was known: per-source limit, aggregated records
                error, own_record = limits.refused_before_caller(
                    call, error, call.operation if self.metrics.knows(call.operation) else None)
            # A refused head or body was not read to its end: the connection cannot carry another request.
            close = isinstance(error, (RequestEntityTooLargeError, RequestHeaderFieldsTooLargeError))
            status, code, message, payload = render(error)
            call.fail(code, message)
            content_type = error_type
        except Exception:
            log.exception("request %s failed", request_id)
            status, code, message, payload = render(InternalError(INTERNAL_MESSAGE))
            call.fail(code, message)
            content_type = error_type
        answered_code = call.error_code
        if not call.committed and own_record:  # otherwise counted in the failed-authentication summary
            try:
                await runtime.audit.record_async(cloudtrail_record(call))
            except AuditUnavailable:
                log.error("request %s: audit record could not be written; answering an internal error", request_id)
                status, answered_code, _, payload = render(InternalError(INTERNAL_MESSAGE))
                content_type = error_type
        self.metrics.observe(call.operation, answered_code, time.perf_counter() - started)
        # The headers (and their order) Starlette's Response(body, media_type=..., headers={...}) sends.
        headers = [(b"x-amzn-requestid", request_id.encode("latin-1")),
                   (b"content-length", str(len(payload)).encode("latin-1")), (b"content-type", content_type)]
        if close:
            headers.append(CLOSE)
        return status, headers, payload
