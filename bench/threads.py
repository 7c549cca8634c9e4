"""Where a real server's CPU goes, per thread: `python -m bench.threads [OPERATION] [KEYLEDGER_X=value ...]`.

Starts a keyledger server (SQLite, durable audit), drives it from a separate load process (bench.load, c=64 or
KEYLEDGER_BENCH_THREADS_CONCURRENCY, 20,000 calls or 8 s of Encrypt 4 KiB unless told otherwise) and prints each
server thread's CPU per call, read from /proc before and after, with the load process's. Settings given as
arguments go to the server. Used for the per-thread numbers in docs/performance.md: the event loop and the audit
committer share one GIL, so CPU per call per thread says more than req/s on a noisy machine."""
from __future__ import annotations

import base64
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.servers import Server  # noqa: E402

CALLS, SECONDS = "20000", "8"
CONCURRENCY = os.environ.get("KEYLEDGER_BENCH_THREADS_CONCURRENCY", "64")


def thread_cpu(pid: int) -> dict[tuple[str, str], float]:
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{tid}/stat") as f:
            stat = f.read()
        name = stat[stat.index("(") + 1:stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2:].split()
        out[(tid, name)] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return out


def children_cpu(pid: int) -> dict[int, tuple[str, float]]:
    """CPU seconds so far of each live child process of ``pid`` (the audit committer, worker processes)."""
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{tid}/children") as f:
            for child in f.read().split():
                try:
                    with open(f"/proc/{child}/cmdline", "rb") as c:
                        name = c.read().split(b"\0")[2:3] or [b"?"]
                    with open(f"/proc/{child}/stat") as s:
                        fields = s.read().rsplit(")", 1)[1].split()
                except FileNotFoundError:
                    continue
                out[int(child)] = (name[0].decode(), (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK"))
    return out


def tree_cpu(pid: int) -> float:
    """CPU seconds (user + system) used so far by process `pid` and its live descendants (worker processes)."""
    total, pending = 0.0, [pid]
    while pending:
        current = pending.pop()
        try:
            with open(f"/proc/{current}/stat") as f:
                stat = f.read()
            fields = stat[stat.rindex(")") + 2:].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
            for tid in os.listdir(f"/proc/{current}/task"):
                with open(f"/proc/{current}/task/{tid}/children") as f:
                    pending.extend(int(child) for child in f.read().split())
        except (FileNotFoundError, ProcessLookupError):
            continue  # a process that ended meanwhile
    return total


def main() -> None:
    operation = sys.argv[1] if len(sys.argv) > 1 and "=" not in sys.argv[1] else "Encrypt"
    env = {"KEYLEDGER_MAINTENANCE_INTERVAL": "0"}
    env.update(dict(arg.split("=", 1) for arg in sys.argv[1:] if "=" in arg))
    with tempfile.TemporaryDirectory() as tmp:
        server = Server(data_dir=Path(tmp) / "data", env=env).start(timeout=120)
        try:
            kms = server.client()
            key_id = kms.create_key()["KeyMetadata"]["KeyId"]
            plaintext = b"x" * 4096
            body = ({"CiphertextBlob": base64.b64encode(kms.encrypt(KeyId=key_id, Plaintext=plaintext)
                                                        ["CiphertextBlob"]).decode()} if operation == "Decrypt"
                    else {"KeyId": key_id, "KeySpec": "AES_256"} if operation == "GenerateDataKey"
                    else {"KeyId": key_id, "Plaintext": base64.b64encode(plaintext).decode()})
            assert server.process is not None
            pid = server.process.pid
            before, children_before, started = thread_cpu(pid), children_cpu(pid), time.monotonic()
            load_before = resource.getrusage(resource.RUSAGE_CHILDREN)
            out = subprocess.run([sys.executable, "-m", "bench.load", server.endpoint, operation, json.dumps(body),
                                  CONCURRENCY, CALLS, SECONDS], cwd=ROOT, capture_output=True, text=True, check=True,
                                 env={**os.environ, "PYTHONPATH": str(ROOT)})
            load_after = resource.getrusage(resource.RUSAGE_CHILDREN)
            wall = time.monotonic() - started
            after, children_after = thread_cpu(pid), children_cpu(pid)
            result = json.loads(out.stdout)
            calls = result["requests"]
            print(f"{operation}: {calls} calls, {result['rps']:.0f} req/s, p50 {result['p50_ms']:.1f} ms, "
                  f"p99 {result['p99_ms']:.1f} ms, {result['errors']} errors")
            # The kernel calls every thread "python": busiest first is the event loop, then the audit committer.
            for (tid, name), seconds in sorted(after.items(), key=lambda item: before.get(item[0], 0) - item[1]):
                used = seconds - before.get((tid, name), 0.0)
                if used > 0.01:
                    print(f"  thread {tid:>7} {name:<16} {1e6 * used / calls:6.0f} µs/call  {100 * used / wall:5.1f} % of wall")
            for child, (name, seconds) in children_after.items():
                used = seconds - children_before.get(child, (name, 0.0))[1]
                print(f"  process {child:>6} {name[:18]:<18} {1e6 * used / calls:6.0f} µs/call  {100 * used / wall:5.1f} % of wall")
            load = (load_after.ru_utime + load_after.ru_stime) - (load_before.ru_utime + load_before.ru_stime)
            print(f"  load process             {1e6 * load / calls:6.0f} µs/call")
        finally:
            server.stop()


if __name__ == "__main__":
    main()
