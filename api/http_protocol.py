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

import json
from typing import Any

from api.limits import head_limit
from domain.errors import RequestHeaderFieldsTooLargeError

try:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
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
            super().on_headers_complete()

        def on_message_complete(self) -> None:
            self._head_bytes = 0
            super().on_message_complete()
else:  # pragma: no cover
    BoundedHttpToolsProtocol = None  # type: ignore[assignment,misc]


def uvicorn_http_options(max_header_bytes: int) -> dict[str, Any]:
    """What to hand uvicorn.run so that every request head is bounded (KEYLEDGER_MAX_HEADER_BYTES)."""
    if BoundedHttpToolsProtocol is not None:
        return {"http": BoundedHttpToolsProtocol}
    return {"http": "h11", "h11_max_incomplete_event_size": head_limit(max_header_bytes)}
