"""`make bench`: starts a real server on SQLite and measures signed boto3 calls over loopback.

Prints requests/s and latency percentiles per operation and concurrency. Bounded in requests and time.
"""
from __future__ import annotations

import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.servers import Server  # noqa: E402

REQUESTS = int(os.environ.get("KEYLEDGER_BENCH_REQUESTS", "600"))
TIME_LIMIT = float(os.environ.get("KEYLEDGER_BENCH_SECONDS", "20"))


def run(name: str, call, concurrency: int) -> None:
    latencies: list[float] = []
    lock = threading.Lock()
    deadline = time.monotonic() + TIME_LIMIT

    def one(_: int) -> None:
        if time.monotonic() > deadline:
            return
        start = time.perf_counter()
        call()
        with lock:
            latencies.append(time.perf_counter() - start)

    start = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(one, range(REQUESTS)))
    elapsed = time.perf_counter() - start
    latencies.sort()
    p50 = statistics.median(latencies) * 1000
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000
    print(f"{name:<28} c={concurrency:<3} {len(latencies) / elapsed:8.1f} req/s   p50 {p50:6.1f} ms   p99 {p99:6.1f} ms")


def main() -> None:
    print(f"machine: {platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()}")
    with tempfile.TemporaryDirectory() as tmp:
        server = Server(data_dir=Path(tmp) / "data").start()
        try:
            clients = threading.local()

            def kms():
                if not hasattr(clients, "c"):
                    clients.c = server.client()
                return clients.c

            key_id = kms().create_key()["KeyMetadata"]["KeyId"]
            blob = kms().encrypt(KeyId=key_id, Plaintext=b"x" * 4096)["CiphertextBlob"]
            for concurrency in (1, 16):
                run("Encrypt 4 KiB", lambda: kms().encrypt(KeyId=key_id, Plaintext=b"x" * 4096), concurrency)
                run("Encrypt 64 B", lambda: kms().encrypt(KeyId=key_id, Plaintext=b"x" * 64), concurrency)
                run("Decrypt 4 KiB", lambda: kms().decrypt(CiphertextBlob=blob), concurrency)
                run("GenerateDataKey AES_256", lambda: kms().generate_data_key(KeyId=key_id, KeySpec="AES_256"),
                    concurrency)
        finally:
            server.stop()


if __name__ == "__main__":
    main()
