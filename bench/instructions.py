"""Instructions per call, counted by valgrind's callgrind: what a change costs or saves on the request path and
the committer, whatever else the machine is doing (docs/performance.md, "Session 8" and "Session 14").

    python -m bench.instructions [TREE ...] [--calls 32,160] [--group 1] [--operation Encrypt] [--switched]

For each tree (a checkout, e.g. `git archive COMMIT | tar -x -C /tmp/tree`; default: this one) a store is made by
that tree's own server (a key, a signed request: Encrypt 4 KiB, Decrypt of its blob, or GenerateDataKey AES_256), then the tree's app is driven in process, without
an HTTP server, under callgrind, twice: once with the first count of calls and once with the second. The
difference over the extra calls is the instructions per call, start-up cancelling out. ``--group 1`` (the default)
sends one call at a time, so every call is its own audit batch and two runs do the same work; larger groups let
the committer batch, which depends on timing. ``--committer process`` counts the serving process alone, as
`keyledger serve` runs it: its records go to the audit committer process, which is not counted. Counts are of user-space instructions in every thread; a context
switch or a wait for the GIL costs none, so this complements the CPU seconds of `make bench`, it does not replace
them. Takes one to two minutes per run; valgrind must be installed (`apt-get install valgrind`).

``--switched`` (sessions 14 and 15) counts only the calls themselves, in one run: callgrind starts with its
counting off (``--instr-atstart=no``), the calls are made once to warm up, and this process switches counting on
(``callgrind_control -i on``) for the second count of calls only (``--calls``' larger number), with
``--committer process`` and ``--group 64`` as `keyledger serve` runs at c=64. Start-up, imports and the store's
opening are not counted at all, so the count a call is the calls' own; a change of a few thousand instructions a
call shows. The serving process is set up as `keyledger serve` sets it up (its start-up heap frozen, decision 280,
on trees that do it)."""
from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

_INIT = """
import base64, json, sys
from pathlib import Path
from tests.servers import Server
from bench.load import signed_request
d, operation = Path(sys.argv[1]), sys.argv[2]
server = Server(data_dir=d / "data", env={"KEYLEDGER_MAINTENANCE_INTERVAL": "0"}).start(timeout=120)
try:
    kms = server.client()
    key_id = kms.create_key()["KeyMetadata"]["KeyId"]
    blob = kms.encrypt(KeyId=key_id, Plaintext=b"x" * 4096)["CiphertextBlob"]
    body = json.dumps({"Encrypt": {"KeyId": key_id, "Plaintext": base64.b64encode(b"x" * 4096).decode()},
                       "Decrypt": {"CiphertextBlob": base64.b64encode(blob).decode()},
                       "GenerateDataKey": {"KeyId": key_id, "KeySpec": "AES_256"}}[operation]).encode()
    (d / "request").write_bytes(signed_request(server.endpoint, operation, body))
finally:
    server.stop()
"""

_RUN = """
import asyncio, os, sys
from pathlib import Path
from tests.servers import ADMIN_KEY_ID, ADMIN_SECRET
d, calls, group, committer = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
os.environ.update({"KEYLEDGER_DATA_DIR": str(d / "data"), "KEYLEDGER_ADMIN_ACCESS_KEY_ID": ADMIN_KEY_ID,
                   "KEYLEDGER_ADMIN_SECRET_ACCESS_KEY": ADMIN_SECRET, "KEYLEDGER_MAINTENANCE_INTERVAL": "0",
                   "KEYLEDGER_LOG_LEVEL": "warning",
                   # A checkpoint is signed on a timer: under callgrind the longer run would count one per call.
                   "KEYLEDGER_AUDIT_CHECKPOINT_SECONDS": "86400"})
if committer == "process":  # as `keyledger serve` runs: records go to the committer process, not counted
    from api.http import create_app
    from api.serve import background_passes
    from infrastructure.audit_committer_launch import spawn_audit_committer, start_audit_committer
    from infrastructure.bootstrap import build_runtime, start_serving
    from infrastructure.settings import Settings
    settings = Settings.load()
    spawned = spawn_audit_committer(settings)
    runtime = build_runtime(settings)
    start_serving(runtime)
    process = start_audit_committer(runtime, spawned)
    assert process is not None
    import inspect
    serving = {"whole_process": True} if "whole_process" in inspect.signature(create_app).parameters else {}
    app = create_app(runtime, background_passes(runtime), **serving)
else:  # the committer thread, counted with the rest
    os.environ["KEYLEDGER_AUDIT_COMMITTER"] = "thread"
    from api.serve import worker_app
    app = worker_app()
head, _, payload = (d / "request").read_bytes().partition(b"\\r\\n\\r\\n")
headers = [(k.strip().lower(), v.strip()) for k, v in (line.split(b":", 1) for line in head.split(b"\\r\\n")[1:])]
scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
         "path": "/", "raw_path": b"/", "query_string": b"", "headers": headers, "client": ("127.0.0.1", 5000),
         "server": ("127.0.0.1", 8000), "root_path": ""}

async def one():
    sent, read = [], False
    async def receive():
        nonlocal read
        if read:
            await asyncio.sleep(3600)
        read = True
        return {"type": "http.request", "body": payload, "more_body": False}
    async def send(message):
        sent.append(message)
    await app(dict(scope), receive, send)
    assert sent[0]["status"] == 200, sent

async def handshake(said, awaited):
    Path(said).write_text("")
    while not Path(awaited).exists():
        await asyncio.sleep(0.02)

async def main():
    inbox, outbox = asyncio.Queue(), asyncio.Queue()
    await inbox.put({"type": "lifespan.startup"})
    async def send(message):
        await outbox.put(message)
    lifespan = asyncio.create_task(app({"type": "lifespan", "asgi": {"version": "3.0"}}, inbox.get, send))
    await outbox.get()
    gate = os.environ.get("KEYLEDGER_BENCH_GATE")
    if gate:  # --switched: warm up, then the counted calls between the two handshakes
        for _ in range(calls // group):
            await asyncio.gather(*(one() for _ in range(group)))
        await handshake(gate + ".ready", gate + ".go")
    for _ in range(calls // group):
        await asyncio.gather(*(one() for _ in range(group)))
    if gate:
        await handshake(gate + ".done", gate + ".end")
    await inbox.put({"type": "lifespan.shutdown"})
    await outbox.get()
    await lifespan

asyncio.run(main())
if committer == "process":
    process.stop()
"""


def _store(tree: Path, work: Path, operation: str) -> tuple[Path, dict[str, str]]:
    """A store made by the tree's own server, with the signed request; and the environment that runs that tree."""
    store = Path(tempfile.mkdtemp(dir=work))
    env = {**os.environ, "PYTHONPATH": str(tree)}
    subprocess.run([sys.executable, "-c", _INIT, str(store), operation], cwd=tree, env=env, check=True,
                   capture_output=True)
    return store, env


def _valgrind(store: Path, *options: str) -> list[str]:
    return ["valgrind", "--tool=callgrind", *options, f"--callgrind-out-file={store / 'callgrind.out'}",
            f"--log-file={store / 'callgrind.log'}"]


def _collected(store: Path) -> int:
    log = (store / "callgrind.log").read_text()
    found = re.search(r"Collected : (\d+)", log)
    assert found, log
    return int(found.group(1))


def instructions(tree: Path, calls: int, group: int, work: Path, committer: str = "thread",
                 operation: str = "Encrypt") -> int:
    store, env = _store(tree, work, operation)
    subprocess.run([*_valgrind(store), sys.executable, "-c", _RUN, str(store), str(calls), str(group), committer],
                   cwd=tree, env=env, check=True, capture_output=True)
    return _collected(store)


def switched_instructions(tree: Path, calls: int, group: int, work: Path, operation: str) -> float:
    """Instructions a call, counting switched on from outside around ``calls`` calls only (one run)."""
    store, env = _store(tree, work, operation)
    gate = str(store / "gate")
    run = subprocess.Popen(
        [*_valgrind(store, "--instr-atstart=no"), sys.executable, "-c", _RUN, str(store), str(calls), str(group),
         "process"], cwd=tree, env={**env, "KEYLEDGER_BENCH_GATE": gate}, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE)

    def reached(name: str) -> None:
        while not Path(gate + name).exists():
            if run.poll() is not None:
                raise RuntimeError(f"the counted run ended early:\n{run.stderr.read().decode()[-3000:]}")
            time.sleep(0.05)

    reached(".ready")
    subprocess.run(["callgrind_control", "-i", "on", str(run.pid)], check=True, capture_output=True)
    Path(gate + ".go").write_text("")
    reached(".done")
    subprocess.run(["callgrind_control", "-i", "off", str(run.pid)], check=True, capture_output=True)
    Path(gate + ".end").write_text("")
    run.wait()
    return _collected(store) / calls


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("trees", nargs="*", type=Path, default=[ROOT])
    parser.add_argument("--calls", default="32,160", help="the two counts of calls, fewer first")
    parser.add_argument("--group", type=int, default=1, help="calls sent at once (1: each its own audit batch)")
    parser.add_argument("--committer", choices=("thread", "process"), default="thread",
                        help="thread: the committer thread counted with the rest (every tree); process: the serving "
                             "process alone, its records committed by the audit committer process (trees since "
                             "decision 264)")
    parser.add_argument("--operation", choices=("Encrypt", "Decrypt", "GenerateDataKey"), default="Encrypt")
    parser.add_argument("--switched", action="store_true",
                        help="count only the calls (the larger --calls number, after as many to warm up), switched on "
                             "from outside, in one run; the committer is the process")
    options = parser.parse_args(argv)
    if shutil.which("valgrind") is None:
        print("instructions per call: skipped (valgrind is not installed: apt-get install -y valgrind)")
        return
    low, high = (int(n) for n in options.calls.split(","))
    if options.switched:
        print(f"instructions per {options.operation} (callgrind switched on around {high} calls after as many, in "
              f"process, {options.group} at a time, committer process)")
    else:
        print(f"instructions per {options.operation} (callgrind, in process, {options.group} call(s) at a time, "
              f"{high - low} calls counted, committer {options.committer})")
    first = None
    with tempfile.TemporaryDirectory() as work:
        for tree in options.trees:
            if options.switched:
                per_call = switched_instructions(tree.resolve(), high, options.group, Path(work), options.operation)
                first = first or per_call
                print(f"  {str(tree):40} {per_call:12,.0f}   ratio to the first {per_call / first:.3f}", flush=True)
                continue
            count = [instructions(tree.resolve(), calls, options.group, Path(work), options.committer, options.operation)
                     for calls in (high, low)]
            per_call = (count[0] - count[1]) / (high - low)
            first = first or per_call
            print(f"  {str(tree):40} {per_call:12,.0f}   ratio to the first {per_call / first:.3f}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
