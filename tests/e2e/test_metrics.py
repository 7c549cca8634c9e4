"""GET /metrics: Prometheus counters of the calls answered (by operation and AWS error code), their latency,
the audit group commit and its failures; labels from fixed sets only, and nothing in them that names a key,
a principal or a credential."""
from __future__ import annotations

import sqlite3
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from botocore.exceptions import ClientError
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.test_audit_support import kms_client, signed_post
from tests.servers import ADMIN_KEY_ID, Server


def scrape(server: Server) -> tuple[str, dict[tuple[str, tuple[tuple[str, str], ...]], float]]:
    response = httpx.get(server.endpoint + "/metrics", timeout=10)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(response.text) for s in family.samples}
    return response.text, samples


def requests(samples: dict, operation: str, error_code: str = "") -> float:
    return samples.get(("keyledger_requests_total", (("error_code", error_code), ("operation", operation))), 0.0)


def refused(call: Any) -> str:
    with pytest.raises(ClientError) as error:
        call()
    return error.value.response["Error"]["Code"]


def test_calls_are_counted_by_operation_and_error_code(servers) -> None:
    server = servers.start()
    kms = kms_client(server)
    key = kms.create_key()["KeyMetadata"]
    for _ in range(3):
        kms.encrypt(KeyId=key["KeyId"], Plaintext=b"counted")
    assert refused(lambda: kms.decrypt(CiphertextBlob=b"\x01" + bytes(80))) == "InvalidCiphertextException"
    assert refused(lambda: kms.describe_key(KeyId=str(uuid.uuid4()))) == "NotFoundException"
    bogus = "TrentService.NoSuchOperation" + uuid.uuid4().hex
    assert signed_post(server, bogus).json()["__type"].endswith("UnknownOperationException")

    text, samples = scrape(server)
    assert requests(samples, "CreateKey") == 1
    assert requests(samples, "Encrypt") == 3
    assert requests(samples, "Decrypt", "InvalidCiphertextException") == 1
    assert requests(samples, "DescribeKey", "NotFoundException") == 1
    assert requests(samples, "unknown", "UnknownOperationException") == 1  # not the name the client made up
    assert samples[("keyledger_request_duration_seconds_count", (("operation", "Encrypt"),))] == 3
    answered = sum(v for (name, _), v in samples.items() if name == "keyledger_requests_total")
    # Every call's record is on the log; a key change's commits with the change, the rest by group commit.
    assert samples[("keyledger_audit_records_total", ())] == answered - requests(samples, "CreateKey")
    assert samples[("keyledger_audit_failed_records_total", ())] == 0
    assert samples[("keyledger_sealed", ())] == 0
    for secretish in (key["KeyId"], key["Arn"], ADMIN_KEY_ID, bogus, "111122223333"):
        assert secretish not in text


def test_records_that_could_not_be_written_are_counted(tmp_path: Path) -> None:
    server = Server(data_dir=tmp_path / "server", env={"KEYLEDGER_SQLITE_BUSY_TIMEOUT_MS": "200"}).start()
    lock = sqlite3.connect(server.sqlite_file, timeout=10, isolation_level=None)
    try:
        kms = kms_client(server)
        key_id = kms.create_key()["KeyMetadata"]["KeyId"]
        lock.execute("BEGIN EXCLUSIVE")  # no one else can write: records cannot be made durable
        assert refused(lambda: kms.encrypt(KeyId=key_id, Plaintext=b"x")) == "KMSInternalException"
        lock.rollback()
        _, samples = scrape(server)
        assert requests(samples, "Encrypt", "KMSInternalException") == 1
        assert samples[("keyledger_audit_failed_records_total", ())] >= 1
    finally:
        lock.close()
        server.stop()


def test_the_endpoint_can_be_turned_off(tmp_path: Path) -> None:
    server = Server(data_dir=tmp_path / "server", env={"KEYLEDGER_METRICS": "false"}).start()
    try:
        assert httpx.get(server.endpoint + "/metrics", timeout=10).status_code == 404
        assert kms_client(server).list_keys()["Keys"] == []
    finally:
        server.stop()
