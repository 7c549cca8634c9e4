"""The load process for `make bench`: keep-alive HTTP/1.1 connections over loopback, each sending
SigV4-signed KMS requests back to back. Requests are signed once before the run (a signature stays
valid for five minutes), so the load process spends its CPU on sending, not on signing.

Usage: python -m bench.load URL OPERATION BODY_JSON CONCURRENCY REQUESTS SECONDS  -> prints one JSON line
"""
from __future__ import annotations

import asyncio
import json
import sys
import time
from urllib.parse import urlparse

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from tests.servers import ADMIN_KEY_ID, ADMIN_SECRET


def signed_request(url: str, operation: str, body: bytes) -> bytes:
    request = AWSRequest(method="POST", url=url + "/", data=body, headers={
        "Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": f"TrentService.{operation}"})
    SigV4Auth(Credentials(ADMIN_KEY_ID, ADMIN_SECRET), "kms", "us-east-1").add_auth(request)
    host = urlparse(url).netloc
    head = ["POST / HTTP/1.1", f"Host: {host}", f"Content-Length: {len(body)}", "Connection: keep-alive"]
    head += [f"{k}: {v}" for k, v in request.headers.items() if k.lower() not in ("host", "content-length")]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


async def worker(host: str, port: int, payload: bytes, quota: list[int], deadline: float,
                 latencies: list[float], errors: list[int]) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while quota[0] > 0 and time.monotonic() < deadline:
            quota[0] -= 1
            start = time.perf_counter()
            writer.write(payload)
            status = await reader.readline()
            length = 0
            while True:
                line = await reader.readline()
                if line in (b"\r\n", b""):
                    break
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            await reader.readexactly(length)
            latencies.append(time.perf_counter() - start)
            if not status.startswith(b"HTTP/1.1 200"):
                errors[0] += 1
    finally:
        writer.close()


async def run(url: str, operation: str, body: bytes, concurrency: int, requests: int, seconds: float) -> dict:
    parsed = urlparse(url)
    payload = signed_request(url, operation, body)
    latencies: list[float] = []
    errors = [0]
    quota = [requests]
    start = time.perf_counter()
    await asyncio.gather(*(worker(parsed.hostname or "127.0.0.1", parsed.port or 80, payload, quota,
                                  time.monotonic() + seconds, latencies, errors) for _ in range(concurrency)))
    elapsed = time.perf_counter() - start
    latencies.sort()
    return {"requests": len(latencies), "errors": errors[0], "rps": len(latencies) / elapsed,
            "p50_ms": latencies[len(latencies) // 2] * 1000,
            "p99_ms": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000}


if __name__ == "__main__":
    url, operation, body, concurrency, requests, seconds = sys.argv[1:7]
    print(json.dumps(asyncio.run(run(url, operation, body.encode(), int(concurrency), int(requests), float(seconds)))))
