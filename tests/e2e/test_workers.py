"""KEYLEDGER_WORKERS: several server processes on one database append to one audit chain, in turn.

Both ways into the log run at once from both processes: key changes (their record commits in the change's
transaction) and crypto calls (group commit). Nothing may fail on the log's version, the chain must be dense
and verify, and every answered call must be on record exactly once."""
from __future__ import annotations

import threading
from typing import Any

from botocore.exceptions import ClientError

from tests.e2e.test_audit_support import checkpoint_lines, export_jsonl, kms_client, verify
from tests.servers import Server

THREADS = 12
ROUNDS = 8  # each: CreateKey, 3 x Encrypt, DescribeKey


def test_two_workers_keep_one_dense_verified_chain(servers) -> None:
    server = Server(data_dir=servers.tmp_path / "workers", database_url=servers.database_url(),
                    env={"KEYLEDGER_WORKERS": "2", "KEYLEDGER_AUDIT_CHECKPOINT_RECORDS": "40"})
    servers.servers.append(server)
    server.start(timeout=120)  # two worker processes take longer to come up
    clients = [kms_client(server) for _ in range(THREADS)]  # one keep-alive connection each, spread over workers
    answered: list[tuple[str, str]] = []
    failures: list[Any] = []
    lock = threading.Lock()

    def work(kms: Any) -> None:
        for _ in range(ROUNDS):
            try:
                calls = [("CreateKey", kms.create_key())]
                key_id = calls[0][1]["KeyMetadata"]["KeyId"]
                calls += [("Encrypt", kms.encrypt(KeyId=key_id, Plaintext=b"x" * 64)) for _ in range(3)]
                calls.append(("DescribeKey", kms.describe_key(KeyId=key_id)))
            except ClientError as error:
                with lock:
                    failures.append(error.response)
                return
            with lock:
                answered.extend((op, out["ResponseMetadata"]["RequestId"]) for op, out in calls)

    threads = [threading.Thread(target=work, args=(kms,)) for kms in clients]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert not failures, failures[:3]
    assert len(answered) == THREADS * ROUNDS * 5
    server.stop()

    records = export_jsonl(server)
    assert [r["seq"] for r in records] == list(range(1, len(records) + 1)), "seq is not dense"
    by_request: dict[str, dict[str, Any]] = {}
    for record in records:
        assert record["requestID"] not in by_request, f"two records for request {record['requestID']}"
        by_request[record["requestID"]] = record
    for operation, request_id in answered:
        assert by_request[request_id]["eventName"] == operation
        assert by_request[request_id]["errorCode"] is None
    verdict = verify(server)
    assert verdict.ok, verdict.output
    assert checkpoint_lines(server), "no checkpoint was signed"
