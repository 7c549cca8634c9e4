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
from typing import Any

from api.limits import head_limit
from domain.errors import RequestHeaderFieldsTooLargeError

try:
    from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol, RequestResponseCycle
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

        def on_headers_complete(self) -> None:
            self._head_bytes = None
            if not self._kms_call():
                super().on_headers_complete()
                return
            # uvicorn's own steps (HttpToolsProtocol.on_headers_complete) for a request it would hand to the app,
            # with a KmsExchange as the cycle: the scope is filled as uvicorn fills it.
            http_version = self.parser.get_http_version()
            scope = self.scope
            scope["method"] = "POST"
            if http_version != "1.1":
                scope["http_version"] = http_version
            scope["path"], scope["raw_path"], scope["query_string"] = "/", b"/", b""
            existing = self.cycle
            self.cycle = KmsExchange(
                scope=scope, transport=self.transport, flow=self.flow, logger=self.logger,
                access_logger=self.access_logger, access_log=self.access_log,
                default_headers=self.server_state.default_headers, message_event=asyncio.Event(),
                expect_100_continue=self.expect_100_continue,
                keep_alive=http_version != "1.0" and self.parser.should_keep_alive(),
                on_response=self.on_response_complete)
            if existing is None or existing.response_complete:
                self._start_asgi_task(self.cycle, self.app)
            else:  # pipelined: queued, as uvicorn queues it
                self.flow.pause_reading()
                self.pipeline.appendleft((self.cycle, self.app))

        def _kms_call(self) -> bool:
            """A KMS call (``POST /``, no query, no upgrade) that the endpoint answers itself."""
            return (self._kms_exchange and self.url == b"/" and self.parser.get_method() == b"POST"
                    and not self.parser.should_upgrade())

        def on_message_complete(self) -> None:
            self._head_bytes = 0
            super().on_message_complete()

    class KmsExchange(RequestResponseCycle):  # type: ignore[misc,valid-type]
        """uvicorn's request-response cycle for a KMS call: the body is read through the same ``receive``, but the
        endpoint's answer is written as one write (status line, headers and body), not as two ASGI messages each
        checked and written on its own. The answer's headers are the endpoint's own (a request id, a length, a
        content type), and uvicorn's default ones (date, server) go first as uvicorn sends them: the bytes on the
        wire are those uvicorn writes. The KMS protocol is request-response with a length, always: nothing here
        streams, chunks or answers HEAD."""

        async def run_asgi(self, app: Any) -> None:
            try:
                answer = await app.serve_kms(self.scope, self.receive)
            except BaseException as exc:  # noqa: BLE001 - as uvicorn's run_asgi: logged and answered 500
                self.logger.error("Exception in ASGI application\n", exc_info=exc)
                await self.send_500_response()
                self.on_response = lambda: None
                return
            if answer is None:  # the client went away before its request was read: nothing to answer
                self.on_response = lambda: None
                return
            if self.flow.write_paused and not self.disconnected:
                await self.flow.drain()
            if self.disconnected:
                self.on_response = lambda: None
                return
            status, headers, payload = answer
            lines = [STATUS_LINE[status]]
            for name, value in (*self.default_headers, *headers):
                if name == b"connection" and value == b"close":
                    self.keep_alive = False
                lines += [name, b": ", value, b"\r\n"]
            if not self.keep_alive and (b"connection", b"close") not in headers:
                lines.append(b"connection: close\r\n")
            lines += [b"\r\n", payload]
            self.response_started = self.response_complete = True
            self.waiting_for_100_continue = False
            self.transport.write(b"".join(lines))
            self.message_event.set()
            if not self.keep_alive:
                self.transport.close()
            self.on_response()
            self.on_response = lambda: None
else:  # pragma: no cover
    BoundedHttpToolsProtocol = None  # type: ignore[assignment,misc]


def uvicorn_http_options(max_header_bytes: int) -> dict[str, Any]:
    """What to hand uvicorn.run so that every request head is bounded (KEYLEDGER_MAX_HEADER_BYTES)."""
    if BoundedHttpToolsProtocol is not None:
        return {"http": BoundedHttpToolsProtocol}
    return {"http": "h11", "h11_max_incomplete_event_size": head_limit(max_header_bytes)}
