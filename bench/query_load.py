"""`make bench`, issue 13: does an audit query loop slow the crypto path, and does that grow with the log?

bench.scale's history section calls this on each store it built (10,000 and KEYLEDGER_BENCH_RECORDS records)
once it has closed it: a real `keyledger serve` is started on the store and Encrypt 4 KiB is driven at c=16 by the
load process (bench.load), once alone and once while a thread pages through `/v1/audit?key=K&limit=100` back to
back. Printed: Encrypt req/s alone and with the loop, their ratio and the audit pages answered per second; bench.scale
prints the large store's figures over the small one's. Nothing is asserted in tests.
"""
from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from domain.identifiers import Scope  # noqa: E402
from tests.servers import ADMIN_KEY_ID, ADMIN_SECRET, Server  # noqa: E402

SCOPE = Scope("111122223333", "us-east-1")

SECONDS = os.environ.get("KEYLEDGER_BENCH_SECONDS", "10")
ADMIN_ENV = {"KEYLEDGER_ADMIN_ACCESS_KEY_ID": ADMIN_KEY_ID, "KEYLEDGER_ADMIN_SECRET_ACCESS_KEY": ADMIN_SECRET}


class AuditQueryLoop(threading.Thread):
    """Pages through one key's audit records, 100 at a time, back to back, until stopped."""

    def __init__(self, endpoint: str, key_id: str) -> None:
        super().__init__(daemon=True)
        self.endpoint, self.key_id = endpoint, key_id
        self.answered = 0
        self.failed = 0
        self.stopping = threading.Event()

    def _get(self, client: httpx.Client, marker: str | None) -> dict:
        url = f"{self.endpoint}/v1/audit?key={self.key_id}&limit=100" + (f"&marker={marker}" if marker else "")
        request = AWSRequest(method="GET", url=url)
        SigV4Auth(Credentials(ADMIN_KEY_ID, ADMIN_SECRET), "kms", SCOPE.region).add_auth(request)
        response = client.get(url, headers=dict(request.headers))
        if response.status_code != 200:
            self.failed += 1
            return {}
        self.answered += 1
        return response.json()

    def run(self) -> None:
        marker = None
        with httpx.Client(timeout=60) as client:
            while not self.stopping.is_set():
                page = self._get(client, marker)
                marker = page.get("NextMarker")  # None at the end: start over


def encrypt_rps(endpoint: str, key_id: str) -> float:
    body = {"KeyId": key_id, "Plaintext": base64.b64encode(b"x" * 4096).decode()}
    out = subprocess.run([sys.executable, "-m", "bench.load", endpoint, "Encrypt", json.dumps(body), "16", "1000000",
                          SECONDS], cwd=ROOT, capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    return float(json.loads(out.stdout)["rps"])


def encrypt_under_queries(data_dir: Path, database_url: str | None, encrypt_key: str, queried_key: str) -> dict[str, float]:
    """Starts `keyledger serve` on a store that bench.scale built (and closed) and measures Encrypt alone and with
    the audit query loop. The store's runtime was built with ADMIN_ENV, so the server's administrator exists."""
    server = Server(data_dir=data_dir, database_url=database_url,
                    env={"KEYLEDGER_MAINTENANCE_INTERVAL": "0", **ADMIN_ENV}).start(timeout=300)
    try:
        alone = encrypt_rps(server.endpoint, encrypt_key)
        loop = AuditQueryLoop(server.endpoint, queried_key)
        loop.start()
        begun = time.perf_counter()
        with_queries = encrypt_rps(server.endpoint, encrypt_key)
        loop.stopping.set()
        loop.join(timeout=120)
        pages = loop.answered / (time.perf_counter() - begun)
    finally:
        server.stop()
    print(f"    Encrypt c=16 alone {alone:.0f} req/s, with an audit query loop {with_queries:.0f} req/s "
          f"({with_queries / alone:.2f}), {pages:.1f} audit pages/s{f', {loop.failed} failed' if loop.failed else ''}")
    return {"Encrypt alone": alone, "Encrypt with queries": with_queries, "audit pages/s": pages}


if __name__ == "__main__":
    from bench.scale import bench_history

    bench_history()
