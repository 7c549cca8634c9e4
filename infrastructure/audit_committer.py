"""The audit committer process (decision 264): seals and commits the audit records of every server process.

`keyledger serve` starts it before it serves (``CommitterProcess.start``). Each server process's committer
thread then hands it whole batches through a Unix socket (``CommitterClient``) and waits for the answer, so the
work of a batch (sealing the chain, spelling the JSON, compressing, inserting, indexing, committing) runs on
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
import secrets
import select
import selectors
import signal
import socket
import struct
import subprocess
import sys
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from application.audit.trail import AuditTrail, CommitterGone, CommitterRefused
from infrastructure.settings import Settings

if TYPE_CHECKING:
    from infrastructure.runtime import Runtime

HEADER = struct.Struct("!I")
MAX_FRAME = 64 * 1024 * 1024  # 1,024 records at their 16 KiB bound, pickled, with room to spare
RECORDS_PER_FRAME = 1024  # a larger batch (KEYLEDGER_AUDIT_GROUP_COMMIT_MAX) goes in several frames
READY = b"ready\n"
FRAME_SECONDS = 5.0
# How long a server process waits for a batch's answer before it takes the committer for gone. A commit waits
# at most the database's lock timeouts; this is far above them, and only a hung process reaches it.
ANSWER_SECONDS = 120.0
START_SECONDS = 60.0
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
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.settimeout(ANSWER_SECONDS)
        try:
            self._sock.connect(address)
        except OSError:
            self._sock.close()
            raise

    def commit(self, records: list[dict[str, Any]]) -> None:
        for start in range(0, len(records), RECORDS_PER_FRAME):
            payload = pickle.dumps(records[start:start + RECORDS_PER_FRAME], protocol=5)
            try:
                self._sock.sendmsg([HEADER.pack(len(payload)), payload])
                answer = _read_frame(self._sock)
            except (OSError, ValueError) as exc:
                raise CommitterGone(f"{type(exc).__name__}: {exc}") from exc
            if answer is None:
                raise CommitterGone("the committer process closed the connection")
            if answer:
                raise CommitterRefused(answer.decode("utf-8", "replace"))

    def close(self) -> None:
        self._sock.close()


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
        senders: list[tuple[socket.socket, int]] = []
        records: list[dict[str, Any]] = []
        for key, _ in self._selector.select(timeout):
            sock = key.fileobj
            if sock is self._listener:
                self._accept()
                continue
            assert isinstance(sock, socket.socket)
            batch = self._receive(sock)
            if batch is not None:
                senders.append((sock, len(batch)))
                records.extend(batch)
        if not records:
            return 0
        error = self._trail.commit_records(records)
        answer = b"" if error is None else f"{type(error).__name__}: {error}".encode()[:4096]
        frame = HEADER.pack(len(answer)) + answer
        for sock, _ in senders:
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


class CommitterProcess:
    """The committer process as seen by `keyledger serve`, which starts and stops it."""

    def __init__(self, process: subprocess.Popen[bytes], address: bytes) -> None:
        self.process, self.address = process, address

    @classmethod
    def start(cls, settings: Settings, row_key: bytes, timeout: float = START_SECONDS) -> CommitterProcess:
        """Starts the process and waits until it listens. The row key reaches it through its standard input
        (a pipe), never its arguments or environment; nothing secret it does not need goes with the settings."""
        address = b"\0keyledger-audit-" + secrets.token_hex(16).encode()
        process = subprocess.Popen([sys.executable, "-m", "infrastructure.audit_committer"],
                                   stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        assert process.stdin is not None and process.stdout is not None
        needed = replace(settings, admin_access_key_id=None, admin_secret_access_key=None, root_key=None,
                         pkcs11_pin=None)
        try:
            process.stdin.write(pickle.dumps({"settings": needed, "row_key": row_key, "address": address,
                                              "parent": os.getpid()}))
            process.stdin.close()
            ready, _, _ = select.select([process.stdout], [], [], timeout)
            line = process.stdout.readline() if ready else b""
        except BaseException:
            process.kill()
            process.wait()
            raise
        if line != READY:
            process.kill()
            process.wait()
            raise RuntimeError(f"the audit committer process did not start (exit code {process.poll()})")
        return cls(process, address)

    def client(self) -> CommitterClient:
        return CommitterClient(self.address)

    def stop(self, timeout: float = 10.0) -> None:
        """After every server process stopped handing it batches: it finishes the one under way and ends."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


ADDRESS_VARIABLE = "KEYLEDGER_INTERNAL_AUDIT_COMMITTER"  # how `serve` tells its worker processes where it listens


def start_audit_committer(runtime: Runtime) -> CommitterProcess | None:
    """`keyledger serve`, before it serves: the committer process for every server process it will start, the
    one it runs itself handed to it. None (records commit in each server process, as with
    KEYLEDGER_AUDIT_COMMITTER=thread) on a sealed service, or if the process could not start (logged)."""
    if runtime.settings.audit_committer != "process" or runtime.services is None:
        return None
    row_key = runtime.ledger.mapper.row_key  # type: ignore[attr-defined]
    try:
        committer = CommitterProcess.start(runtime.settings, row_key)
        if runtime.settings.workers == 1:
            runtime.audit.hand_batches_to(committer.client())
            runtime.audit_committer = committer
    except (OSError, RuntimeError) as exc:
        log.error("the audit committer process did not start (%s); each server process commits its own records",
                  exc)
        return None
    os.environ[ADDRESS_VARIABLE] = committer.address[1:].decode()
    return committer


def connect_audit_committer(runtime: Runtime) -> None:
    """A worker process (``KEYLEDGER_WORKERS`` > 1): hands its batches to the committer `serve` started."""
    name = os.environ.get(ADDRESS_VARIABLE)
    if not name or runtime.services is None:
        return
    try:
        runtime.audit.hand_batches_to(CommitterClient(b"\0" + name.encode()))
    except OSError as exc:
        log.error("could not reach the audit committer process (%s); this process commits its own records", exc)


def _die_with_parent(parent: int) -> None:
    """SIGTERM when the process that started us ends (Linux), and end now if it already has."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent:
        sys.exit(0)


def main() -> None:
    from infrastructure.bootstrap import build_committer_trail

    config = pickle.load(sys.stdin.buffer)  # from the process that started us, through a pipe only it holds
    _die_with_parent(config["parent"])
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
