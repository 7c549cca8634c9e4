"""Fail closed: when the audit record cannot be written, crypto calls answer KMSInternalException and hand
out nothing (no Plaintext, no CiphertextBlob); once storage is writable again they succeed, and the log
still verifies. SQLite: another connection holds the write lock. PostgreSQL: the database turns read-only."""
from __future__ import annotations

import base64
import sqlite3
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from botocore.exceptions import ClientError

from tests.e2e.test_audit_support import export_jsonl, kms_client, signed_post, verify
from tests.servers import Server, postgres_url

SECRET_MEMBERS = ("Plaintext", "CiphertextBlob")
RECOVERY_ATTEMPTS = 40


def crypto_calls(kms: Any, key_id: str, blob: bytes) -> dict[str, Callable[[], dict[str, Any]]]:
    return {
        "Decrypt": lambda: kms.decrypt(CiphertextBlob=blob),
        "Encrypt": lambda: kms.encrypt(KeyId=key_id, Plaintext=b"fail closed " + uuid.uuid4().bytes),
        "GenerateDataKey": lambda: kms.generate_data_key(KeyId=key_id, KeySpec="AES_256"),
    }


def assert_refused(name: str, call: Callable[[], dict[str, Any]]) -> str:
    """The call fails with KMSInternalException and its answer carries no secret; returns its requestID."""
    try:
        output = call()
    except ClientError as error:
        assert error.response["Error"]["Code"] == "KMSInternalException", f"{name}: {error.response['Error']}"
        for member in SECRET_MEMBERS:
            assert member not in error.response, f"{name}'s error answer carries {member}"
        return error.response["ResponseMetadata"]["RequestId"]
    raise AssertionError(f"{name} succeeded although its audit record cannot be written: "
                         f"{sorted(k for k in output if k != 'ResponseMetadata')}")


def assert_raw_refusal(server: Server, blob: bytes) -> str:
    """The wire answer itself: an error body with nothing but __type and message."""
    response = signed_post(server, "TrentService.Decrypt", {"CiphertextBlob": base64.b64encode(blob).decode()})
    assert response.status_code >= 500, response.text
    body = response.json()
    assert body.get("__type") == "KMSInternalException", body
    assert set(body) <= {"__type", "message"}, body
    return response.headers["x-amzn-RequestId"]


def recover(kms: Any, key_id: str, blob: bytes, plaintext: bytes) -> None:
    """Polls (bounded) until the crypto calls succeed again, then checks each once more."""
    for _ in range(RECOVERY_ATTEMPTS):
        try:
            if kms.decrypt(CiphertextBlob=blob)["Plaintext"] == plaintext:
                break
        except ClientError as error:
            assert error.response["Error"]["Code"] == "KMSInternalException", error.response
        time.sleep(0.5)
    else:
        raise AssertionError("crypto calls never recovered after storage became writable again")
    assert kms.decrypt(CiphertextBlob=blob)["Plaintext"] == plaintext
    again = kms.encrypt(KeyId=key_id, Plaintext=plaintext)["CiphertextBlob"]
    assert kms.decrypt(CiphertextBlob=again)["Plaintext"] == plaintext
    data_key = kms.generate_data_key(KeyId=key_id, KeySpec="AES_256")
    assert len(data_key["Plaintext"]) == 32


def check_log(server: Server, refused: list[str], answered: list[str]) -> None:
    records = export_jsonl(server)
    assert [r["seq"] for r in records] == list(range(1, len(records) + 1))
    by_request = {r["requestID"]: r for r in records}
    for request_id in answered:
        assert request_id in by_request, f"answered call {request_id} has no record"
    for request_id in refused:
        record = by_request.get(request_id)
        assert record is None or record["errorCode"] == "KMSInternalException", (
            f"a call refused for want of its record has a record claiming {record and record['errorCode']}")
    verdict = verify(server)
    assert verdict.ok, verdict.output


def exercise(server: Server, block: Callable[[], None], unblock: Callable[[], None],
             attempts: int = 3) -> tuple[list[str], list[str]]:
    """Encrypt once; block writes; every crypto call is refused; unblock; they succeed again.
    Returns (requestIDs of refused calls, requestIDs of answered calls)."""
    kms = kms_client(server)
    key_id = kms.create_key()["KeyMetadata"]["KeyId"]
    plaintext = b"before the outage " + uuid.uuid4().bytes
    first = kms.encrypt(KeyId=key_id, Plaintext=plaintext)
    blob = first["CiphertextBlob"]
    answered = [first["ResponseMetadata"]["RequestId"]]
    keys_before = sorted(k["KeyId"] for k in kms.list_keys(Limit=1000)["Keys"])
    refused: list[str] = []
    block()
    try:
        for _ in range(attempts):
            for name, call in crypto_calls(kms, key_id, blob).items():
                refused.append(assert_refused(name, call))
        refused.append(assert_raw_refusal(server, blob))
        # Key changes commit with their record: neither happens.
        refused.append(assert_refused("CreateKey", lambda: kms.create_key(Description="during the outage")))
        refused.append(assert_refused("DisableKey", lambda: kms.disable_key(KeyId=key_id)))
    finally:
        unblock()
    recover(kms, key_id, blob, plaintext)
    described = kms.describe_key(KeyId=key_id)
    assert described["KeyMetadata"]["KeyState"] == "Enabled", "a DisableKey refused for want of its record took effect"
    answered.append(described["ResponseMetadata"]["RequestId"])
    keys_after = sorted(k["KeyId"] for k in kms.list_keys(Limit=1000)["Keys"])
    assert keys_after == keys_before, "a CreateKey refused for want of its record created a key"
    return refused, answered


# -- SQLite --------------------------------------------------------------------------------------------------

def sqlite_case(tmp_path: Path) -> None:
    server = Server(data_dir=tmp_path / "server", env={"KEYLEDGER_SQLITE_BUSY_TIMEOUT_MS": "200"}).start()
    lock = sqlite3.connect(server.sqlite_file, timeout=10, isolation_level=None)
    try:
        def block() -> None:
            lock.execute("BEGIN EXCLUSIVE")  # holds the write lock until rollback

        def unblock() -> None:
            if lock.in_transaction:
                lock.rollback()

        refused, answered = exercise(server, block, unblock)
        server.stop()
        check_log(server, refused, answered)
    finally:
        lock.close()
        server.stop()


# -- PostgreSQL ------------------------------------------------------------------------------------------------

def _terminate(conn: Any, database: str) -> None:
    conn.execute(sa.text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                         "WHERE datname = :db AND pid <> pg_backend_pid()"), {"db": database})


def postgres_case(tmp_path: Path, base_url: str) -> None:
    database = f"kl_fc_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(base_url, isolation_level="AUTOCOMMIT")
    server: Server | None = None
    with admin.connect() as conn:
        conn.execute(sa.text(f"CREATE DATABASE {database}"))

    def read_only(on: bool) -> None:
        with admin.connect() as conn:
            conn.execute(sa.text(f"ALTER DATABASE {database} SET default_transaction_read_only = {'on' if on else 'off'}"))
            _terminate(conn, database)

    try:
        url = sa.engine.make_url(base_url).set(database=database).render_as_string(hide_password=False)
        server = Server(data_dir=tmp_path / "server", database_url=url).start()
        # Cutting the server's pooled connections may fail its first call or two on that alone (also
        # KMSInternalException); every crypto call after must fail on the read-only database.
        refused, answered = exercise(server, lambda: read_only(True), lambda: read_only(False))
        server.stop()
        check_log(server, refused, answered)
    finally:
        if server is not None:
            server.stop()
        read_only(False)
        with admin.connect() as conn:
            conn.execute(sa.text(f"DROP DATABASE IF EXISTS {database}"))
        admin.dispose()


def test_crypto_fails_closed_when_the_record_cannot_be_written(backend: str, tmp_path: Path) -> None:
    if backend == "sqlite":
        sqlite_case(tmp_path)
    else:
        url = postgres_url()
        assert url is not None
        postgres_case(tmp_path, url)
