"""The audit committer process (decision 264): seals and commits the audit records of every server process.

`keyledger serve` starts it before it serves (infrastructure/audit_committer_launch.py). Each server process's
committer thread then hands it whole batches through a Unix socket (``CommitterClient``) and waits for the answer,
so the work of a batch (sealing the chain, spelling the JSON, compressing, inserting, indexing, committing) runs on
this process's GIL and core, not on the one that answers HTTP; and the batches of several server processes
(``KEYLEDGER_WORKERS``) are committed together, in one transaction, instead of one after the other.

What it does not change:
* A call is still answered only once its record is durable: the answer comes after this process's commit.
* Key changes' own records still commit in the server process with their events, under the writers' lock;
  this process is one more writer and reads the head again when another appended (application/audit/trail.py).
* If it dies, the batch in flight fails closed (its calls answer KMSInternalException) and each server process
  commits its own records from then on. It dies with the process that started it.

The socket is in Linux's abstract namespace under a random name, and only a process of the same user may
connect (SO_PEERCRED): such a process could read the data directory, the database and the row key anyway.
Frames are a 4-byte length and a pickle of the batch's records (exactly the dicts the server made: the chain
hashes their canonical JSON, so nothing may be lost in a translation); answers are empty (durable) or the
reason it was refused. A frame above ``MAX_FRAME`` bytes, or one that is not a list of records, closes that
connection before any of it is committed.
"""
from __future__ import annotations

import asyncio
import ctypes
import logging
import os
import pickle
import random
import selectors
import signal
import socket
import struct
import sys
from typing import Any, Callable

from application.audit.trail import AuditTrail, CommitterGone, CommitterRefused
from infrastructure.audit_committer_launch import READY
from infrastructure.clock import DatabaseClock
from infrastructure.persistence import build_ledger
from infrastructure.settings import Settings
from infrastructure.storage import SqlUnitOfWork, writer_gate_for
from projections.audit_index import SqlAuditIndex

HEADER = struct.Struct("!I")
MAX_FRAME = 64 * 1024 * 1024  # 1,024 records at their 16 KiB bound, pickled, with room to spare
RECORDS_PER_FRAME = 1024  # a larger batch (KEYLEDGER_AUDIT_GROUP_COMMIT_MAX) goes in several frames
FRAME_SECONDS = 5.0
FRAMES_PER_COMMIT = 8  # batches committed in one transaction at most: what it holds at once is bounded too
# How long a server process waits for a batch's answer before it takes the committer for gone. A commit waits
# at most the database's lock timeouts; this is far above them, and only a hung process reaches it.
ANSWER_SECONDS = 120.0
MAX_ANSWER = 65536  # the committer's answers are empty or a reason of at most 4 KiB
log = logging.getLogger("keyledger.audit")


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


def _read_frame(sock: socket.socket, limit: int = MAX_FRAME) -> bytes | None:
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
        self.address = address
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.settimeout(ANSWER_SECONDS)
        try:
            self._sock.connect(address)
        except OSError:
            self._sock.close()
            raise

    def commit(self, records: list[dict[str, Any]]) -> None:
        for start in range(0, len(records), RECORDS_PER_FRAME):
            try:
                payload = pickle.dumps(records[start:start + RECORDS_PER_FRAME], protocol=5)
            except Exception as exc:  # a value no record can hold (sealing would refuse it too)
                raise CommitterRefused(f"{type(exc).__name__}: {exc}") from exc
            try:
                # sendall: one sendmsg writes only what the socket's buffer takes at once (a few hundred KB)
                self._sock.sendall(HEADER.pack(len(payload)) + payload)
                answer = _read_frame(self._sock)
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
            payload = pickle.dumps(records, protocol=5)
        except Exception as exc:  # a value no record can hold (sealing would refuse it too)
            self.loop.call_soon(answered, CommitterRefused(f"{type(exc).__name__}: {exc}"))
            return
        self._answered = answered
        self._timer = self.loop.call_later(ANSWER_SECONDS, self._lost, "no answer within the time allowed")
        self._transport.write(HEADER.pack(len(payload)) + payload)

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


def _valid_batch(value: Any) -> bool:
    return isinstance(value, list) and 0 < len(value) <= RECORDS_PER_FRAME and all(type(r) is dict for r in value)


class CommitterService:
    """The committer process's loop: whatever batches have arrived from any server process, committed in one
    transaction, and each sender answered with the outcome."""

    def __init__(self, trail: AuditTrail, listener: socket.socket) -> None:
        self._trail, self._listener = trail, listener
        self._selector = selectors.DefaultSelector()
        self._selector.register(listener, selectors.EVENT_READ)
        self._uid = os.getuid()
        self.stopping = False

    def _accept(self) -> None:
        conn, _ = self._listener.accept()
        credentials = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        _pid, uid, _gid = struct.unpack("3i", credentials)
        if uid != self._uid:
            log.warning("refused a connection to the audit committer from user id %d", uid)
            conn.close()
            return
        conn.settimeout(FRAME_SECONDS)  # a peer that stops mid-frame is dropped, not waited for
        self._selector.register(conn, selectors.EVENT_READ)

    def _drop(self, conn: socket.socket) -> None:
        self._selector.unregister(conn)
        conn.close()

    def _receive(self, conn: socket.socket) -> list[dict[str, Any]] | None:
        """One batch from ``conn``; None (and the connection closed) at its end or on a frame that breaks the
        protocol. A server process writes each frame whole, so reading the rest of it does not wait on anyone."""
        try:
            frame = _read_frame(conn)
            batch = pickle.loads(frame) if frame else None
        except Exception as exc:  # too large, not a pickle, a reset connection
            log.error("dropped a connection to the audit committer: %s", type(exc).__name__)
            batch, frame = None, None
        if frame is not None and not _valid_batch(batch):
            log.error("dropped a connection to the audit committer: a frame that is not a batch of records")
            frame = None
        if frame is None:
            self._drop(conn)
            return None
        return batch

    def serve_once(self, timeout: float) -> int:
        """Waits up to ``timeout`` seconds for batches, commits what arrived; returns how many records."""
        senders: list[socket.socket] = []
        records: list[dict[str, Any]] = []
        ready = self._selector.select(timeout)
        if len(ready) > FRAMES_PER_COMMIT:
            random.shuffle(ready)  # no server process waits behind the same others every time
        for key, _ in ready:
            sock = key.fileobj
            if sock is self._listener:
                self._accept()
                continue
            if len(senders) == FRAMES_PER_COMMIT:
                continue  # still readable: the next call takes it
            assert isinstance(sock, socket.socket)
            batch = self._receive(sock)
            if batch is not None:
                senders.append(sock)
                records.extend(batch)
        if not records:
            return 0
        error = self._trail.commit_records(records)
        answer = b"" if error is None else f"{type(error).__name__}: {error}".encode()[:4096]
        frame = HEADER.pack(len(answer)) + answer
        for sock in senders:
            try:
                sock.sendall(frame)
            except OSError:  # that server process is gone; its calls were never answered
                self._drop(sock)
        return len(records)

    def run(self) -> None:
        while not self.stopping:
            self.serve_once(0.5)
        for key in list(self._selector.get_map().values()):
            key.fileobj.close()  # type: ignore[union-attr]
        self._selector.close()


def build_committer_trail(settings: Settings, row_key: bytes) -> tuple[AuditTrail, Callable[[], None]]:
    """The committer process's half of a runtime: the ledger under the row key `serve` handed over, and the audit
    trail that seals, indexes and commits records; and how to close them. The schema is the server's: it was made
    before this process was given its settings."""
    ledger = build_ledger(settings)
    ledger.authenticate_with(row_key)
    datastore = ledger.recorder.datastore  # type: ignore[attr-defined]
    uow = SqlUnitOfWork(datastore, ledger.recorder.events_record_cls.__table__,  # type: ignore[attr-defined]
                        gate=writer_gate_for(datastore.engine))
    trail = AuditTrail(ledger, uow, DatabaseClock(uow), max_batch=settings.audit_group_commit_max,
                       index=SqlAuditIndex(uow))

    def close() -> None:
        ledger.close()
        datastore.engine.dispose()

    return trail, close


def _die_with_parent() -> None:
    """SIGTERM when the process that started us ends (Linux), and end now if it already has."""
    parent = os.getppid()
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent:
        sys.exit(0)


def main() -> None:
    _die_with_parent()
    try:  # from the process that started us, through a pipe only it holds, once it has opened the database
        config = pickle.load(sys.stdin.buffer)
    except EOFError:  # it stopped before that (a sealed service, a failed start)
        return
    settings: Settings = config["settings"]
    logging.basicConfig(level=settings.log_level.upper(), format="%(levelname)s:     %(name)s: %(message)s")
    trail, close = build_committer_trail(settings, config["row_key"])
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(config["address"])
    listener.listen(64)
    service = CommitterService(trail, listener)

    def stop(*_: Any) -> None:
        service.stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group: `serve` stops us in order
    sys.stdout.buffer.write(READY)
    sys.stdout.buffer.flush()
    try:
        service.run()
    finally:
        close()


if __name__ == "__main__":
    main()
