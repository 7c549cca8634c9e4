"""The limits stage of the request pipeline (api/pipeline.py): what a request may cost before any work is
done on it. Called by the pipeline at three points, for the KMS endpoint and /v1 alike:

* ``check_headers(call, raw_headers)``: first, before the body is read or the signature checked;
* ``read_body(call, receive)``: reads the body (the only place that does);
* ``admit(call)``: once the caller is authenticated, before authorization and the operation run.

Each raises a KmsError to refuse; the pipeline answers it and records the call like any other refusal.
This version bounds nothing: header and body limits, quotas and audit bounding belong here.
"""
from __future__ import annotations

from typing import Any, Awaitable, Callable, MutableMapping, Sequence

from application.calls import Call

Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]


class RequestLimits:
    def check_headers(self, call: Call, raw_headers: Sequence[tuple[bytes, bytes]]) -> None:
        """Before anything else is read: the request line and headers as the server received them."""

    async def read_body(self, call: Call, receive: Receive) -> bytes | None:
        """The request's body; None if the client went away before sending all of it (nothing is answered)."""
        chunks = []
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    def admit(self, call: Call) -> None:
        """After authentication: whether this caller may make this call now (quotas)."""
