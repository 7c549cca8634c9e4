"""A raw HTTP/1.1 client for hostile requests: it sends exactly the header bytes it is given (duplicates,
any case, megabytes, thousands of lines) and tells a server's answer from a reset, a silent close or a hang.

httpx and http.client normalise headers and hide a reset behind a retry or an exception without the answer
that may already have arrived. Here the request goes out in pieces, and before each piece the socket is
checked for an answer: a server that refuses an oversized request early (431, 413) and closes is heard, and
the rest of the request is not pushed into a closed connection. What a server must never do (reset or close
without an answer, or never answer) comes back as a ``failure``.
"""
from __future__ import annotations

import errno
import json
import select
import socket
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

PIECE = 64 * 1024
MAX_ANSWER_BYTES = 16 * 1024 * 1024  # our answers are small; a runaway one is a failure, not a hang
RESET_ERRORS = (ConnectionResetError, BrokenPipeError, ConnectionAbortedError)


@dataclass(frozen=True)
class StreamedBody:
    """``length`` bytes of ``filler`` repeated, produced while sending (a 200 MiB body is never held whole);
    ``chunked`` sends it with ``Transfer-Encoding: chunked`` instead of a Content-Length."""
    length: int
    filler: bytes = b" "
    chunked: bool = False

    def pieces(self) -> Iterator[bytes]:
        block = (self.filler * (PIECE // len(self.filler) + 1))[:PIECE]
        left = self.length
        while left > 0:
            piece = block[:min(left, PIECE)]
            left -= len(piece)
            yield (b"%x\r\n" % len(piece) + piece + b"\r\n") if self.chunked else piece
        if self.chunked:
            yield b"0\r\n\r\n"


@dataclass
class Answer:
    """What came back for one request. ``failure`` is None when a whole HTTP response was read."""
    status: int | None = None
    headers: dict[str, str] = field(default_factory=dict)  # lower-case names; a repeated name keeps the last
    body: bytes = b""
    failure: str | None = None  # "reset", "eof" (closed without an answer), "timeout", "malformed", "aborted"
    detail: str = ""
    sent: int = 0  # request bytes written
    complete: bool = False  # the whole request was written
    sending_stopped: str | None = None  # why sending stopped early: "answered", "reset", "timeout", "aborted"

    def document(self) -> Any:
        """The body as JSON, or None when it is not JSON."""
        try:
            return json.loads(self.body)
        except ValueError:
            return None

    def summary(self) -> str:
        if self.failure:
            return f"{self.failure} after {self.sent} bytes sent ({self.detail})"
        return f"{self.status} {self.body[:300]!r}"


def request_head(method: bytes, path: bytes, headers: list[tuple[bytes, bytes]]) -> bytes:
    lines = [method + b" " + path + b" HTTP/1.1"] + [name + b": " + value for name, value in headers]
    return b"\r\n".join(lines) + b"\r\n\r\n"


class Connection:
    """One keep-alive connection, reopened when the server closed it. Not thread-safe: one per worker."""

    def __init__(self, host: str, port: int, timeout: float = 60.0) -> None:
        self.host, self.port, self.timeout = host, port, timeout
        self._sock: socket.socket | None = None

    def close(self) -> None:
        if self._sock is not None:
            try:
                self._sock.close()
            finally:
                self._sock = None

    def abort(self) -> None:
        """From another thread: ends a wait in progress on this connection (it then reports a failure)."""
        sock = self._sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def exchange(self, head: bytes, body: bytes | StreamedBody = b"",
                 progress: Callable[[int], bool] | None = None) -> Answer:
        """Sends ``head`` (from request_head, framing headers included) and ``body``; reads the answer.
        ``progress(bytes_sent)`` is asked between pieces; False stops sending ("aborted")."""
        return self.finish(self.start(head, body, progress))

    def start(self, head: bytes, body: bytes | StreamedBody = b"",
              progress: Callable[[int], bool] | None = None) -> Answer:
        """Sends the request and returns without waiting for the answer (``finish`` reads it), so that a test
        can do something else while the server works on it."""
        sock = self._open()
        pieces: Iterator[bytes] = iter([head + body]) if isinstance(body, bytes) else _chain(head, body.pieces())
        answer = Answer()
        answer.sending_stopped = self._transmit(sock, pieces, answer, progress)
        return answer

    def finish(self, answer: Answer) -> Answer:
        stopped = answer.sending_stopped
        if stopped in ("timeout", "aborted"):
            answer.failure, answer.detail = stopped, "while sending the request"
            self.close()
            return answer
        assert self._sock is not None
        self._read(self._sock, answer)
        if stopped == "reset" and answer.failure:
            answer.detail = "the connection was reset while the request was being sent; " + answer.detail
        keep = (answer.failure is None and answer.complete
                and answer.headers.get("connection", "").lower() != "close")
        if not keep:
            self.close()
        return answer

    # -- internals -----------------------------------------------------------------------------------------
    def _open(self) -> socket.socket:
        if self._sock is not None and not _still_open(self._sock):
            self.close()  # the server closed an idle keep-alive connection: not this request's business
        if self._sock is None:
            sock = socket.create_connection((self.host, self.port), timeout=self.timeout)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._sock = sock
        return self._sock

    def _transmit(self, sock: socket.socket, pieces: Iterator[bytes], answer: Answer,
                  progress: Callable[[int], bool] | None) -> str | None:
        for piece in pieces:
            view, offset = memoryview(piece), 0
            while offset < len(view):
                readable, writable, _ = select.select([sock], [sock], [], self.timeout)
                if readable:
                    return "answered"  # the server spoke (or closed) before taking the whole request
                if not writable:
                    return "timeout"
                try:
                    written = sock.send(view[offset:offset + PIECE])
                except RESET_ERRORS:
                    return "reset"
                except OSError as error:
                    if error.errno in (errno.EPIPE, errno.ECONNRESET):
                        return "reset"
                    raise
                offset += written
                answer.sent += written
                if progress is not None and not progress(answer.sent):
                    return "aborted"
        answer.complete = True
        return None

    def _read(self, sock: socket.socket, answer: Answer) -> None:
        buffer = bytearray()
        try:
            sock.settimeout(self.timeout)
            while True:
                end = buffer.find(b"\r\n\r\n")
                if end < 0:
                    if not _receive(sock, buffer):
                        answer.failure = "eof" if not buffer else "malformed"
                        answer.detail = "closed before a whole status line and headers arrived"
                        return
                    continue
                status, headers = _parse_head(bytes(buffer[:end]))
                del buffer[:end + 4]
                if 100 <= status < 200:
                    continue  # 100 Continue and friends: the answer follows
                answer.status, answer.headers = status, headers
                break
            answer.body = _read_body(sock, buffer, answer.headers)
        except socket.timeout:
            answer.failure, answer.detail = "timeout", f"no whole answer within {self.timeout} s"
        except RESET_ERRORS as error:
            answer.failure, answer.detail = "reset", f"while reading the answer: {error!r}"
        except _Malformed as error:
            answer.failure, answer.detail = "malformed", str(error)


class _Malformed(Exception):
    pass


def _chain(head: bytes, rest: Iterator[bytes]) -> Iterator[bytes]:
    yield head
    yield from rest


def _still_open(sock: socket.socket) -> bool:
    readable, _, _ = select.select([sock], [], [], 0)
    if not readable:
        return True
    try:
        return sock.recv(1, socket.MSG_PEEK) != b""  # unexpected bytes: not ours to read, but open
    except OSError:
        return False


def _receive(sock: socket.socket, buffer: bytearray) -> bool:
    chunk = sock.recv(PIECE)
    if not chunk:
        return False
    buffer += chunk
    if len(buffer) > MAX_ANSWER_BYTES:
        raise _Malformed(f"answer larger than {MAX_ANSWER_BYTES} bytes")
    return True


def _parse_head(head: bytes) -> tuple[int, dict[str, str]]:
    lines = head.split(b"\r\n")
    parts = lines[0].split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
        raise _Malformed(f"bad status line {lines[0][:100]!r}")
    headers = {}
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        if not sep:
            raise _Malformed(f"bad header line {line[:100]!r}")
        headers[name.strip().lower().decode("latin-1")] = value.strip().decode("latin-1")
    return int(parts[1]), headers


def _read_body(sock: socket.socket, buffer: bytearray, headers: dict[str, str]) -> bytes:
    if "chunked" in headers.get("transfer-encoding", "").lower():
        out = bytearray()
        while True:
            while b"\r\n" not in buffer:
                if not _receive(sock, buffer):
                    raise _Malformed("closed inside a chunked answer")
            line, _, rest = bytes(buffer).partition(b"\r\n")
            size = int(line.split(b";")[0].strip() or b"0", 16)
            buffer[:] = rest
            while len(buffer) < size + 2:
                if not _receive(sock, buffer):
                    raise _Malformed("closed inside a chunk")
            out += buffer[:size]
            del buffer[:size + 2]
            if size == 0:
                return bytes(out)
    if "content-length" in headers:
        length = int(headers["content-length"])
        while len(buffer) < length:
            if not _receive(sock, buffer):
                raise _Malformed(f"closed after {len(buffer)} of {length} body bytes")
        return bytes(buffer[:length])
    while _receive(sock, buffer):  # no length: the body runs to the close
        pass
    return bytes(buffer)
