"""The connection guard: uvicorn's httptools protocol, refusing a request whose head (request line and headers)
grows past a bound before it is complete.

Without it the whole head is buffered before the application sees any of it: a 4 MB User-Agent costs 4 MB
of memory (and more while httptools joins its pieces), a 1 GB one brings the server down. The application's
own check (api/limits.py) refuses headers over KEYLEDGER_MAX_HEADER_BYTES with an audited 431; this guard
stops reading at ``max_head_bytes`` (twice that and a little more, see api/limits.py) and answers 431 itself,
counting the refusal in the failed-authentication summary: it is not a request the application can record.

The count is kept per connection while a head is being read (between a message's end and the next one's
headers): a subtraction-free sum of the bytes each read brings, so a head arriving with part of its body
in one read may be counted a read too high, never too low. Per read on the request path: one attribute test.
When httptools is not installed uvicorn's h11 protocol is used, and its own bound on an incomplete event is
set to the same number.
"""
from __future__ import annotations

import asyncio
import json
from typing import Any, Callable

from api.limits import head_limit
from api.pipeline import HttpRequest
from domain.errors import RequestHeaderFieldsTooLargeError

try:
    from uvicorn.protocols.http.flow_control import HIGH_WATER_LIMIT
    from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol
except ImportError:  # pragma: no cover - uvicorn without httptools: h11 with its own bound
    HttpToolsProtocol = None  # type: ignore[assignment,misc]

DEFAULT_MAX_HEAD_BYTES = head_limit(16384)  # the default settings' bound, for an app that does not say


def _refusal(max_head_bytes: int) -> bytes:
    error = RequestHeaderFieldsTooLargeError(
        f"The request's headers are larger than {max_head_bytes} bytes; reading stopped there. Send fewer or "
        "shorter headers (a long User-Agent, for one).")
    body = json.dumps({"__type": error.code, "message": error.message}).encode("utf-8")
    return (b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: application/x-amz-json-1.1\r\n"
            b"content-length: " + str(len(body)).encode("ascii") + b"\r\nconnection: close\r\n\r\n" + body)


if HttpToolsProtocol is not None:
    class BoundedHttpToolsProtocol(HttpToolsProtocol):  # type: ignore[misc,valid-type]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            app = self.app  # our KmsEndpoint (uvicorn adds no wrapper with proxy headers off and no trace log)
            self._max_head = getattr(app, "max_head_bytes", DEFAULT_MAX_HEAD_BYTES)
            self._on_refused = getattr(app, "head_refused", None)
            self._head_bytes: int | None = 0  # None while a body is read: only heads are counted
            # KMS calls go by KmsExchange where uvicorn would run the app with nothing around it.
            self._kms_exchange = (hasattr(app, "serve_kms") and not self.access_log and not self.root_path
                                  and self.limit_concurrency is None)
            self.busy_poll = getattr(app, "busy_poll", None)  # a serving process's (api/busy_poll.py)

        def data_received(self, data: bytes) -> None:
            if self._head_bytes is None:
                super().data_received(data)
                return
            self._head_bytes += len(data)
            super().data_received(data)
            if self._head_bytes is not None and self._head_bytes > self._max_head and not self.transport.is_closing():
                if self._on_refused is not None:
                    self._on_refused(self.client[0] if self.client else None)
                self.transport.write(_refusal(self._max_head))
                self.transport.close()

        def on_message_begin(self) -> None:
            # uvicorn's, without the ASGI scope: a KMS call needs none, and any other request gets it in
            # on_headers_complete (``_asgi_scope``), as uvicorn would have made it here (nothing reads it before).
            self.url = b""
            self.expect_100_continue = False
            self.headers = []

        def on_headers_complete(self) -> None:
            self._head_bytes = None
            if not self._kms_call():
                self.scope = self._asgi_scope()
                super().on_headers_complete()
                return
            # uvicorn's own steps (HttpToolsProtocol.on_headers_complete) for a request it would hand to the app,
            # with a KmsExchange as the cycle, which hands the endpoint the request itself instead of a scope.
            parser = self.parser
            existing = self.cycle
            self.cycle = KmsExchange(self, parser.get_http_version() != "1.0" and parser.should_keep_alive())
            if existing is None or existing.response_complete:
                self._start_asgi_task(self.cycle, self.app)
            else:  # pipelined: queued, as uvicorn queues it
                self.flow.pause_reading()
                self.pipeline.appendleft((self.cycle, self.app))

        def _asgi_scope(self) -> dict[str, Any]:
            """The scope uvicorn's on_message_begin makes (uvicorn.protocols.http.httptools_impl)."""
            return {"type": "http", "asgi": {"version": self.asgi_version, "spec_version": "2.3"},
                    "http_version": "1.1", "server": self.server, "client": self.client, "scheme": self.scheme,
                    "root_path": self.root_path, "headers": self.headers, "state": self.app_state.copy()}

        def _kms_call(self) -> bool:
            """A KMS call (``POST /``, no query, no upgrade) that the endpoint answers itself."""
            return (self._kms_exchange and self.url == b"/" and self.parser.get_method() == b"POST"
                    and not self.parser.should_upgrade())

        def on_body(self, body: bytes) -> None:
            cycle = self.cycle
            if type(cycle) is not KmsExchange:
                super().on_body(body)
                return
            if cycle.response_complete:
                return
            cycle.chunks.append(body)
            cycle.buffered += len(body)
            if cycle.buffered > HIGH_WATER_LIMIT:
                self.flow.pause_reading()
            cycle.set()

        def on_message_complete(self) -> None:
            self._head_bytes = 0
            cycle = self.cycle
            if type(cycle) is not KmsExchange:
                super().on_message_complete()
                return
            if not cycle.response_complete:
                cycle.more_body = False
                cycle.set()

    class KmsExchange:
        """The request-response cycle of a KMS call (decisions 268 and 281): its body is
        read as uvicorn's cycle reads it, the endpoint is handed an ``HttpRequest`` (no ASGI scope, no event, no
        message per read), and its answer is written as one write (status line, headers and body). The answer's
        headers are the endpoint's own (a request id, a length, a content type), and uvicorn's default ones (date,
        server) go first as uvicorn sends them: the bytes on the wire are those uvicorn writes. The KMS protocol is
        request-response with a length, always: nothing here streams, chunks or answers HEAD.

        uvicorn's protocol reads and sets what it reads and sets on its own cycle: ``response_complete``,
        ``keep_alive`` (shutdown), ``disconnected`` and ``message_event.set()`` (the connection lost), and
        ``run_asgi`` (a pipelined request, started when the one before it is answered)."""

        __slots__ = ("transport", "flow", "logger", "default_headers", "headers", "client", "secure", "chunks", "buffered",
                     "more_body", "disconnected", "keep_alive", "response_complete", "waiting_for_100_continue",
                     "on_response", "busy_poll", "_waiter", "_ended")

        def __init__(self, protocol: BoundedHttpToolsProtocol, keep_alive: bool) -> None:
            # What it needs of the protocol, not the protocol: a cycle holding it would outlive each call until the
            # garbage collector came (and the request is made in ``run_asgi`` for the same reason: it holds
            # ``receive``, a method of this cycle).
            self.transport = protocol.transport
            self.flow = protocol.flow
            self.logger = protocol.logger
            self.default_headers = protocol.server_state.default_headers  # as uvicorn's cycle takes them
            self.headers = protocol.headers
            client = protocol.client
            self.client = client[0] if client else None
            self.secure = protocol.scheme == "https"
            self.chunks: list[bytes] = []
            self.buffered = 0  # bytes of the body read and not yet received, for flow control
            self.more_body = True
            self.disconnected = False
            self.keep_alive = keep_alive
            self.response_complete = False
            self.waiting_for_100_continue = protocol.expect_100_continue
            self.on_response: Callable[[], None] = protocol.on_response_complete
            self.busy_poll = protocol.busy_poll
            self._waiter: asyncio.Future[None] | None = None
            self._ended = False  # the message's last part has been handed over by ``receive``

        @property
        def message_event(self) -> KmsExchange:
            """What uvicorn's protocol sets when the connection is lost: this cycle's own wake-up."""
            return self

        def set(self) -> None:
            """Wakes ``receive`` if it waits: body arrived, the message ended, or the connection was lost."""
            waiter = self._waiter
            if waiter is not None:
                self._waiter = None
                if not waiter.done():
                    waiter.set_result(None)

        async def receive(self) -> dict[str, Any]:
            """uvicorn's ``receive``, message for message: the body read so far, or the disconnect."""
            if self.waiting_for_100_continue and not self.transport.is_closing():
                self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
                self.waiting_for_100_continue = False
            if not self.disconnected and not self.response_complete:
                self.flow.resume_reading()
                # Nothing new to hand over (no body read since, and the message not ended since, the last call):
                # wait, as uvicorn's cycle waits on its event, for more body, the end, the answer or a disconnect.
                if not self.chunks and (self.more_body or self._ended):
                    self._waiter = asyncio.get_running_loop().create_future()
                    await self._waiter
            if self.disconnected or self.response_complete:
                return {"type": "http.disconnect"}
            chunks, self.chunks, self.buffered = self.chunks, [], 0
            self._ended = not self.more_body
            body = chunks[0] if len(chunks) == 1 else b"".join(chunks) if chunks else b""
            return {"type": "http.request", "body": body, "more_body": self.more_body}

        async def run_asgi(self, app: Any) -> None:
            busy_poll = self.busy_poll
            if busy_poll is not None:  # the call's next events (its record made durable, its answer) come soon
                busy_poll.touch()
            try:
                answer = await app.serve_kms(HttpRequest("POST", b"/", b"", self.headers, self.client, self.secure,
                                                         self.receive))
            except BaseException as exc:  # noqa: BLE001 - as uvicorn's run_asgi: logged and answered 500
                self.logger.error("Exception in ASGI application\n", exc_info=exc)
                self._write(500, [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", b"21"),
                                  (b"connection", b"close")], b"Internal Server Error")
                self.on_response()
                self.on_response = _nothing
                return
            if answer is None:  # the client went away before its request was read: nothing to answer
                self.on_response = _nothing
                return
            if self.flow.write_paused and not self.disconnected:
                await self.flow.drain()
            if self.disconnected:
                self.on_response = _nothing
                return
            self._write(*answer)
            self.on_response()
            self.on_response = _nothing
            if busy_poll is not None:  # and so, likely, does the client's next request
                busy_poll.touch()

        def _write(self, status: int, headers: list[tuple[bytes, bytes]], payload: bytes) -> None:
            lines = [STATUS_LINE[status]]
            for name, value in (*self.default_headers, *headers):
                if name == b"connection" and value == b"close":
                    self.keep_alive = False
                lines += [name, b": ", value, b"\r\n"]
            if not self.keep_alive and (b"connection", b"close") not in headers:
                lines.append(b"connection: close\r\n")
            lines += [b"\r\n", payload]
            self.response_complete = True
            self.waiting_for_100_continue = False
            self.transport.write(b"".join(lines))
            self.set()  # a receive still waiting learns the exchange is over, as uvicorn's send tells it
            if not self.keep_alive:
                self.transport.close()

    def _nothing() -> None:
        pass
else:  # pragma: no cover
    BoundedHttpToolsProtocol = None  # type: ignore[assignment,misc]


def uvicorn_http_options(max_header_bytes: int) -> dict[str, Any]:
    """What to hand uvicorn.run so that every request head is bounded (KEYLEDGER_MAX_HEADER_BYTES)."""
    if BoundedHttpToolsProtocol is not None:
        return {"http": BoundedHttpToolsProtocol}
    return {"http": "h11", "h11_max_incomplete_event_size": head_limit(max_header_bytes)}
