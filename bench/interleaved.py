"""Before and after in one run: `python -m bench.interleaved ROUNDS CONCURRENCIES OPERATIONS LABEL=TREE[:WORKERS] ...`

For example `python -m bench.interleaved 3 16,64 Encrypt,GenerateDataKey before=/tmp/tree_a after=. two=.:2`. Each
tree (a checkout, e.g. `git archive COMMIT | tar -x -C /tmp/tree_a`) is served by its own keyledger server on its
own store (SQLite, or a fresh PostgreSQL schema each with KEYLEDGER_BENCH_POSTGRES_URL), with the floor alongside;
every round measures the floor and then each server, for each operation and concurrency, so a machine that slows
down or speeds up does so for all of them. Prints medians over the rounds: req/s, CPU ms a call (all the server's
processes, as `make bench`), p99 and the ratio to the floor of the same round, with each round's ratio. The tool
behind the interleaved tables of docs/performance.md (sessions 9 and 10)."""
from __future__ import annotations

import base64
import os
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.__main__ import POSTGRES_URL, load, start_floor  # noqa: E402
from tests.servers import Server, drop_postgres_schema, new_postgres_schema  # noqa: E402


def bodies(server: Server) -> dict[str, dict[str, str]]:
    kms = server.client()
    key = kms.create_key()["KeyMetadata"]["KeyId"]
    blob = kms.encrypt(KeyId=key, Plaintext=b"x" * 4096)["CiphertextBlob"]
    return {"Encrypt": {"KeyId": key, "Plaintext": base64.b64encode(b"x" * 4096).decode()},
            "Decrypt": {"CiphertextBlob": base64.b64encode(blob).decode()},
            "GenerateDataKey": {"KeyId": key, "KeySpec": "AES_256"}}


def main(argv: list[str]) -> None:
    if len(argv) < 4:
        raise SystemExit(__doc__)
    rounds, concurrencies, operations = int(argv[0]), [int(c) for c in argv[1].split(",")], argv[2].split(",")
    specs = []
    for spec in argv[3:]:
        label, _, rest = spec.partition("=")
        tree, _, workers = rest.partition(":")
        specs.append((label, Path(tree).resolve(), workers or "1"))
    servers: dict[str, Server] = {}
    schemas: list[str] = []
    floor = None
    with tempfile.TemporaryDirectory() as tmp:
        try:
            for label, tree, workers in specs:
                database_url = None
                if POSTGRES_URL:
                    database_url, schema = new_postgres_schema(POSTGRES_URL)
                    schemas.append(schema)
                servers[label] = Server(data_dir=Path(tmp) / label, database_url=database_url, cwd=tree, env={
                    "PYTHONPATH": str(tree), "KEYLEDGER_MAINTENANCE_INTERVAL": "0", "KEYLEDGER_WORKERS": workers,
                }).start(timeout=120)
            floor, floor_url = start_floor()
            requests = {label: bodies(server) for label, server in servers.items()}
            results: dict[tuple[str, str, int], list[tuple[float, float, float, float]]] = {}
            for done in range(rounds):
                for operation in operations:
                    for concurrency in concurrencies:
                        base = load(floor_url, operation, requests[specs[0][0]][operation], concurrency, floor.pid)
                        results.setdefault(("floor", operation, concurrency), []).append(
                            (base["rps"], base["cpu_ms"], base["p99_ms"], 1.0))
                        for label, server in servers.items():
                            assert server.process is not None
                            ours = load(server.endpoint, operation, requests[label][operation], concurrency,
                                        server.process.pid)
                            if ours["errors"]:
                                print(f"{label} {operation} c={concurrency}: {ours['errors']} errors", flush=True)
                            results.setdefault((label, operation, concurrency), []).append(
                                (ours["rps"], ours["cpu_ms"], ours["p99_ms"], ours["rps"] / base["rps"]))
                print(f"round {done + 1} of {rounds} done, load {os.getloadavg()[0]:.1f}", flush=True)
        finally:
            if floor is not None:
                floor.terminate()
            for server in servers.values():
                server.stop()
            for schema in schemas:
                drop_postgres_schema(POSTGRES_URL, schema)  # type: ignore[arg-type]
    for operation in operations:
        for concurrency in concurrencies:
            for label in ["floor", *servers]:
                found = results[(label, operation, concurrency)]
                rate, cpu, p99, ratio = (statistics.median(r[i] for r in found) for i in range(4))
                print(f"{operation:16} c={concurrency:<3} {label:10} {rate:8.0f}/s  cpu {cpu:.3f} ms  p99 {p99:5.1f} ms"
                      f"  ratio {ratio:.2f} [{' '.join(f'{r[3]:.2f}' for r in found)}]")


if __name__ == "__main__":
    main(sys.argv[1:])
