"""Decision 281: a KMS call's exchange (api/http_protocol.py: KmsExchange) reads a request as uvicorn's own cycle
reads it. The same bytes, cut into the same pieces, are fed to our connection protocol (a ``POST /`` goes by the
exchange) and to uvicorn's (every request by its ASGI cycle), on a real event loop with a real parser (httptools);
the endpoint records every message its ``receive`` hands it and answers once the body is whole. Both must hand the
endpoint the same messages in the same order, see the same disconnects, and put the same bytes on the wire
(the exchange writes an answer in one write, uvicorn in two: their concatenations are compared)."""
from __future__ import annotations

import asyncio
import gc

from hypothesis import given, settings
from hypothesis import strategies as st
from uvicorn import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from api.http_protocol import BoundedHttpToolsProtocol

DEFAULT_HEADERS = [(b"date", b"Mon, 07 Dec 2026 00:00:00 GMT"), (b"server", b"uvicorn")]


class Transport:
    """The socket's side of asyncio's transport, as a protocol uses it (not one of our parts)."""

    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.written.append(bytes(data))

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def get_extra_info(self, name: str, default=None):
        return {"sockname": ("127.0.0.1", 8000), "peername": ("192.0.2.7", 50000)}.get(name, default)


class Endpoint:
    """Reads each request to its end through ``receive``, noting every message, and answers with what it read."""

    max_head_bytes = 1 << 20

    def __init__(self) -> None:
        self.seen: list[tuple] = []
        self.after_end: list[asyncio.Task] = []  # what a receive called after the body's end got, a call each

    async def serve_kms(self, request):
        return await self._read(request.receive)

    async def __call__(self, scope, receive, send) -> None:
        answer = await self._read(receive)
        if answer is None:
            return
        status, headers, payload = answer
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": payload})

    async def _heard(self, receive) -> str:
        message = await receive()
        self.seen.append(("after the end", message["type"]))
        return message["type"]

    async def _read(self, receive):
        body = b""
        while True:
            message = await receive()
            self.seen.append((message["type"], message.get("body"), message.get("more_body")))
            if message["type"] == "http.disconnect":
                return None
            body += message["body"]
            if not message["more_body"]:
                # As an app that listens for the client going away (Starlette's streaming answers do): it must wait
                # for the answer to go or the connection to end, and then hear of a disconnect.
                self.after_end.append(asyncio.ensure_future(self._heard(receive)))
                for _ in range(2):  # it is listening before the answer goes
                    await asyncio.sleep(0)
                return 200, [(b"content-length", str(len(body) + 4).encode()), (b"content-type", b"text/plain")], \
                    b"got " + body


async def _serve(protocol_class, pieces: list[bytes], lost_after: int | None,
                 turns: list[int]) -> tuple[list[tuple], list[str], bytes, bool]:
    endpoint = Endpoint()
    config = Config(endpoint, http=protocol_class, lifespan="off", proxy_headers=False, log_level="warning",
                    access_log=False)
    config.load()
    state = ServerState()
    state.default_headers = DEFAULT_HEADERS
    protocol = protocol_class(config=config, server_state=state, app_state={}, _loop=asyncio.get_running_loop())
    assert getattr(protocol, "_kms_exchange", protocol_class is HttpToolsProtocol)  # ours takes POST / by the exchange
    transport = Transport()
    protocol.connection_made(transport)
    for index, piece in enumerate(pieces):
        if lost_after is not None and index == lost_after:
            protocol.connection_lost(None)
            break
        protocol.data_received(piece)
        for _ in range(turns[index]):  # the loop's turns before the next piece comes (none: pieces pile up)
            await asyncio.sleep(0)
    for _ in range(200):  # whatever was sent is read and answered (pipelined calls one after the other)
        if not state.tasks and not protocol.pipeline:
            break
        await asyncio.sleep(0)
    if not transport.closed:
        protocol.connection_lost(None)
    for _ in range(3):
        await asyncio.sleep(0)
    for task in list(state.tasks):
        task.cancel()
    after_end = [task.result() if task.done() else "waiting" for task in endpoint.after_end]
    for task in endpoint.after_end:
        task.cancel()
    return endpoint.seen, after_end, b"".join(transport.written), transport.closed


def request(body: bytes, close: bool) -> bytes:
    return (b"POST / HTTP/1.1\r\nHost: kms.local\r\nContent-Type: application/x-amz-json-1.1\r\n"
            + (b"Connection: close\r\n" if close else b"") + b"Content-Length: %d\r\n\r\n" % len(body) + body)


@settings(max_examples=300, deadline=None)
@given(bodies=st.lists(st.binary(max_size=3000), min_size=1, max_size=3), close_last=st.booleans(),
       cuts=st.lists(st.floats(min_value=0, max_value=1), max_size=8), lose=st.booleans(), data=st.data())
def test_a_kms_call_is_read_and_answered_as_uvicorns_cycle_would(bodies, close_last, cuts, lose, data) -> None:
    stream = b"".join(request(body, close_last and i == len(bodies) - 1) for i, body in enumerate(bodies))
    points = sorted({int(cut * len(stream)) for cut in cuts} | {0, len(stream)})  # where the reads end
    pieces = [stream[a:b] for a, b in zip(points, points[1:]) if b > a]
    lost_after = data.draw(st.integers(min_value=0, max_value=len(pieces)), label="lost after") if lose else None
    turns = data.draw(st.lists(st.integers(min_value=0, max_value=3), min_size=len(pieces), max_size=len(pieces)),
                      label="loop turns after each piece")
    ours = asyncio.run(_serve(BoundedHttpToolsProtocol, pieces, lost_after, turns))
    uvicorns = asyncio.run(_serve(HttpToolsProtocol, pieces, lost_after, turns))
    assert ours == uvicorns
    if lost_after is None:  # every call was read whole and answered, each once, in order
        read, part = [], b""
        for kind, body, more in (m for m in ours[0] if m[0] == "http.request"):
            part += body
            if not more:
                read, part = read + [part], b""
        assert read == bodies
        assert ours[2].count(b"HTTP/1.1 200 OK") == len(bodies)
        assert ours[1] == ["http.disconnect"] * len(bodies)


def test_a_call_leaves_no_more_for_the_garbage_collector_than_uvicorns_cycle() -> None:
    """Each call's objects are freed by reference counting as it ends, as uvicorn's are: an exchange that held its
    protocol, or the request that holds its ``receive``, left about fifteen objects a call in reference cycles for
    the collector (decision 280 makes its collections rare, so they would pile up with the calls' bodies)."""
    stream = b"".join(request(b"x" * 100, False) for _ in range(50))
    left: dict[type, int] = {}
    for protocol_class in (BoundedHttpToolsProtocol, HttpToolsProtocol):
        async def fifty_calls() -> None:
            gc.collect()
            gc.disable()
            try:
                seen, _, written, _ = await _serve(protocol_class, [stream], None, [3])
                assert written.count(b"HTTP/1.1 200 OK") == 50
                left[protocol_class] = gc.collect()
            finally:
                gc.enable()

        asyncio.run(fifty_calls())
    assert left[BoundedHttpToolsProtocol] <= left[HttpToolsProtocol]
