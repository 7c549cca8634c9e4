"""How a server process reaches the audit committer process (decision 264), and the frames both sides speak: a
4-byte length and a pickle of a batch's records one way, an empty answer (durable) or the reason it was refused the
other. ``CommitterClient`` is a thread's blocking connection (the committer thread's, for records made off the event
loop); ``CommitterChannel`` is the event loop's own (decision 267). The process itself is
infrastructure/audit_committer.py."""
from __future__ import annotations

import asyncio
import pickle
import socket
import struct
import threading
from typing import Any, Callable

from application.audit.group_commit import CommitterGone, CommitterRefused

HEADER = struct.Struct("!I")
MAX_FRAME = 64 * 1024 * 1024  # 1,024 records at their 16 KiB bound, pickled, with room to spare
RECORDS_PER_FRAME = 1024  # a larger batch (KEYLEDGER_AUDIT_GROUP_COMMIT_MAX) goes in several frames
# How long a server process waits for a batch's answer before it takes the committer for gone. A commit waits
# at most the database's lock timeouts; this is far above them, and only a hung process reaches it.
ANSWER_SECONDS = 120.0
MAX_ANSWER = 65536  # the committer's answers are empty or a reason of at most 4 KiB


def _read_exactly(sock: socket.socket, size: int) -> bytes | None:
    """``size`` bytes from ``sock``, or None at the end of the stream."""
    buffer = bytearray(size)
    view, got = memoryview(buffer), 0
    while got < size:
        count = sock.recv_into(view[got:], size - got)
        if count == 0:
            return None
        got += count
    return bytes(buffer)


def batch_frame(records: list[dict[str, Any]]) -> bytes:
    """The frame that carries ``records``; CommitterRefused for a value no record can hold (sealing would refuse it
    too), so that batch fails closed and the connection goes on."""
    try:
        payload = pickle.dumps(records, protocol=5)
    except Exception as exc:
        raise CommitterRefused(f"{type(exc).__name__}: {exc}") from exc
    return HEADER.pack(len(payload)) + payload


def read_frame(sock: socket.socket, limit: int = MAX_FRAME) -> bytes | None:
    header = _read_exactly(sock, HEADER.size)
    if header is None:
        return None
    (size,) = HEADER.unpack(header)
    if size > limit:
        raise ValueError(f"a frame of {size} bytes, above the {limit} this process reads")
    return _read_exactly(sock, size) if size else b""


class CommitterClient:
    """A server process's connection to the committer process (application.ports.BatchCommitter)."""

    def __init__(self, address: bytes) -> None:
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.settimeout(ANSWER_SECONDS)
        try:
            self._sock.connect(address)
        except OSError:
            self._sock.close()
            raise

    def commit(self, records: list[dict[str, Any]]) -> None:
        for start in range(0, len(records), RECORDS_PER_FRAME):
            frame = batch_frame(records[start:start + RECORDS_PER_FRAME])
            try:
                # sendall: one sendmsg writes only what the socket's buffer takes at once (a few hundred KB)
                self._sock.sendall(frame)
                answer = read_frame(self._sock)
            except (OSError, ValueError) as exc:
                raise CommitterGone(f"{type(exc).__name__}: {exc}") from exc
            if answer is None:
                raise CommitterGone("the committer process closed the connection")
            if answer:
                raise CommitterRefused(answer.decode("utf-8", "replace"))

    def close(self) -> None:
        self._sock.close()


class CommitterChannel(asyncio.Protocol):
    """A server's event loop's own connection to the committer process (application.ports.BatchChannel, decision
    267). A batch is pickled and written by the loop, and its answer read by the loop when it arrives: the calls
    waiting on it are woken there, with no thread between (a thread that wakes for every batch takes the GIL from
    the loop and gives it back, and that cost the serving process more per call than the hand-over itself).

    Same frames, same bounds and same failures as ``CommitterClient``: a committer that closes the connection, sends
    what is not an answer, or does not answer within ``ANSWER_SECONDS`` is gone, and the batch in flight fails
    closed."""

    max_records = RECORDS_PER_FRAME

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.thread_id = threading.get_ident()  # made on its loop (connect), so the thread the loop runs in
        self._transport: asyncio.Transport | None = None
        self._received = bytearray()
        self._answered: Callable[[BaseException | None], None] | None = None  # the batch in flight's
        self._timer: asyncio.TimerHandle | None = None
        self.lost: str | None = None  # why the committer is gone, once known

    @classmethod
    async def connect(cls, address: bytes) -> CommitterChannel:
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(address)  # a local socket: connects at once, or is refused
            _, channel = await loop.create_unix_connection(lambda: cls(loop), sock=sock)
        except BaseException:
            sock.close()
            raise
        return channel

    def send(self, records: list[dict[str, Any]], answered: Callable[[BaseException | None], None]) -> None:
        assert self._answered is None, "one batch in flight at a time"
        if self.lost is not None or self._transport is None:
            self.loop.call_soon(answered, CommitterGone(self.lost or "not connected"))
            return
        try:
            frame = batch_frame(records)
        except CommitterRefused as refused:
            self.loop.call_soon(answered, refused)
            return
        self._answered = answered
        self._timer = self.loop.call_later(ANSWER_SECONDS, self._lost, "no answer within the time allowed")
        self._transport.write(frame)

    def close(self) -> None:
        """From any thread; connection_lost follows on the loop, and a batch in flight fails closed."""
        if self._transport is None:
            return
        try:
            here = asyncio.get_running_loop() is self.loop
        except RuntimeError:
            here = False
        if here:
            self._transport.close()
            return
        try:
            self.loop.call_soon_threadsafe(self._transport.close)
        except RuntimeError:  # the loop was closed, and its transports with it
            pass

    # -- asyncio.Protocol ----------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]  # uvloop's transports are not asyncio's classes

    def data_received(self, data: bytes) -> None:
        self._received += data
        while len(self._received) >= HEADER.size:
            (size,) = HEADER.unpack_from(self._received)
            if size > MAX_ANSWER:
                self._lost(f"an answer of {size} bytes, above the {MAX_ANSWER} a committer sends")
                return
            if len(self._received) < HEADER.size + size:
                return
            answer = bytes(self._received[HEADER.size:HEADER.size + size])
            del self._received[:HEADER.size + size]
            answered, self._answered = self._answered, None
            if answered is None:
                self._lost("an answer to no batch")
                return
            self._timer.cancel()  # type: ignore[union-attr]
            answered(CommitterRefused(answer.decode("utf-8", "replace")) if answer else None)

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost(f"{type(exc).__name__}: {exc}" if exc else "the committer process closed the connection")

    def _lost(self, reason: str) -> None:
        if self.lost is None:
            self.lost = reason
            if self._transport is not None:
                self._transport.abort()
        if self._timer is not None:
            self._timer.cancel()
        answered, self._answered = self._answered, None
        if answered is not None:
            answered(CommitterGone(reason))
