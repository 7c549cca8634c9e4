"""Calls to XKS proxies (application/keystores/ports.py: XksProxyClient): HTTPS POSTs of JSON, signed with SigV4 as
AWS KMS signs them (botocore's SigV4Auth, service ``kms-xks-proxy``, the store's region), over pooled keep-alive
connections (httpx), TLS 1.2 or later, verified against the system's CAs or ``KEYLEDGER_XKS_PROXY_CA_BUNDLE``.

Every call is bounded: it runs in a small pool of worker threads and the caller waits at most
``KEYLEDGER_XKS_PROXY_TIMEOUT`` seconds for it (AWS KMS waits 250 ms); the worker's own connect, write and read
timeouts are the same, so a proxy that accepts and never answers, or answers a byte at a time, costs a worker
that long and the caller no longer. The port is ``KEYLEDGER_XKS_PROXY_PORT`` (AWS KMS calls 443 and its
XksProxyUriEndpoint may not name a port). The secret is used to sign and never logged.
"""
from __future__ import annotations

import concurrent.futures
import json
import ssl
import threading
from pathlib import Path
from typing import Any

import httpx
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from application.keystores.ports import XksConnection, XksProxyFailure

SERVICE = "kms-xks-proxy"
MAX_ANSWER_BYTES = 65536  # a valid answer is a few KiB


def _tls_context(ca_bundle: Path | None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(ca_bundle) if ca_bundle else None)
    context.minimum_version = ssl.TLSVersion.TLSv1_2  # the specification: TLS 1.2 or later
    return context


def _tls_failure(error: BaseException) -> bool:
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, ssl.SSLError) or "SSL" in str(seen) or "certificate" in str(seen).lower():
            return True
        seen = seen.__cause__ or seen.__context__
    return False


class HttpXksProxyClient:
    def __init__(self, timeout: float, port: int = 443, ca_bundle: Path | None = None, workers: int = 16,
                 user_agent: str = "keyledger") -> None:
        self._timeout = timeout
        self._port = port
        self._tls = _tls_context(ca_bundle)
        self._user_agent = user_agent
        self._pool = concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="xks-proxy")
        self._clients: dict[str, httpx.Client] = {}
        self._lock = threading.Lock()

    def _client(self, endpoint: str) -> httpx.Client:
        with self._lock:
            client = self._clients.get(endpoint)
            if client is None:
                client = self._clients[endpoint] = httpx.Client(
                    verify=self._tls, timeout=httpx.Timeout(self._timeout), follow_redirects=False,
                    limits=httpx.Limits(max_connections=64, max_keepalive_connections=16))
            return client

    def url(self, connection: XksConnection, path: str) -> str:
        base = connection.uri_endpoint.rstrip("/")
        if self._port != 443:
            base = f"{base}:{self._port}"
        return f"{base}{connection.uri_path}{path}"

    def post(self, connection: XksConnection, path: str, body: dict[str, Any]) -> dict[str, Any]:
        future = self._pool.submit(self._post, connection, path, body)
        try:
            return future.result(timeout=self._timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise XksProxyFailure("timeout", f"no answer within {self._timeout:g} s") from None

    def _post(self, connection: XksConnection, path: str, body: dict[str, Any]) -> dict[str, Any]:
        url = self.url(connection, path)
        payload = json.dumps(body, separators=(",", ":")).encode("utf-8")
        request = AWSRequest("POST", url, data=payload, headers={"Content-Type": "application/json"})
        SigV4Auth(Credentials(connection.access_key_id, connection.secret), SERVICE, connection.region).add_auth(request)
        headers = {**dict(request.headers), "User-Agent": self._user_agent}
        try:
            with self._client(connection.uri_endpoint).stream("POST", url, content=payload, headers=headers) as answer:
                raw = bytearray()
                for chunk in answer.iter_bytes():
                    raw += chunk
                    if len(raw) > MAX_ANSWER_BYTES:
                        raise XksProxyFailure("malformed", f"the answer is larger than {MAX_ANSWER_BYTES} bytes")
                status = answer.status_code
        except httpx.TimeoutException:
            raise XksProxyFailure("timeout", f"no answer within {self._timeout:g} s") from None
        except httpx.TransportError as error:  # refused, reset, no route, a TLS handshake that failed
            kind = "tls" if _tls_failure(error) else "unreachable"
            raise XksProxyFailure(kind, f"{type(error).__name__} connecting to {connection.uri_endpoint}") from None
        try:
            parsed = json.loads(bytes(raw))
        except ValueError:
            parsed = None
        if not isinstance(parsed, dict):
            raise XksProxyFailure("malformed", f"HTTP {status} without a JSON object")
        if status == 200:
            return parsed
        name = parsed.get("errorName")
        if not isinstance(name, str):
            raise XksProxyFailure("malformed", f"HTTP {status} without an errorName")
        raise XksProxyFailure("refused", f"HTTP {status} {name[:64]}", error_name=name)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        with self._lock:
            clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            client.close()
