"""`make bench`: a real keyledger server (SQLite, durable audit on) and the floor app, each driven by a
separate load process over loopback with signed requests, at concurrency 1, 16 and 64. Prints requests/s
and p50/p99 latency, and each keyledger result as a ratio to the floor measured in the same run.
Bounded: KEYLEDGER_BENCH_REQUESTS per measurement, KEYLEDGER_BENCH_SECONDS at most each.

Next to each rate: the server's CPU seconds per 1,000 calls (every process of the server, from /proc, as
bench.threads reads them), the machine-independent figure. KEYLEDGER_BENCH_POSTGRES_URL=postgresql+psycopg://...
puts the server's database on PostgreSQL (a fresh schema); KEYLEDGER_BENCH_CASES=Encrypt 4 KiB,... runs only
those rows."""
from __future__ import annotations

import base64
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.threads import tree_cpu  # noqa: E402
from tests.servers import Server, drop_postgres_schema, free_port, new_postgres_schema  # noqa: E402

REQUESTS = os.environ.get("KEYLEDGER_BENCH_REQUESTS", "10000")
SECONDS = os.environ.get("KEYLEDGER_BENCH_SECONDS", "10")
CONCURRENCY = [int(c) for c in os.environ.get("KEYLEDGER_BENCH_CONCURRENCY", "1,16,64").split(",")]
CASES = [c.strip() for c in os.environ.get("KEYLEDGER_BENCH_CASES", "").split(",") if c.strip()]
POSTGRES_URL = os.environ.get("KEYLEDGER_BENCH_POSTGRES_URL") or None


def load(url: str, operation: str, body: dict, concurrency: int, pid: int) -> dict:
    """One measurement; `cpu_ms`: CPU milliseconds per call of process `pid` and its children (server CPU
    seconds per 1,000 calls)."""
    before = tree_cpu(pid)
    out = subprocess.run([sys.executable, "-m", "bench.load", url, operation, json.dumps(body), str(concurrency),
                          REQUESTS, SECONDS], cwd=ROOT, capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    result = json.loads(out.stdout)
    result["cpu_ms"] = 1000 * (tree_cpu(pid) - before) / max(1, result["requests"])
    return result


def start_floor() -> tuple[subprocess.Popen, str]:
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "bench.floor", str(port)], cwd=ROOT,
                               env={**os.environ, "PYTHONPATH": str(ROOT)})
    url = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            httpx.post(url + "/", content=b"{}", timeout=1)
            return process, url
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError("floor app did not start")


SOFTHSM_MODULES = ("/usr/lib/softhsm/libsofthsm2.so", "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so")
HSM_PIN, HSM_TOKEN, HSM_CLUSTER = "bench-pin-2468", "bench-store", "cluster-2a3b4c5d6e7"


def token_environment(tmp: Path) -> dict[str, str]:
    """A SoftHSM2 token and a cluster map for a custom key store, or {} when SoftHSM2 is not installed."""
    module = next((m for m in SOFTHSM_MODULES if os.path.exists(m)), None)
    if module is None or not shutil.which("softhsm2-util"):
        return {}
    (tmp / "tokens").mkdir()
    conf = tmp / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {tmp / 'tokens'}\nobjectstore.backend = file\nlog.level = ERROR\n")
    subprocess.run(["softhsm2-util", "--init-token", "--free", "--label", HSM_TOKEN, "--pin", HSM_PIN, "--so-pin",
                    "bench-so-pin"], env={**os.environ, "SOFTHSM2_CONF": str(conf)}, check=True, capture_output=True)
    (tmp / "clusters.json").write_text(json.dumps({HSM_CLUSTER: {"module": module, "token_label": HSM_TOKEN}}))
    return {"SOFTHSM2_CONF": str(conf), "KEYLEDGER_CLOUDHSM_CLUSTERS": str(tmp / "clusters.json")}


def token_backed_key(kms) -> str:  # type: ignore[no-untyped-def]
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, "bench trust anchor")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1)).sign(key, hashes.SHA256()))
    store = kms.create_custom_key_store(CustomKeyStoreName="bench", CloudHsmClusterId=HSM_CLUSTER, KeyStorePassword=HSM_PIN,
                                        TrustAnchorCertificate=cert.public_bytes(serialization.Encoding.PEM).decode())
    kms.connect_custom_key_store(CustomKeyStoreId=store["CustomKeyStoreId"])
    return kms.create_key(Origin="AWS_CLOUDHSM", CustomKeyStoreId=store["CustomKeyStoreId"])["KeyMetadata"]["KeyId"]


def main() -> None:
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"{REQUESTS} requests or {SECONDS} s per measurement")
    env = {k[len("BENCH_"):]: v for k, v in os.environ.items() if k.startswith("BENCH_KEYLEDGER_")}
    database_url, schema = new_postgres_schema(POSTGRES_URL) if POSTGRES_URL else (None, None)
    print("database: " + ("PostgreSQL (" + POSTGRES_URL.rsplit("@", 1)[-1] + ")" if POSTGRES_URL else "SQLite"))
    with tempfile.TemporaryDirectory() as tmp:
        hsm_env = token_environment(Path(tmp))
        # BENCH_KEYLEDGER_WORKERS=2 etc. pass settings to the server; worker processes take longer to start.
        server = Server(data_dir=Path(tmp) / "data", database_url=database_url,
                        env={"KEYLEDGER_MAINTENANCE_INTERVAL": "0", **hsm_env, **env}).start(timeout=120)
        if env:
            print("keyledger settings: " + ", ".join(f"{k}={v}" for k, v in sorted(env.items())))
        floor, floor_url = start_floor()
        assert server.process is not None
        try:
            kms = server.client()
            key_id = kms.create_key()["KeyMetadata"]["KeyId"]
            blob = kms.encrypt(KeyId=key_id, Plaintext=b"x" * 4096)["CiphertextBlob"]
            cases = [
                ("Encrypt", "Encrypt 4 KiB", {"KeyId": key_id, "Plaintext": base64.b64encode(b"x" * 4096).decode()}),
                ("Encrypt", "Encrypt 64 B", {"KeyId": key_id, "Plaintext": base64.b64encode(b"x" * 64).decode()}),
                ("Decrypt", "Decrypt 4 KiB", {"CiphertextBlob": base64.b64encode(blob).decode()}),
                ("GenerateDataKey", "GenerateDataKey", {"KeyId": key_id, "KeySpec": "AES_256"}),
            ]
            token_key = token_backed_key(kms) if hsm_env else None
            if token_key is None:
                print("token-backed key: skipped (SoftHSM2 is not installed: apt-get install -y softhsm2)")
            else:  # the same Encrypt with a key in a custom key store: AES-GCM inside the token (SoftHSM2)
                cases[2:2] = [
                    ("Encrypt", "Encrypt 4 KiB hsm", {"KeyId": token_key, "Plaintext": base64.b64encode(b"x" * 4096).decode()}),
                    ("Encrypt", "Encrypt 64 B hsm", {"KeyId": token_key, "Plaintext": base64.b64encode(b"x" * 64).decode()}),
                ]
            if CASES:
                cases = [case for case in cases if case[1] in CASES]
            # cpu s/1k: server CPU seconds per 1,000 calls, all its processes (keyledger's workers included)
            print(f"{'operation':<18}{'c':>4}{'keyledger req/s':>17}{'p50 ms':>8}{'p99 ms':>8}{'cpu s/1k':>9}"
                  f"{'floor req/s':>13}{'p50 ms':>8}{'p99 ms':>8}{'cpu s/1k':>9}{'ratio':>7}")
            for operation, label, body in cases:
                for concurrency in CONCURRENCY:
                    ours = load(server.endpoint, operation, body, concurrency, server.process.pid)
                    base = load(floor_url, operation, body, concurrency, floor.pid)
                    errors = f"  ({ours['errors']} errors)" if ours["errors"] else ""
                    print(f"{label:<18}{concurrency:>4}{ours['rps']:>17.0f}{ours['p50_ms']:>8.1f}{ours['p99_ms']:>8.1f}"
                          f"{ours['cpu_ms']:>9.3f}{base['rps']:>13.0f}{base['p50_ms']:>8.1f}{base['p99_ms']:>8.1f}"
                          f"{base['cpu_ms']:>9.3f}{ours['rps'] / base['rps']:>7.2f}{errors}", flush=True)
        finally:
            floor.terminate()
            server.stop()
            if POSTGRES_URL and schema:
                drop_postgres_schema(POSTGRES_URL, schema)


if __name__ == "__main__":
    main()
