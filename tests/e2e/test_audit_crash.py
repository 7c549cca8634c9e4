"""Crash consistency of the audit log, on SQLite and PostgreSQL: SIGKILL the server in the middle of a
concurrent burst, restart it on the same data, and check that everything a client was told is on record
and real, that nothing on record claims what did not happen, and that the chain still verifies."""
from __future__ import annotations

import os
import signal
import threading
import uuid
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from botocore.exceptions import BotoCoreError, ClientError

from tests.cli import run_keyledger
from tests.e2e.helpers import key_arn
from tests.e2e.test_audit_support import (
    FIRST_START,
    checkpoint,
    checkpoint_lines,
    cli_env,
    export_jsonl,
    kms_client,
    verify,
)
from tests.servers import Server

THREADS = 8
CYCLES = 10  # each cycle: CreateKey, Encrypt, DisableKey -> 30 calls per thread
JOIN_TIMEOUT = 120


@dataclass
class Answer:
    operation: str
    request_id: str
    error: str | None
    key_id: str | None
    output: dict[str, Any]


class Burst:
    def __init__(self, server: Server, kill_after: int) -> None:
        self.clients = [kms_client(server) for _ in range(THREADS)]  # built here: client creation is not thread-safe
        self.kill_after = kill_after
        self.answers: list[Answer] = []
        self.lost: list[tuple[str, str]] = []  # calls that got no answer (the server died under them)
        self.lock = threading.Condition()

    def _call(self, kms: Any, operation: str, key_id: str | None, **kwargs: Any) -> Answer | None:
        method = {"CreateKey": kms.create_key, "Encrypt": kms.encrypt, "DisableKey": kms.disable_key}[operation]
        try:
            output = method(**kwargs)
            answer = Answer(operation, output["ResponseMetadata"]["RequestId"], None,
                            output["KeyMetadata"]["KeyId"] if operation == "CreateKey" else key_id, output)
        except ClientError as error:
            answer = Answer(operation, error.response["ResponseMetadata"]["RequestId"],
                            error.response["Error"]["Code"], key_id, error.response)
        except BotoCoreError as error:  # connection refused / reset: no answer
            with self.lock:
                self.lost.append((operation, repr(error)))
            return None
        with self.lock:
            self.answers.append(answer)
            self.lock.notify_all()
        return answer

    def worker(self, index: int) -> None:
        kms = self.clients[index]
        for cycle in range(CYCLES):
            created = self._call(kms, "CreateKey", None, Description=f"crash burst {index}/{cycle}")
            if created is None:
                return
            if created.error:
                continue
            plaintext = f"crash-{index}-{cycle}-{uuid.uuid4().hex}".encode()
            if self._call(kms, "Encrypt", created.key_id, KeyId=created.key_id, Plaintext=plaintext) is None:
                return
            if self._call(kms, "DisableKey", created.key_id, KeyId=created.key_id) is None:
                return

    def wait_for_answers(self) -> None:
        with self.lock:
            for _ in range(600):
                if len(self.answers) >= self.kill_after:
                    return
                self.lock.wait(timeout=0.5)
        raise AssertionError(f"only {len(self.answers)} answers; the burst stalled")


def describe(kms: Any, key_id: str) -> dict[str, Any] | None:
    try:
        return kms.describe_key(KeyId=key_id)["KeyMetadata"]
    except ClientError as error:
        assert error.response["Error"]["Code"] == "NotFoundException", error.response
        return None


# One kill point per backend in `make test` (each attempt costs a burst and two starts); a deeper run kills at
# several points: KEYLEDGER_CRASH_ATTEMPTS=3 kills after 70, 100 and 130 answers.
ATTEMPTS = int(os.environ.get("KEYLEDGER_CRASH_ATTEMPTS", "1"))


@pytest.mark.parametrize("attempt", range(ATTEMPTS))
def test_sigkill_during_a_burst_loses_nothing_answered(servers, attempt: int) -> None:
    server = servers.start(name="crash", KEYLEDGER_AUDIT_CHECKPOINT_RECORDS="10")
    burst = Burst(server, kill_after=70 + 30 * attempt)
    threads = [threading.Thread(target=burst.worker, args=(i,), daemon=True) for i in range(THREADS)]
    for thread in threads:
        thread.start()
    burst.wait_for_answers()
    server.stop(signal.SIGKILL)
    for thread in threads:
        thread.join(timeout=JOIN_TIMEOUT)
    assert not any(t.is_alive() for t in threads), "a client thread never finished"
    answers = list(burst.answers)
    assert len(answers) < THREADS * CYCLES * 3, "the burst ended before the kill: nothing was interrupted"
    assert burst.lost, "no call lost its answer: the kill did not land during the burst"

    server = servers.start(name="crash", KEYLEDGER_AUDIT_CHECKPOINT_RECORDS="10")
    # The restarted server verified the crashed tail (records and the events they name) before serving.
    ready = httpx.get(server.endpoint + "/healthz", timeout=10)
    assert ready.status_code == 200 and ready.json()["status"] == "ready", ready.text
    kms = kms_client(server)
    records = export_jsonl(server)
    assert [r["seq"] for r in records] == list(range(1, len(records) + 1)), "seq is not dense after the crash"
    by_request = {}
    for record in records:
        assert record["requestID"] not in by_request, f"two records for request {record['requestID']}"
        by_request[record["requestID"]] = record

    # Everything a client was answered is on record, as answered (a fail-closed KMSInternalException is
    # the one answer that has no record by design).
    internal = [a for a in answers if a.error == "KMSInternalException"]
    for answer in answers:
        if answer.error == "KMSInternalException":
            continue
        record = by_request.get(answer.request_id)
        assert record is not None, f"{answer.operation} was answered ({answer.error or 'ok'}) but has no record"
        assert record["eventName"] == answer.operation
        assert record["errorCode"] == answer.error, f"{answer.operation} {answer.request_id}"
        if answer.key_id and answer.error is None:
            assert key_arn(answer.key_id) in [x["ARN"] for x in record["resources"]]

    # Every change a client was told about happened.
    for answer in answers:
        if answer.error is not None:
            continue
        if answer.operation == "CreateKey":
            assert describe(kms, answer.key_id) is not None, f"CreateKey answered {answer.key_id}, key is gone"
        if answer.operation == "DisableKey":
            metadata = describe(kms, answer.key_id)
            assert metadata is not None and metadata["KeyState"] == "Disabled", (answer.key_id, metadata)

    # Nothing on record claims a key that does not exist.
    created = [r for r in records if r["eventName"] == "CreateKey" and r["errorCode"] is None]
    assert len(created) >= len([a for a in answers if a.operation == "CreateKey" and a.error is None])
    for record in created:
        assert len(record["resources"]) == 1, record
        key_id = record["resources"][0]["ARN"].rsplit("/", 1)[-1]
        assert describe(kms, key_id) is not None, f"record seq {record['seq']} claims CreateKey of {key_id}; no such key"
    for record in records:
        if record["eventName"] == "DisableKey" and record["errorCode"] is None:
            key_id = record["resources"][0]["ARN"].rsplit("/", 1)[-1]
            metadata = describe(kms, key_id)
            assert metadata is not None and metadata["KeyState"] == "Disabled", (record["seq"], metadata)

    verdict = verify(server)
    assert verdict.ok, f"after the crash: {verdict.output}"
    # The restarted server appends to the same chain, and checkpoints keep linking up.
    kms.create_key(Description="after the crash")
    server.stop()
    head = len(export_jsonl(server))  # the crash's records, the DescribeKey checks above and this CreateKey
    assert head > len(records)
    assert checkpoint(server) == head
    verdict = verify(server)
    assert verdict.ok and f"OK: {head} records" in verdict.output, f"after restart and checkpoint: {verdict.output}"
    assert not internal, f"{len(internal)} calls answered KMSInternalException before the kill"


def test_interrupted_checkpoint_append_does_not_break_verification(servers) -> None:
    """A checkpoint is saved in the database, then appended to the file. If the process dies (or the append
    fails) between the two, the database has a checkpoint the file lacks. That is a crash, not tampering:
    the untouched log must still verify once the service carries on and signs later checkpoints.

    The window is emulated deterministically: one `audit checkpoint` runs with its checkpoint file in a
    directory that does not exist, so its save commits and its append fails -- the state a SIGKILL between
    the two leaves."""
    server = servers.start(name="server")
    kms = kms_client(server)
    key = kms.create_key()["KeyMetadata"]["KeyId"]
    server.stop()
    assert checkpoint(server) == FIRST_START + 1
    # Not a fixed count: the server's own checkpoint pass may already have signed one (at seq 0 or 1) when
    # the machine is slow enough that CreateKey and stop take longer than its first pass.
    file_before = checkpoint_lines(server)
    env = cli_env(server)
    env["KEYLEDGER_AUDIT_CHECKPOINT_FILE"] = str(server.data_dir / "no-such-directory" / "audit-checkpoints.jsonl")
    interrupted = run_keyledger(["audit", "checkpoint"], env, timeout=120)
    assert interrupted.returncode != 0, "the emulated append failure did not happen"
    assert checkpoint_lines(server) == file_before
    verdict = verify(server)
    assert verdict.ok, verdict.output

    server = servers.start(name="server")  # the service carries on
    kms = kms_client(server)
    kms.describe_key(KeyId=key)
    kms.encrypt(KeyId=key, Plaintext=b"after the interrupted checkpoint")
    server.stop()
    assert checkpoint(server) == FIRST_START + 3
    verdict = verify(server)
    assert verdict.ok, f"an untampered log fails verification after an interrupted checkpoint: {verdict.output}"
