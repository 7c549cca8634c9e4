"""The HTTP server: AWS KMS JSON 1.1 at ``POST /`` (SigV4 on every request) and ``GET /healthz``.

Every call, allowed or refused, gets an audit record; the response is sent only once that record is
durable (a key change's record commits with the change itself). If the record cannot be written the
caller gets KMSInternalException and nothing else.
"""
from __future__ import annotations

import json
import logging
import uuid
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator, Sequence

from fastapi import FastAPI, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse, Response

from api.audit_fields import audit_view
from api.errors import CONTENT_TYPE, error_response, internal_error_response
from api.caller import authenticate
from api.operations import HANDLERS, refuse_recipient
from api.query_api import query_router
from api.wire_model import WireModel
from application.audit_records import CallContext, current_call
from application.audit_trail import AuditUnavailable
from domain.errors import (
    InternalError,
    KmsError,
    UnknownOperationError,
)
from domain.identifiers import Scope
from infrastructure.bootstrap import Runtime

log = logging.getLogger("keyledger.api")
TARGET_PREFIX = "TrentService."
_INTERNAL_MESSAGE = "The service could not complete the request because of an internal error. Retry the request."


def create_app(runtime: Runtime, background: Sequence[Any] = ()) -> FastAPI:
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
    wire = WireModel()
    audit = runtime.audit
    app.include_router(query_router(runtime))

    @app.get("/healthz")
    def healthz() -> Response:
        if runtime.sealed_reason:
            return JSONResponse({"status": "sealed", "reason": runtime.sealed_reason}, status_code=503)
        return JSONResponse({"status": "ready"})

    @app.post("/", include_in_schema=False)
    async def kms(request: Request) -> Response:
        request_id = str(uuid.uuid4())
        body = await request.body()
        target = request.headers.get("x-amz-target", "")
        call = CallContext.api_call(
            event_name=target[len(TARGET_PREFIX):] if target.startswith(TARGET_PREFIX) else target,
            at=runtime.now(), region=None, source_ip=request.client.host if request.client else None,
            user_agent=request.headers.get("user-agent"), request_id=request_id)
        call.secure_transport = request.url.scheme == "https"
        try:
            operation, scope = _authenticate(request, body, call)
            params = wire.parse_request(operation, body)
            refuse_recipient(params)
            call.record["requestParameters"] = audit_view(wire, operation, "in", params)
            echo = _ECHO_FROM_KEY.get(operation)
            if echo is not None:
                call.respond_from = lambda key, echo=echo, op=operation: audit_view(wire, op, "out", echo(key))
            token = current_call.set(call)  # run_in_threadpool copies this context into the worker
            try:
                if operation in INLINE_OPERATIONS:
                    output = HANDLERS[operation](runtime.services, scope, params)
                else:
                    output = await run_in_threadpool(HANDLERS[operation], runtime.services, scope, params)
            finally:
                current_call.reset(token)
            response: Response = Response(json.dumps(wire.serialize_response(operation, output or {})),
                                          media_type=CONTENT_TYPE, headers={"x-amzn-RequestId": request_id})
            call.finish()
        except KmsError as error:
            call.finish(error_code=error.code, error_message=error.message)
            response = error_response(error, request_id)
        except Exception:
            log.exception("request %s failed", request_id)
            call.finish(error_code=InternalError.code, error_message=_INTERNAL_MESSAGE)
            response = internal_error_response(request_id)
        if not call.committed:
            try:
                await audit.record_async(call.final_record())
            except AuditUnavailable:
                log.error("request %s: audit record could not be written; answering KMSInternalException", request_id)
                return internal_error_response(request_id)
        return response

    def _authenticate(request: Request, body: bytes, call: CallContext) -> tuple[str, Scope]:
        scope = authenticate(runtime, request, body, call)
        target = request.headers.get("x-amz-target", "")
        operation = target[len(TARGET_PREFIX):] if target.startswith(TARGET_PREFIX) else ""
        if operation not in HANDLERS or not wire.has_operation(operation):
            raise UnknownOperationError(f"Operation '{target or '(no X-Amz-Target header)'}' is not supported by keyledger.")
        return operation, scope

    return app


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
}
