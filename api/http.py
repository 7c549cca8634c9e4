"""The HTTP server: AWS KMS JSON 1.1 at ``POST /`` (SigV4 on every request) and ``GET /healthz``."""
from __future__ import annotations

import json
import logging
import uuid
from datetime import datetime, timezone

from fastapi import FastAPI, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse, Response

from api.errors import CONTENT_TYPE, error_response, internal_error_response
from api.operations import HANDLERS
from api.sigv4 import verify_sigv4
from api.wire_model import WireModel
from domain.errors import (
    InvalidSignatureError,
    KmsError,
    SealedError,
    UnknownOperationError,
    UnrecognizedClientError,
)
from domain.identifiers import Scope
from infrastructure.bootstrap import Runtime

log = logging.getLogger("keyledger.api")
TARGET_PREFIX = "TrentService."


def create_app(runtime: Runtime) -> FastAPI:
    app = FastAPI(title="keyledger", description="An event-sourced key management service that speaks AWS KMS.")
    wire = WireModel()

    @app.get("/healthz")
    def healthz() -> Response:
        if runtime.sealed_reason:
            return JSONResponse({"status": "sealed", "reason": runtime.sealed_reason}, status_code=503)
        return JSONResponse({"status": "ready"})

    @app.post("/", include_in_schema=False)
    async def kms(request: Request) -> Response:
        request_id = str(uuid.uuid4())
        body = await request.body()
        try:
            operation, scope = _authenticate(request, body)
            params = wire.parse_request(operation, body)
            output = await run_in_threadpool(HANDLERS[operation], runtime.services, scope, params)
            payload = json.dumps(wire.serialize_response(operation, output or {}))
        except KmsError as error:
            return error_response(error, request_id)
        except Exception:
            log.exception("request %s failed", request_id)
            return internal_error_response(request_id)
        return Response(payload, media_type=CONTENT_TYPE, headers={"x-amzn-RequestId": request_id})

    def _authenticate(request: Request, body: bytes) -> tuple[str, Scope]:
        if runtime.sealed_reason:
            raise SealedError(f"keyledger is sealed and refuses key operations: {runtime.sealed_reason}")
        assert runtime.services is not None
        credentials = runtime.services.credentials
        signed = verify_sigv4(
            method=request.method, path=request.scope.get("raw_path", b"/").decode("latin-1") or "/",
            query_string=request.scope.get("query_string", b"").decode("latin-1"),
            headers=[(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.scope["headers"]],
            body=body, lookup_secret=lambda key_id: (c.secret if (c := credentials.lookup(key_id)) else None),
            now=datetime.now(tz=timezone.utc),
        )
        if signed.region not in runtime.settings.regions:
            raise InvalidSignatureError(f"Credential should be scoped to a valid region, not '{signed.region}'.")
        credential = credentials.lookup(signed.access_key_id)
        if credential is None:
            raise UnrecognizedClientError("The security token included in the request is invalid.")
        target = request.headers.get("x-amz-target", "")
        operation = target[len(TARGET_PREFIX):] if target.startswith(TARGET_PREFIX) else ""
        if operation not in HANDLERS or not wire.has_operation(operation):
            raise UnknownOperationError(f"Operation '{target or '(no X-Amz-Target header)'}' is not supported by keyledger.")
        return operation, Scope(credential.account_id, signed.region)

    return app
