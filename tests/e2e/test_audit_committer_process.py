"""The audit committer process with a real `keyledger serve`, on SQLite and PostgreSQL: one committer for
every server process, killed in the middle of a burst (the calls in flight fail closed, nothing answered is
lost, serving goes on), and ending with the server however the server ends."""
from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from botocore.exceptions import ClientError

from infrastructure.settings import Settings
from tests.e2e.test_audit_support import export_jsonl, kms_client, verify
from tests.servers import Server

THREADS, CALLS = 8, 40


def children(pid: int) -> list[int]:
    found = []
    for tid in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{tid}/children") as f:
            found.extend(int(child) for child in f.read().split())
    return found


def cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode()
    except FileNotFoundError:
        return ""


def committers(server: Server) -> list[int]:
    assert server.process is not None
    return [pid for pid in children(server.process.pid) if "infrastructure.audit_committer" in cmdline(pid)]


def ended(pid: int, seconds: float = 15.0) -> bool:
    """The process has exited (a zombie not yet reaped counts as exited)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X"):
                    return True
        except FileNotFoundError:
            return True
        time.sleep(0.1)
    return False


class Burst:
    """THREADS clients each making CALLS Encrypt calls; every answer kept (its request id and error code)."""

    def __init__(self, server: Server) -> None:
        self.clients = [kms_client(server) for _ in range(THREADS)]
        self.key_id = self.clients[0].create_key()["KeyMetadata"]["KeyId"]
        self.answers: list[tuple[str, str | None]] = []
        self.lock = threading.Condition()

    def run(self, index: int) -> None:
        kms = self.clients[index]
        for call in range(CALLS):
            try:
                out = kms.encrypt(KeyId=self.key_id, Plaintext=f"burst {index} {call}".encode())
                answer: tuple[str, str | None] = (out["ResponseMetadata"]["RequestId"], None)
            except ClientError as error:
                answer = (error.response["ResponseMetadata"]["RequestId"], error.response["Error"]["Code"])
            with self.lock:
                self.answers.append(answer)
                self.lock.notify_all()

    def start(self) -> list[threading.Thread]:
        threads = [threading.Thread(target=self.run, args=(i,), daemon=True) for i in range(THREADS)]
        for thread in threads:
            thread.start()
        return threads

    def wait_for(self, count: int) -> None:
        with self.lock:
            assert self.lock.wait_for(lambda: len(self.answers) >= count, timeout=120), "the burst stalled"


def recorded(server: Server) -> dict[str, dict[str, Any]]:
    return {record["requestID"]: record for record in export_jsonl(server)}


def test_one_committer_process_commits_for_every_server_process(servers) -> None:
    server = servers.start(name="workers", KEYLEDGER_WORKERS="2")
    [committer] = committers(server)
    workers = [pid for pid in children(server.process.pid) if "multiprocessing.spawn" in cmdline(pid)]
    assert len(workers) == 2 and not any("audit_committer" in cmdline(c) for w in workers for c in children(w))
    burst = Burst(server)
    for thread in burst.start():
        thread.join(timeout=120)
    assert len(burst.answers) == THREADS * CALLS and all(error is None for _, error in burst.answers)
    server.stop()
    assert ended(committer), "the committer outlived the server"
    records = recorded(server)
    assert all(request_id in records for request_id, _ in burst.answers)
    assert verify(server).ok


def committer_gauge(server: Server) -> str:
    metrics = httpx.get(server.endpoint + "/metrics", timeout=10).text
    return next(line for line in metrics.splitlines() if line.startswith("keyledger_audit_committer_process "))


def test_killing_the_committer_fails_the_calls_in_flight_closed_and_serving_goes_on(servers) -> None:
    server = servers.start(name="killed")
    [committer] = committers(server)
    assert committer_gauge(server) == "keyledger_audit_committer_process 1.0"
    burst = Burst(server)
    threads = burst.start()
    burst.wait_for(60)
    os.kill(committer, signal.SIGKILL)
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads)
    answers = list(burst.answers)
    assert len(answers) == THREADS * CALLS
    assert {error for _, error in answers} <= {None, "KMSInternalException"}, answers
    kms = kms_client(server)
    kms.encrypt(KeyId=burst.key_id, Plaintext=b"after the committer died")  # committed by the server itself
    assert "the audit committer process is gone" in server.log()
    assert committer_gauge(server) == "keyledger_audit_committer_process 0.0"
    server.stop()
    records = recorded(server)
    # Everything answered as done is on record; a call that failed closed may or may not be (its batch may
    # have committed before the committer died, unanswered), and nothing else is.
    for request_id, error in answers:
        if error is None:
            assert request_id in records, f"Encrypt {request_id} was answered but has no record"
            assert records[request_id]["errorCode"] is None
    assert verify(server).ok


# The process tree is the same on both backends: these two run on SQLite only.

def test_the_committer_ends_when_the_server_is_killed(tmp_path: Path) -> None:
    server = Server(data_dir=tmp_path / "data").start()
    try:
        [committer] = committers(server)
        kms_client(server).create_key()
        server.stop(signal.SIGKILL)
        assert ended(committer), "the committer outlived a killed server"
        server.start()  # and the next start verifies what it left
        kms_client(server).create_key()
    finally:
        server.stop()
    assert verify(server).ok


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except FileNotFoundError:
        return False


def test_a_stopped_server_has_stopped_its_committer_before_it_exits(tmp_path: Path) -> None:
    """uvicorn ends a process stopped by SIGTERM by raising the signal again once it has shut down: the committer
    is stopped before that, with the runtime, never left to outlive the server on the database's files."""
    server = Server(data_dir=tmp_path / "data").start()
    try:
        [committer] = committers(server)
        kms_client(server).create_key()
    finally:
        server.stop()
    assert not alive(committer), "the committer was still running when the server had exited"
    assert "the audit committer" not in server.log()
    assert not (tmp_path / "data" / "keyledger.db-wal").exists()  # the last connection closed and checkpointed


def test_a_sealed_server_runs_no_committer(tmp_path: Path) -> None:
    """The committer is spawned before the root key is known; a sealed service stops it at once."""
    server = Server(data_dir=tmp_path / "sealed", env={"KEYLEDGER_ROOT_KEY_PROVIDER": "env"}).start()
    try:
        assert httpx.get(server.endpoint + "/healthz", timeout=10).json()["status"] == "sealed"
        deadline = time.monotonic() + 10
        while committers(server) and time.monotonic() < deadline:
            time.sleep(0.1)  # a stopped child is reaped by the server
        assert [pid for pid in committers(server) if alive(pid)] == []
    finally:
        server.stop()


def test_a_server_may_commit_its_own_records(tmp_path: Path) -> None:
    server = Server(data_dir=tmp_path / "data", env={"KEYLEDGER_AUDIT_COMMITTER": "thread"}).start()
    try:
        assert committers(server) == []
        kms_client(server).create_key()
    finally:
        server.stop()
    assert verify(server).ok
    with pytest.raises(SystemExit, match="KEYLEDGER_AUDIT_COMMITTER must be 'process'"):
        Settings.load(environ={"KEYLEDGER_AUDIT_COMMITTER": "both"}, data_dir=server.data_dir)
