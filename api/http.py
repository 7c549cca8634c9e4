"""The HTTP server: AWS KMS JSON 1.1 at ``POST /`` (SigV4 on every request) and ``GET /healthz``.

Every call, allowed or refused, gets an audit record; the response is sent only once that record is
durable (a key change's record commits with the change itself). If the record cannot be written the
caller gets KMSInternalException and nothing else.

``POST /`` is served by a plain ASGI handler in front of FastAPI (``KmsEndpoint``): the KMS protocol has
one path and needs none of FastAPI's routing, dependency injection or Request/Response objects, which
cost more per call than the crypto does (docs/performance.md). Everything else (``/healthz``, ``/v1``,
``/docs``, and the 405/404 answers for other methods and paths) is FastAPI's.
"""
from __future__ import annotations

import logging
import time
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator, Awaitable, Callable, MutableMapping, Sequence

from fastapi import FastAPI, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse, Response

from api.audit_fields import audit_view
from api.caller import authenticate_raw
from api.errors import CONTENT_TYPE, INTERNAL_ERROR_BODY, error_body
from api.limits import CLOSE, RequestLimits, replay
from api.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from api.metrics import Metrics
from api.operations import HANDLERS, refuse_recipient
from api.query_api import query_router
from api.wire_model import WireModel
from application.audit.records import CallContext, current_call, new_ids
from application.audit.trail import AuditUnavailable
from domain.errors import (
    InternalError,
    KmsError,
    RequestHeaderFieldsTooLargeError,
    UnknownOperationError,
    shown,
)
from domain.identifiers import Scope
from infrastructure.bootstrap import Runtime

log = logging.getLogger("keyledger.api")
TARGET_PREFIX = "TrentService."
_INTERNAL_MESSAGE = "The service could not complete the request because of an internal error. Retry the request."
_CONTENT_TYPE = CONTENT_TYPE.encode("latin-1")

Scope_ = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


def create_app(runtime: Runtime, background: Sequence[Any] = ()) -> KmsEndpoint:
    """``background``: objects with start()/stop() run for the app's lifetime. On shutdown (uvicorn's
    graceful SIGTERM too) they stop and the runtime closes, so SQLite checkpoints its WAL on the way out."""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        runtime.audit.start()
        for task in background:
            task.start()
        try:
            yield
        finally:
            for task in background:
                task.stop()
            runtime.close()

    app = FastAPI(title="keyledger", description="An event-sourced key management service that speaks AWS KMS.",
                  lifespan=lifespan)
    metrics = Metrics(runtime, HANDLERS)
    wire = WireModel()
    # [bounds] limits before any work (api/limits.py)
    limits = RequestLimits(wire.service_model, runtime.settings.max_header_bytes, runtime.settings.max_body_bytes)
    kms = KmsEndpoint(runtime, wire, app, metrics, limits)
    app.include_router(query_router(runtime))

    if runtime.settings.metrics:
        @app.get("/metrics", include_in_schema=False)
        def prometheus_metrics() -> Response:
            return Response(metrics.exposition(), media_type=METRICS_CONTENT_TYPE)

    @app.get("/healthz")
    def healthz() -> Response:
        if runtime.sealed_reason:
            return JSONResponse({"status": "sealed", "reason": runtime.sealed_reason}, status_code=503)
        return JSONResponse({"status": "ready"})

    # Never reached through the front handler (it answers every POST /); registered so that FastAPI keeps
    # answering other methods on / with 405, and so the same handler serves an app mounted without the front.
    @app.post("/", include_in_schema=False)
    async def kms_route(request: Request) -> Response:
        status, headers, body = await kms.answer(
            raw_headers=request.scope["headers"], client=request.scope.get("client"),
            scheme=request.url.scheme, raw_path=request.scope.get("raw_path") or b"/",
            query_string=request.scope.get("query_string", b""), body=await request.body())
        return Response(body, status_code=status, headers={k.decode(): v.decode() for k, v in headers})

    return kms


class KmsEndpoint:
    """The ASGI application uvicorn runs: answers ``POST /`` itself, hands everything else to FastAPI."""

    def __init__(self, runtime: Runtime, wire: WireModel, app: FastAPI, metrics: Metrics,
                 limits: RequestLimits) -> None:
        self.runtime = runtime
        self.wire = wire
        self.app = app  # FastAPI: lifespan, /healthz, /metrics, /v1, /docs
        self.metrics = metrics
        self.limits = limits
        self.max_head_bytes = limits.max_head_bytes  # read by api/http_protocol.py's connection guard

    async def __call__(self, scope: Scope_, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        kms = scope["method"] == "POST" and scope["path"] == "/"
        # [bounds] limits before any work: header bytes, then the body's declared length, then its bytes as
        # they arrive (reading stops at the limit). A refusal is answered at once and closes the connection.
        refusal, limit = (self.limits.check_kms if kms else self.limits.check_other)(scope["headers"])
        body: bytes | None = b""
        if refusal is None:
            body, refusal = await self.limits.read_body(receive, limit)
            if body is None and refusal is None:
                return  # the client went away before sending its request: nothing was done, nothing to answer
        if not kms:
            if refusal is None:
                await self.app(scope, replay(body or b"", receive), send)
            else:
                await self._refuse_other(scope, send, refusal)
            return
        status, headers, payload = await self.answer(
            raw_headers=scope["headers"], client=scope.get("client"), scheme=scope.get("scheme", "http"),
            raw_path=scope.get("raw_path") or b"/", query_string=scope.get("query_string", b""), body=body or b"",
            refused=refusal)
        if refusal is not None:
            headers.append(CLOSE)  # [bounds] the rest of the body was not read: the connection cannot go on
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": payload})

    def head_refused(self, source: str | None) -> None:
        """[bounds] The connection guard (api/http_protocol.py) refused a request head: counted, not recorded."""
        self.runtime.unauthenticated.refused(source, RequestHeaderFieldsTooLargeError("request head too large"), None)

    async def _refuse_other(self, scope: Scope_, send: Send, refusal: KmsError) -> None:
        """[bounds] A refused request to another path (/v1, /healthz...): answered in AWS's shape, counted in the
        failed-authentication summary (it was refused before anything, authentication included)."""
        client = scope.get("client")
        self.runtime.unauthenticated.refused(client[0] if client else None, refusal, None)
        payload = error_body(refusal)
        headers = _response_headers(new_ids(1)[0], payload)
        headers.append(CLOSE)
        await send({"type": "http.response.start", "status": refusal.status, "headers": headers})
        await send({"type": "http.response.body", "body": payload})

    async def answer(self, *, raw_headers: Sequence[tuple[bytes, bytes]], client: Any, scheme: str,
                     raw_path: bytes, query_string: bytes, body: bytes,
                     refused: KmsError | None = None) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        """One KMS call: (status, headers, body) of the response, sent only after its audit record is durable.
        ``refused``: the request was refused before any work (api/limits.py); it is answered and recorded."""
        started = time.perf_counter()
        runtime, wire = self.runtime, self.wire
        request_id, event_id = new_ids(2)
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in raw_headers]
        target = user_agent = None
        for name, value in headers:  # ASGI servers pass names lower-cased; the first of a repeated header wins
            name = name.lower()
            if name == "x-amz-target" and target is None:
                target = value
            elif name == "user-agent" and user_agent is None:
                user_agent = value
        target = target or ""
        call = CallContext.api_call(
            event_name=target[len(TARGET_PREFIX):] if target.startswith(TARGET_PREFIX) else target,
            at=runtime.now(), region=None, source_ip=client[0] if client else None,
            user_agent=user_agent, request_id=request_id, event_id=event_id)
        call.secure_transport = scheme == "https"
        operation = target[len(TARGET_PREFIX):] if target.startswith(TARGET_PREFIX) else ""
        own_record = True
        try:
            if refused is not None:  # [bounds]
                raise refused
            scope = authenticate_raw(runtime, method="POST", path=raw_path.decode("latin-1") or "/",
                                     query_string=query_string.decode("latin-1"), headers=headers, body=body,
                                     call=call)
            if operation not in HANDLERS or not wire.has_operation(operation):
                raise UnknownOperationError(
                    f"Operation '{shown(target) or '(no X-Amz-Target header)'}' is not supported by keyledger.")
            runtime.quotas.take(scope.account_id, scope.region, operation)  # [bounds] request quotas
            params = wire.parse_request(operation, body)
            refuse_recipient(params)
            call.params = params
            call.record["requestParameters"] = audit_view(wire, operation, "in", params)
            output = await self._run(operation, scope, params, call)
            status, payload = 200, wire.response_body(operation, output or {})
            call.finish()
        except KmsError as error:
            if "accountId" not in call.record["userIdentity"]:  # [bounds] failed before the caller was identified
                error, own_record = runtime.unauthenticated.refused(
                    call.record["sourceIPAddress"], error, operation if operation in HANDLERS else None)
            call.finish(error_code=error.code, error_message=error.message)
            status, payload = error.status, error_body(error)
        except Exception:
            log.exception("request %s failed", request_id)
            call.finish(error_code=InternalError.code, error_message=_INTERNAL_MESSAGE)
            status, payload = InternalError.status, INTERNAL_ERROR_BODY
        answered_code = call.record["errorCode"]
        if not call.committed and own_record:  # [bounds] else counted in the failed-authentication summary
            try:
                await runtime.audit.record_async(call.final_record())
            except AuditUnavailable:
                log.error("request %s: audit record could not be written; answering KMSInternalException", request_id)
                status, payload, answered_code = InternalError.status, INTERNAL_ERROR_BODY, InternalError.code
        self.metrics.observe(call.record["eventName"], answered_code, time.perf_counter() - started)
        return status, _response_headers(request_id, payload), payload

    async def _run(self, operation: str, scope: Scope, params: dict[str, Any], call: CallContext) -> dict[str, Any] | None:
        echo = _ECHO_FROM_KEY.get(operation)
        if echo is not None:
            call.respond_from = lambda key, echo=echo, op=operation: audit_view(self.wire, op, "out", echo(key))
        services = self.runtime.services
        assert services is not None  # authentication refuses a sealed runtime
        token = current_call.set(call)  # run_in_threadpool copies this context into the worker
        try:
            services.authorizer.authorize_account_call(operation)
            if operation in INLINE_OPERATIONS:
                output = HANDLERS[operation](services, scope, params)
            else:
                output = await run_in_threadpool(HANDLERS[operation], services, scope, params)
        finally:
            current_call.reset(token)
        if not call.authorized:  # a path that reached no authorization check must not answer
            log.error("request %s: %s finished without an authorization decision", call.record["requestID"], operation)
            raise InternalError(_INTERNAL_MESSAGE)
        return output


def _response_headers(request_id: str, payload: bytes) -> list[tuple[bytes, bytes]]:
    # The headers (and their order) Starlette's Response(body, media_type=..., headers={...}) sends.
    return [(b"x-amzn-requestid", request_id.encode("latin-1")),
            (b"content-length", str(len(payload)).encode("latin-1")),
            (b"content-type", _CONTENT_TYPE)]


# Symmetric crypto runs on the event loop: it is microseconds of work on a cached key row and backing
# key (a miss is one indexed read), and the thread hop would cost more than the work (docs/performance.md).
INLINE_OPERATIONS = frozenset({"Encrypt", "Decrypt", "ReEncrypt", "GenerateDataKey",
                               "GenerateDataKeyWithoutPlaintext", "GenerateRandom"})

# Like CloudTrail, responses of crypto operations are not echoed; lifecycle responses are (minus blobs).
# Their records commit with the key change, before the response exists, so they are rendered from the key.
_ECHO_FROM_KEY: dict[str, Any] = {
    "CreateKey": lambda key: {"KeyMetadata": key.metadata()},
    "ScheduleKeyDeletion": lambda key: {"KeyId": key.arn, "DeletionDate": key.deletion_date, "KeyState": key.state,
                                        "PendingWindowInDays": key.pending_window_days},
    "CancelKeyDeletion": lambda key: {"KeyId": key.arn},
    "CreateGrant": lambda key: {"GrantId": key.pending_grant_id()},  # never the token
}
