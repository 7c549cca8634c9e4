"""Two nodes on one PostgreSQL schema (issue 16): real `keyledger serve` processes that share nothing but the
database and the root key settings. Node A has a data directory; node B has none (only KEYLEDGER_DATABASE_URL, the
root key and, optionally, a checkpoint file of its own). Both serve the same keys; exactly one of them signs
checkpoints (the holder of the PostgreSQL advisory lock); when it stops, the other takes over; `audit verify`
passes; neither node touches the other's files."""
from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import httpx

from tests.conftest import require_postgres
from tests.servers import ROOT, Server, drop_postgres_schema, new_postgres_schema

WAIT = 30.0  # a hang bound for what a running node does within a second or two; never a timing assertion


def _eventually(what: str, check: Callable[[], Any]) -> Any:
    deadline = time.monotonic() + WAIT
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {WAIT:g} s: {what}")
        time.sleep(0.2)


def _leads(server: Server) -> bool:
    return httpx.get(server.endpoint + "/healthz", timeout=10).json()["background"]["leader"]


def _files(directory: Path) -> dict[str, tuple[bytes, int]]:
    """Every file under ``directory``: its bytes and modification time (what "not touched" means)."""
    return {str(p.relative_to(directory)): (p.read_bytes(), p.stat().st_mtime_ns)
            for p in sorted(directory.rglob("*")) if p.is_file()}


def _checkpoint_seqs(path: Path) -> list[int]:
    return [json.loads(line)["seq"] for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def _keyledger(node_env: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KEYLEDGER_", "AWS_"))}
    env.update(node_env, PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, "-m", "api", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, f"keyledger {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
    return proc


def test_two_nodes_share_keys_elect_one_signer_and_fail_over(tmp_path: Path) -> None:
    base = require_postgres()
    url, schema = new_postgres_schema(base)
    shared = {"KEYLEDGER_DATABASE_URL": url, "KEYLEDGER_ROOT_KEY_PROVIDER": "env",
              "KEYLEDGER_ROOT_KEY": base64.b64encode(os.urandom(32)).decode(),
              "KEYLEDGER_AUDIT_CHECKPOINT_SECONDS": "1"}
    node_a_dir, node_b_cwd, node_b_files, operator = (tmp_path / name for name in ("a", "b", "b-files", "operator"))
    for directory in (node_b_cwd, node_b_files, operator):
        directory.mkdir()
    b_checkpoints = node_b_files / "checkpoints.jsonl"
    a = Server(data_dir=node_a_dir, database_url=url, env=shared)
    # No data directory: KEYLEDGER_DATA_DIR unset (empty), started in an empty working directory it must not write to.
    b = Server(data_dir=node_b_cwd, database_url=url, cwd=node_b_cwd,
               env={**shared, "KEYLEDGER_DATA_DIR": "", "KEYLEDGER_AUDIT_CHECKPOINT_FILE": str(b_checkpoints)})
    try:
        a.start()
        _eventually("node A leads the background work", lambda: _leads(a))
        b.start()

        # Both serve the same keys: made on A, used on B, and back.
        key_id = a.client().create_key(Description="made on node A")["KeyMetadata"]["KeyId"]
        blob = b.client().encrypt(KeyId=key_id, Plaintext=b"multi-node")["CiphertextBlob"]
        assert a.client().decrypt(CiphertextBlob=blob)["Plaintext"] == b"multi-node"
        assert b.client().describe_key(KeyId=key_id)["KeyMetadata"]["Description"] == "made on node A"

        # Exactly one node leads; `status` (asked with B's settings) names the holder of the advisory lock.
        assert (_leads(a), _leads(b)) == (True, False)
        report = json.loads(_keyledger({**shared, "KEYLEDGER_PORT": str(b.port)}, operator, "status", "--json").stdout)
        assert f":{a.port} pid {a.process.pid} (PostgreSQL advisory lock, another node)" in report["background work"]
        assert report["data directory"].startswith("none")
        # A signs; B, a follower with a checkpoint file of its own, copies what A signed into it.
        signed_by_a = _eventually("B's file holds A's checkpoints", lambda: _checkpoint_seqs(b_checkpoints))
        assert (_leads(a), _leads(b)) == (True, False)

        a.stop()
        a_files_at_stop = _files(node_a_dir)
        _eventually("node B takes over the background work", lambda: _leads(b))
        a_seqs = _checkpoint_seqs(node_a_dir / "audit-checkpoints.jsonl")
        b.client().encrypt(KeyId=key_id, Plaintext=b"after the failover")  # records only B can cover now
        _eventually("B signs a checkpoint over them",
                    lambda: _checkpoint_seqs(b_checkpoints)[-1] > max(a_seqs + signed_by_a))

        # The ledger verifies: against the database's checkpoints, and against B's own file.
        verified = _keyledger(shared, operator, "audit", "verify").stdout
        assert verified.startswith("OK: ") and "from the database's copy" in verified
        verified = _keyledger(shared, operator, "audit", "verify", "--checkpoints", str(b_checkpoints)).stdout
        assert verified.startswith("OK: ") and str(b_checkpoints) in verified
    finally:
        a.stop()
        b.stop()
        drop_postgres_schema(base, schema)

    # No file of one node was touched by the other: A's directory is as A left it although B signed on; B wrote
    # nothing but its own checkpoint file, and A's file is the start of B's (one chain, two copies).
    assert _files(node_a_dir) == a_files_at_stop
    assert sorted(a_files_at_stop) == ["admin-credentials", "audit-checkpoints.jsonl", "audit-checkpoints.jsonl.lock"]
    assert list(node_b_cwd.iterdir()) == [] and list(operator.iterdir()) == []
    assert sorted(p.name for p in node_b_files.iterdir()) == ["checkpoints.jsonl", "checkpoints.jsonl.lock"]
    a_lines = (node_a_dir / "audit-checkpoints.jsonl").read_text().splitlines()
    assert b_checkpoints.read_text().splitlines()[:len(a_lines)] == a_lines
