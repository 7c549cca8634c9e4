"""A KMS call's HTTP exchange (api/http_protocol.py: KmsExchange), against a real `keyledger serve` over raw sockets.

``POST /`` is answered by the connection's protocol calling the endpoint directly and writing the answer in one
write; every other request (a query string, another path or method) goes through uvicorn's ASGI cycle. What a client
sees must be the same either way: the same status line, the same headers in the same order, the same body, and the
same HTTP behaviour (keep-alive, pipelining, ``Expect: 100-continue``, HTTP/1.0, ``Connection: close``, a client
that leaves mid-body, a refused body)."""
from __future__ import annotations

import base64
import json
import socket
import time
from urllib.parse import urlparse

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from tests.servers import ADMIN_KEY_ID, ADMIN_SECRET

VARYING = {"x-amzn-requestid", "date"}  # differ from one answer to the next whichever way it is written


def signed(server, operation: str, document: dict, *, path: str = "/", version: str = "HTTP/1.1",
           extra: tuple[str, ...] = ()) -> bytes:
    """The whole request, SigV4-signed over ``path`` (a query string included) and the body."""
    body = json.dumps(document).encode()
    host = urlparse(server.endpoint).netloc
    request = AWSRequest(method="POST", url=server.endpoint + path, data=body, headers={
        "Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": f"TrentService.{operation}"})
    SigV4Auth(Credentials(ADMIN_KEY_ID, ADMIN_SECRET), "kms", "us-east-1").add_auth(request)
    head = [f"POST {path} {version}", f"Host: {host}", f"Content-Length: {len(body)}", *extra]
    head += [f"{k}: {v}" for k, v in request.headers.items() if k.lower() not in ("host", "content-length")]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


class Connection:
    def __init__(self, server) -> None:
        self.sock = socket.create_connection(("127.0.0.1", server.port), timeout=15)
        self.buffer = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self) -> bool:
        chunk = self.sock.recv(65536)
        self.buffer += chunk
        return bool(chunk)

    def answer(self) -> tuple[bytes, list[tuple[bytes, bytes]], bytes]:
        """(status line, headers in order with lower-case names, body) of the next answer."""
        while b"\r\n\r\n" not in self.buffer:
            assert self._fill(), f"closed before an answer: {self.buffer!r}"
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        status, *lines = head.split(b"\r\n")
        headers = [(name.lower(), value.strip()) for name, value in (line.split(b":", 1) for line in lines)]
        length = int(dict(headers).get(b"content-length", b"0"))
        while len(self.buffer) < length:
            assert self._fill(), "closed mid-body"
        body, self.buffer = self.buffer[:length], self.buffer[length:]
        return status, headers, body

    def closed(self) -> bool:
        """Whether the server closed the connection (nothing more arrives)."""
        self.sock.settimeout(5)
        try:
            return not self._fill()
        except ConnectionResetError:
            return True

    def close(self) -> None:
        self.sock.close()


def exchange(server, request: bytes) -> tuple[bytes, list[tuple[bytes, bytes]], bytes]:
    connection = Connection(server)
    try:
        connection.send(request)
        return connection.answer()
    finally:
        connection.close()


def comparable(answer: tuple[bytes, list[tuple[bytes, bytes]], bytes]) -> tuple[bytes, list, bytes]:
    status, headers, body = answer
    return status, [(n, b"..." if n.decode() in VARYING else v) for n, v in headers], body


@pytest.fixture(scope="module")
def key(shared_server) -> str:
    return shared_server.client().create_key()["KeyMetadata"]["KeyId"]


@pytest.mark.parametrize("operation, document", [
    ("DescribeKey", {"KeyId": "{key}"}),  # a success
    ("DescribeKey", {"KeyId": "alias/none-such"}),  # a 400 in AWS's shape
    ("Encrypt", {"KeyId": "{key}", "Plaintext": "not base64!"}),  # refused by the wire model
    ("NoSuchOperation", {}),
], ids=["ok", "not-found", "validation", "unknown-operation"])
def test_the_answer_is_the_one_the_asgi_path_writes(shared_server, key, operation, document) -> None:
    document = json.loads(json.dumps(document).replace("{key}", key))
    direct = exchange(shared_server, signed(shared_server, operation, document))
    # A query string takes uvicorn's ASGI cycle to the same endpoint (and the signature covers it).
    through_asgi = exchange(shared_server, signed(shared_server, operation, document, path="/?via=asgi"))
    assert comparable(direct) == comparable(through_asgi)
    assert [n for n, _ in direct[1]] == [b"date", b"server", b"x-amzn-requestid", b"content-length",
                                          b"content-type"]


def test_keep_alive_and_pipelined_calls_are_answered_in_order(shared_server, key) -> None:
    connection = Connection(shared_server)
    try:
        requests = [signed(shared_server, "Encrypt", {"KeyId": key, "Plaintext": "AAEC" * (i + 1)}) for i in range(3)]
        connection.send(b"".join(requests))  # three calls in one write: answered one after the other
        sizes = []
        for _ in requests:
            status, _, body = connection.answer()
            assert status == b"HTTP/1.1 200 OK", body
            sizes.append(len(json.loads(body)["CiphertextBlob"]))
        assert sizes == sorted(sizes) and len(set(sizes)) == 3  # in the order sent
        connection.send(signed(shared_server, "DescribeKey", {"KeyId": key}))  # the connection goes on
        assert connection.answer()[0] == b"HTTP/1.1 200 OK"
    finally:
        connection.close()


def test_expect_100_continue_is_honoured(shared_server, key) -> None:
    request = signed(shared_server, "DescribeKey", {"KeyId": key}, extra=("Expect: 100-continue",))
    head, body = request.split(b"\r\n\r\n", 1)
    connection = Connection(shared_server)
    try:
        connection.send(head + b"\r\n\r\n")
        assert connection.answer()[0] == b"HTTP/1.1 100 Continue"  # asked for once the body is read
        connection.send(body)
        assert connection.answer()[0] == b"HTTP/1.1 200 OK"
    finally:
        connection.close()


@pytest.mark.parametrize("version, extra", [("HTTP/1.0", ()), ("HTTP/1.1", ("Connection: close",))],
                         ids=["http-1.0", "connection-close"])
def test_a_call_that_ends_its_connection_is_answered_then_closed(shared_server, key, version, extra) -> None:
    connection = Connection(shared_server)
    try:
        connection.send(signed(shared_server, "DescribeKey", {"KeyId": key}, version=version, extra=extra))
        status, headers, _ = connection.answer()
        assert status == b"HTTP/1.1 200 OK" and (b"connection", b"close") in headers
        assert connection.closed()
    finally:
        connection.close()


def test_a_refused_body_closes_the_connection(shared_server, key) -> None:
    request = signed(shared_server, "Encrypt", {"KeyId": key, "Plaintext": "AAAA"})
    head, _ = request.split(b"\r\n\r\n", 1)
    head = head.replace(b"Content-Length: ", b"X-Was: ")  # a body far above the bound, announced
    connection = Connection(shared_server)
    try:
        connection.send(head + b"\r\nContent-Length: 100000000\r\n\r\n" + b" " * 1024)
        status, headers, body = connection.answer()
        assert status.startswith(b"HTTP/1.1 413") and (b"connection", b"close") in headers, body
        assert connection.closed()
    finally:
        connection.close()


def test_a_body_sent_in_pieces_is_read_whole_and_answered_as_one_sent_at_once(shared_server, key) -> None:
    """The exchange waits for the rest of a body (its receive), and joins the pieces it got in the order they came."""
    plaintext = bytes(range(256)) * 12
    request = signed(shared_server, "Encrypt", {"KeyId": key, "Plaintext": base64.b64encode(plaintext).decode(),
                                                "EncryptionContext": {"piece": "wise"}})
    head, body = request.split(b"\r\n\r\n", 1)
    connection = Connection(shared_server)
    try:
        connection.send(head + b"\r\n\r\n")
        for start in range(0, len(body), 1000):  # the head alone, then the body a thousand bytes at a time
            time.sleep(0.05)
            connection.send(body[start:start + 1000])
        status, _, answer = connection.answer()
        assert status == b"HTTP/1.1 200 OK", answer
        blob = json.loads(answer)["CiphertextBlob"]
        decrypted = shared_server.client().decrypt(CiphertextBlob=base64.b64decode(blob),
                                                   EncryptionContext={"piece": "wise"})
        assert decrypted["Plaintext"] == plaintext
        connection.send(signed(shared_server, "DescribeKey", {"KeyId": key}))  # and the connection goes on
        assert connection.answer()[0] == b"HTTP/1.1 200 OK"
    finally:
        connection.close()


def test_a_client_that_leaves_mid_body_gets_nothing_and_the_server_goes_on(shared_server, key) -> None:
    request = signed(shared_server, "Encrypt", {"KeyId": key, "Plaintext": "AAAA" * 1000})
    connection = Connection(shared_server)
    connection.send(request[:len(request) - 100])
    time.sleep(0.2)
    connection.close()
    assert exchange(shared_server, signed(shared_server, "DescribeKey", {"KeyId": key}))[0] == b"HTTP/1.1 200 OK"


def test_with_an_access_log_every_call_is_logged_and_answered_the_same(tmp_path) -> None:
    """`--access-log`: uvicorn logs each request in its ASGI cycle, so KMS calls take that cycle, answered alike."""
    from tests.servers import Server

    server = Server(data_dir=tmp_path / "data", args=("--access-log",), env={"KEYLEDGER_LOG_LEVEL": "info"}).start()
    try:
        key = server.client().create_key()["KeyMetadata"]["KeyId"]
        status, headers, body = exchange(server, signed(server, "DescribeKey", {"KeyId": key}))
        assert status == b"HTTP/1.1 200 OK" and json.loads(body)["KeyMetadata"]["KeyId"] == key
        assert [n for n, _ in headers] == [b"date", b"server", b"x-amzn-requestid", b"content-length", b"content-type"]
    finally:
        server.stop()
    assert server.log().count('"POST / HTTP/1.1" 200') == 2  # CreateKey and DescribeKey
