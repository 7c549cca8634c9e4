"""The XKS proxy client (infrastructure/xks_proxy_client.py) against real sockets on 127.0.0.1: how each failure is
told apart (no listener, a certificate not trusted, a proxy that accepts and never answers, junk, a refusal in the
specification's shape), that every call ends within the configured time, and what a request carries (SigV4 for
kms-xks-proxy, the port setting, the path)."""
from __future__ import annotations

import json
import socket
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Iterator

import pytest

from application.keystores.ports import XksConnection, XksProxyFailure
from infrastructure.xks_proxy_client import HttpXksProxyClient
from tests.certificates import TlsFiles, self_signed

TIMEOUT = 0.5
SECRET = "S" * 44


class Answers(BaseHTTPRequestHandler):
    answers: dict[str, tuple[int, bytes]] = {}
    seen: list[tuple[str, dict[str, str], bytes]] = []

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.seen.append((self.path, dict(self.headers), body))
        status, payload = self.answers.get(self.path, (200, b'{"ok": true}'))
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return self_signed(tmp_path_factory.mktemp("xks-client"))


@pytest.fixture(scope="module")
def proxy(tls: TlsFiles) -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Answers)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(tls.cert), str(tls.key))
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()


def connection(path: str = "/p/kms/xks/v1") -> XksConnection:
    return XksConnection("https://127.0.0.1", path, "ABCDEFGHIJKLMNOPQRSTUVWX", SECRET, "eu-west-1")


def failure(client: HttpXksProxyClient, path: str = "/health") -> tuple[XksProxyFailure, float]:
    started = time.monotonic()
    with pytest.raises(XksProxyFailure) as failed:
        client.post(connection(), path, {"requestMetadata": {}})
    return failed.value, time.monotonic() - started


def test_answers_refusals_junk_and_what_a_request_carries(proxy: int, tls: TlsFiles) -> None:
    client = HttpXksProxyClient(TIMEOUT, proxy, tls.cert)
    try:
        Answers.answers = {"/p/kms/xks/v1/health": (200, b'{"xksProxyFleetSize": 1}'),
                           "/p/kms/xks/v1/refused": (403, b'{"errorName": "AccessDeniedException", "errorMessage": "no"}'),
                           "/p/kms/xks/v1/junk": (200, b"<html>"), "/p/kms/xks/v1/bare": (500, b"{}")}
        assert client.post(connection(), "/health", {"requestMetadata": {"kmsOperation": "KmsHealthCheck"}}) == {
            "xksProxyFleetSize": 1}
        path, headers, body = Answers.seen[-1]
        assert path == "/p/kms/xks/v1/health" and json.loads(body)["requestMetadata"]["kmsOperation"] == "KmsHealthCheck"
        authorization = headers["Authorization"]
        assert "/eu-west-1/kms-xks-proxy/aws4_request" in authorization and "ABCDEFGHIJKLMNOPQRSTUVWX/" in authorization
        assert SECRET not in json.dumps(headers)
        refused, _ = failure(client, "/refused")
        assert (refused.kind, refused.error_name) == ("refused", "AccessDeniedException")
        assert failure(client, "/junk")[0].kind == "malformed" and failure(client, "/bare")[0].kind == "malformed"
    finally:
        client.close()


def test_every_failure_ends_within_the_configured_time(proxy: int, tls: TlsFiles, tmp_path: Path) -> None:
    other = self_signed(tmp_path / "other")  # a certificate the client does not trust
    untrusting = HttpXksProxyClient(TIMEOUT, proxy, other.cert)
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        closed_port = unused.getsockname()[1]
    nobody = HttpXksProxyClient(TIMEOUT, closed_port, tls.cert)
    silent = socket.socket()  # accepts connections (the kernel's backlog) and never says a word
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    hanging = HttpXksProxyClient(TIMEOUT, silent.getsockname()[1], tls.cert)
    try:
        tls_failure, _ = failure(untrusting)
        assert tls_failure.kind == "tls"
        unreachable, _ = failure(nobody)
        assert unreachable.kind == "unreachable"  # refused at once, not waited out
        for _ in range(2):  # a silent peer ends in the client's own timeout, every time (how fast: make bench)
            timed_out, _ = failure(hanging)
            assert timed_out.kind == "timeout"
    finally:
        for client in (untrusting, nobody, hanging):
            client.close()
        silent.close()
