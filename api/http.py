"""The HTTP server: AWS KMS JSON 1.1 at ``POST /`` (SigV4 on every request), the /v1 query API, ``GET
/healthz`` (also ``/healthz/live`` and ``/healthz/ready``) and ``GET /metrics``.

Every call, KMS or /v1, allowed or refused, goes through one request pipeline (api/pipeline.py) and gets an
audit record; the response is sent only once that record is durable (a key change's record commits with the
change itself). If the record cannot be written the caller gets KMSInternalException and nothing else.

Requests to ``/`` are answered by a plain ASGI handler in front of FastAPI (``KmsEndpoint``): the KMS protocol
has one path and needs none of FastAPI's routing, dependency injection or Request/Response objects, which
cost more per call than the crypto does (docs/performance.md). Everything else (``/healthz``, ``/metrics``,
``/v1``, ``/docs``, and the 404 for unknown paths) is FastAPI's.
"""
from __future__ import annotations

from contextlib import asynccontextmanager
from typing import Any, AsyncIterator, Awaitable, Callable, MutableMapping, Sequence

from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse, Response

from api.busy_poll import BusyPoll
from api.console.routes import CONSOLE_OPERATIONS, install_console
from api.docs_page import install_docs
from api.errors import CONTENT_TYPE, error_body
from api.kms_front import KmsFront
from api.limits import CLOSE, RequestLimits, replay
from api.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from api.metrics import Metrics
from api.operations import HANDLERS
from api.pipeline import HttpRequest, RequestPipeline
from api.query_api import QUERY_OPERATIONS, query_router
from api.wire_model import WireModel
from api.xks_front import XksFront, is_xks_path
from api.xks_wire import OPERATIONS as XKS_OPERATIONS
from domain.errors import RequestHeaderFieldsTooLargeError
from infrastructure.long_lived_heap import freeze_start_up_heap
from infrastructure.runtime import Runtime


def package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("keyledger")
    except PackageNotFoundError:
        return "unknown"

Scope_ = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
# What FastAPI answered for another method on a POST-only route.
_METHOD_NOT_ALLOWED = b'{"detail":"Method Not Allowed"}'
_XKS_METHOD_NOT_ALLOWED = b'{"errorName":"ValidationException","errorMessage":"The XKS proxy API accepts POST only."}'


def create_app(runtime: Runtime, background: Sequence[Any] = (), *, whole_process: bool = False) -> KmsEndpoint:
    """``background``: objects with start()/stop() run for the app's lifetime. On shutdown (uvicorn's
    graceful SIGTERM too) they stop and the runtime closes, so SQLite checkpoints its WAL on the way out.
    ``whole_process``: the app is what the process serves for its life (`keyledger serve`, each worker): once
    started, the heap it was built with is frozen out of the garbage collector's walks (decision 280)."""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        runtime.audit.start()
        await runtime.open_audit_channel()
        for task in background:
            task.start()
        if whole_process:
            freeze_start_up_heap()
            if settings.busy_poll_microseconds:
                endpoint.busy_poll = BusyPoll(settings.busy_poll_microseconds / 1e6)
        try:
            yield
        finally:
            for task in background:
                task.stop()
            runtime.close()

    app = FastAPI(title="keyledger", description="An event-sourced key management service that speaks AWS KMS.",
                  lifespan=lifespan, docs_url=None, redoc_url=None, version=package_version())
    metrics = Metrics(runtime, [*HANDLERS, *QUERY_OPERATIONS, *CONSOLE_OPERATIONS, *XKS_OPERATIONS])
    wire = WireModel()
    settings = runtime.settings
    limits = RequestLimits(wire.service_model, settings.max_header_bytes, settings.max_body_bytes,
                           runtime.quotas, runtime.unauthenticated)
    pipeline = RequestPipeline(runtime, metrics, limits)
    app.include_router(query_router(runtime, pipeline))
    install_docs(app)
    install_console(app, runtime, pipeline)

    if runtime.settings.metrics:
        @app.get("/metrics", include_in_schema=False)
        def prometheus_metrics() -> Response:
            return Response(metrics.exposition(), media_type=METRICS_CONTENT_TYPE)

    # Kubernetes-style probes (application/health.py): liveness asks only that the process answers;
    # readiness that a call would be served now. /healthz is readiness, as it always was.
    @app.get("/healthz/live")
    async def liveness() -> Response:
        return JSONResponse({"status": "alive"})

    @app.get("/healthz/ready")
    @app.get("/healthz")
    async def readiness() -> Response:
        state = await runtime.health.readiness()
        stores = await run_in_threadpool(runtime.key_store_state)  # a database read: off the event loop
        background = runtime.background_state()  # which node of a deployment runs checkpoints and maintenance
        return JSONResponse({**state.body(), "root_key": runtime.root_key_state(), "custom_key_stores": stores,
                             **({"background": background} if background is not None else {})},
                            status_code=200 if state.ready else 503)

    endpoint = KmsEndpoint(pipeline, KmsFront(runtime, wire), app,
                           XksFront(runtime, settings.xks_uri_prefix, limits.max_body_bytes))
    return endpoint


class KmsEndpoint:
    """The ASGI application uvicorn runs: answers ``/`` itself (``POST``: a KMS call; any other method: 405) and
    the XKS proxy API's paths (api/xks_front.py), hands everything else to FastAPI."""

    def __init__(self, pipeline: RequestPipeline, kms: KmsFront, app: FastAPI, xks: XksFront | None = None) -> None:
        self.pipeline = pipeline
        self.kms = kms
        self.xks = xks
        self.app = app  # FastAPI: lifespan, /healthz, /metrics, /v1, /docs
        self.limits = pipeline.limits
        self.max_head_bytes = self.limits.max_head_bytes  # read by api/http_protocol.py's connection guard
        self.busy_poll: BusyPoll | None = None  # a serving process's, once it has started (api/busy_poll.py)

    async def __call__(self, scope: Scope_, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        front: KmsFront | XksFront = self.kms
        if scope["path"] != "/":
            if self.xks is not None and is_xks_path(scope["path"]):
                front = self.xks
            elif scope["path"].startswith("/v1/"):  # the pipeline's limits stage bounds /v1 requests
                await self.app(scope, receive, send)
                return
            else:
                await self._bounded_other(scope, receive, send)
                return
        if scope["method"] != "POST":  # the XKS proxy API too: "it MUST reject the request with a 405"
            body = _METHOD_NOT_ALLOWED if front is self.kms else _XKS_METHOD_NOT_ALLOWED
            await send({"type": "http.response.start", "status": 405, "headers": [
                (b"allow", b"POST"), (b"content-length", str(len(body)).encode("latin-1")),
                (b"content-type", b"application/json")]})
            await send({"type": "http.response.body", "body": body})
            return
        answer = await self.pipeline.serve(front, HttpRequest.of(scope, receive))
        if answer is None:
            return  # the client went away before sending its request: nothing was done, nothing to answer
        status, headers, payload = answer
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": payload})

    def serve_kms(self, request: HttpRequest) -> Awaitable[tuple[int, list[tuple[bytes, bytes]], bytes] | None]:
        """A KMS call (``POST /``): its answer (status, headers, body), or None if the client went away before its
        request was read. The connection's protocol (api/http_protocol.py: KmsExchange) calls this directly and
        writes the answer itself; ``__call__`` (any other way in) runs the same pipeline and sends it as ASGI
        messages."""
        return self.pipeline.serve(self.kms, request)

    def head_refused(self, source: str | None) -> None:
        """The connection guard (api/http_protocol.py) refused a request head: counted, not recorded."""
        unauthenticated = self.limits.unauthenticated
        if unauthenticated is not None:
            unauthenticated.refused(source, RequestHeaderFieldsTooLargeError("request head too large"), None)

    async def _bounded_other(self, scope: Scope_, receive: Receive, send: Send) -> None:
        """/healthz, /metrics, /docs...: the same header and body limits, then FastAPI. A refusal is answered in
        AWS's shape and counted in the failed-authentication summary (it was refused before anything)."""
        refusal, limit = self.limits.check_other(scope["headers"])
        if refusal is None:
            body, refusal = await self.limits.read_limited(receive, limit)
            if refusal is None:
                if body is not None:
                    await self.app(scope, replay(body, receive), send)
                return  # body None: the client went away before sending its request
        client = scope.get("client")
        if self.limits.unauthenticated is not None:
            self.limits.unauthenticated.refused(client[0] if client else None, refusal, None)
        payload = error_body(refusal)
        await send({"type": "http.response.start", "status": refusal.status, "headers": [
            (b"content-length", str(len(payload)).encode("latin-1")), (b"content-type", CONTENT_TYPE.encode("latin-1")),
            CLOSE]})
        await send({"type": "http.response.body", "body": payload})
