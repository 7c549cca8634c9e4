"""The audit committer process (decision 264): seals and commits the audit records of every server process.

`keyledger serve` starts it before it serves (infrastructure/audit_committer_launch.py). Each server process's
event loop then hands it whole batches through a Unix socket (infrastructure/audit_committer_connections.py) and
waits for the answer, so the work of a batch (sealing the chain, spelling the JSON, compressing, inserting, indexing, committing) runs on
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
import time
from typing import Any, Callable

from application.audit.trail import AuditTrail
from infrastructure.audit_appends import DriverRecordAppends
from infrastructure.audit_committer_connections import HEADER, RECORDS_PER_FRAME, read_frame
from infrastructure.audit_committer_launch import READY
from infrastructure.clock import DatabaseClock
from infrastructure.long_lived_heap import freeze_start_up_heap
from infrastructure.persistence import build_ledger
from infrastructure.settings import Settings
from infrastructure.storage import SqlUnitOfWork, writer_gate_for
from projections.audit_index import SqlAuditIndex

FRAME_SECONDS = 5.0
GATHER_SECONDS = 0.002  # the most a transaction waits for the batch of a process that sent in the last one
FRAMES_PER_COMMIT = 8  # batches committed in one transaction at most: what it holds at once is bounded too
log = logging.getLogger("keyledger.audit")


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
        self.gather_seconds = GATHER_SECONDS
        self._recent: list[socket.socket] = []  # the connections whose batches the last transaction held
        self._last_wall = 0.0  # how long the last transaction took

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
            frame = read_frame(conn)
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

    def _gather(self, ready: list[Any], senders: list[socket.socket], records: list[dict[str, Any]]) -> None:
        if len(ready) > FRAMES_PER_COMMIT:
            random.shuffle(ready)  # no server process waits behind the same others every time
        for key, _ in ready:
            sock = key.fileobj
            if sock is self._listener:
                self._accept()
                continue
            if len(senders) == FRAMES_PER_COMMIT or sock in senders:
                continue  # still readable: the next transaction takes it
            assert isinstance(sock, socket.socket)
            batch = self._receive(sock)
            if batch is not None:
                senders.append(sock)
                records.extend(batch)

    def serve_once(self, timeout: float) -> int:
        """Waits up to ``timeout`` seconds for batches, commits what arrived; returns how many records.

        Each server process has one batch in flight, sent the moment its last one was answered. With several
        processes, one's batch would otherwise be committed alone while another's arrives a moment later, and the
        transactions alternate between them, one each. So when a process whose batch the last transaction held has
        not sent yet, the committer waits for it, at most the last transaction's wall time (and ``GATHER_SECONDS``):
        the transactions then hold every busy process's batch. One busy process never waits (decision 271)."""
        senders: list[socket.socket] = []
        records: list[dict[str, Any]] = []
        self._gather(self._selector.select(timeout), senders, records)
        if not records:
            return 0
        expected = [sock for sock in self._recent if sock not in senders and sock.fileno() != -1]
        if expected and self.gather_seconds > 0:
            deadline = time.monotonic() + min(self.gather_seconds, self._last_wall)
            while len(senders) < FRAMES_PER_COMMIT and any(sock not in senders for sock in expected):
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._gather(self._selector.select(left), senders, records)
        started = time.monotonic()
        error = self._trail.commit_records(records)
        self._last_wall = time.monotonic() - started
        self._recent = senders
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
    events, gate = ledger.recorder.events_record_cls.__table__, writer_gate_for(datastore.engine)  # type: ignore[attr-defined]
    uow = SqlUnitOfWork(datastore, events, gate=gate)
    appends = DriverRecordAppends.for_engine(datastore.engine, events, gate, ledger.recorder.channel_name)  # type: ignore[attr-defined]
    trail = AuditTrail(ledger, uow, DatabaseClock(uow), max_batch=settings.audit_group_commit_max,
                       index=SqlAuditIndex(uow), appends=appends)

    def close() -> None:
        if appends is not None:
            appends.close()
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
    freeze_start_up_heap()
    sys.stdout.buffer.write(READY)
    sys.stdout.buffer.flush()
    try:
        service.run()
    finally:
        close()


if __name__ == "__main__":
    main()
