"""Helpers shared by the audit end-to-end tests (test_audit_*.py); this module holds no tests.

Everything here talks to real things: the `keyledger audit ...` command line run as a subprocess against a
server's data directory / database, signed HTTP requests, and the event table itself (sqlite3 for SQLite,
SQLAlchemy for PostgreSQL) for the tamper tests.
"""
from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import boto3
import httpx
import sqlalchemy as sa
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials

from tests.cli import run_keyledger
from tests.servers import ADMIN_KEY_ID, ADMIN_SECRET, ROOT, Server
from tests.stored_states import plain, stored

AUDIT_LOG_ID = uuid.UUID("5d1b8f4e-7a0c-4e55-9b2f-6f3a1c0d8e21")
AUDIT_CHECKPOINTS_ID = uuid.UUID("9a4c2e71-3b8d-4f06-a1e5-0c7d9b2f4a63")
RECORD_TOPIC_SUFFIX = "AuditLog.RecordAppended"
CLI_TIMEOUT = 180
FIRST_BAD = re.compile(r"FAILED \(first bad seq (\d+)[,)]")
# The first start records the service's own act: the administrator access key it creates (seq 1).
FIRST_START = 1


def calls_only(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The records after the first start's own: those of the calls a test made."""
    boot = records[:FIRST_START]
    assert [(r["eventName"], r["eventType"]) for r in boot] == [("CreateAccessKey", "AwsServiceEvent")], boot
    return records[FIRST_START:]


# -- the command line --------------------------------------------------------------------------------

def cli_env(server: Server) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KEYLEDGER_", "AWS_"))}
    env.update(PYTHONPATH=str(ROOT), KEYLEDGER_DATA_DIR=str(server.data_dir))
    if server.database_url:
        env["KEYLEDGER_DATABASE_URL"] = server.database_url
    return env


def run(server: Server, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """`python -m api <args>` against the server's data directory / database."""
    proc = run_keyledger(args, cli_env(server), timeout=CLI_TIMEOUT)
    if check:
        assert proc.returncode == 0, (f"keyledger {' '.join(args)} exited {proc.returncode}:\n"
                                      f"stdout: {proc.stdout}\nstderr: {proc.stderr}")
    return proc


def audit(server: Server, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return run(server, "audit", *args, check=check)


def export_jsonl(server: Server, *args: str) -> list[dict[str, Any]]:
    out = audit(server, "export", "--format", "jsonl", *args).stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]


@dataclass
class Verdict:
    code: int
    output: str

    @property
    def ok(self) -> bool:
        return self.code == 0

    @property
    def first_bad_seq(self) -> int | None:
        found = FIRST_BAD.search(self.output)
        return int(found.group(1)) if found else None


def verify(server: Server, *args: str) -> Verdict:
    proc = audit(server, "verify", *args, check=False)
    return Verdict(proc.returncode, proc.stdout + proc.stderr)


def checkpoint(server: Server) -> int:
    """Forces a signed checkpoint; returns the seq it covers."""
    out = audit(server, "checkpoint").stdout
    found = re.search(r"checkpoint at seq (\d+)", out)
    assert found, f"audit checkpoint did not sign a checkpoint: {out!r}"
    return int(found.group(1))


def checkpoint_lines(server: Server) -> list[str]:
    path = server.data_dir / "audit-checkpoints.jsonl"
    return [ln for ln in path.read_text().splitlines() if ln.strip()] if path.exists() else []


# -- clients -------------------------------------------------------------------------------------------------

def kms_client(server: Server, *, key_id: str = ADMIN_KEY_ID, secret: str = ADMIN_SECRET, validate: bool = True,
               region: str = "us-east-1") -> Any:
    """A boto3 KMS client that sends each call exactly once. (botocore's retries "max_attempts" counts
    retries, not attempts: max_attempts=1 still retries a 5xx or a dropped connection once, with a new
    request ID. "total_max_attempts": 1 means one attempt.) validate=False turns off botocore's
    client-side parameter validation, so out-of-range values reach the server."""
    return boto3.client(
        "kms", endpoint_url=server.endpoint, region_name=region, aws_access_key_id=key_id,
        aws_secret_access_key=secret,
        config=Config(parameter_validation=validate, retries={"total_max_attempts": 1, "mode": "standard"},
                      connect_timeout=5, read_timeout=30))


# -- signed raw HTTP -----------------------------------------------------------------------------------

def signed_post(server: Server, target: str, body: dict[str, Any] | None = None, *, key_id: str = ADMIN_KEY_ID,
                secret: str = ADMIN_SECRET, region: str = "us-east-1") -> httpx.Response:
    """A SigV4-signed POST / with X-Amz-Target `target` (e.g. TrentService.Encrypt), sent as is."""
    data = json.dumps(body or {}).encode()
    request = AWSRequest(method="POST", url=server.endpoint + "/", data=data, headers={
        "Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": target})
    SigV4Auth(Credentials(key_id, secret), "kms", region).add_auth(request)
    return httpx.post(server.endpoint + "/", content=data, headers=dict(request.headers.items()), timeout=30)


# -- the event table -------------------------------------------------------------------------------------

class AuditTable:
    """Direct access to the audit records in `keyledger_events`, for tampering (the server must be stopped)."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.postgres = bool(server.database_url)

    # SQLite ---------------------------------------------------------------------------------------------
    def _sqlite(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.server.sqlite_file, timeout=30, isolation_level=None)
        return conn

    def _sqlite_log_id(self, conn: sqlite3.Connection) -> Any:
        """The stored form of the audit log's originator_id (a 16-byte blob, a uuid or a hex string)."""
        row = conn.execute("SELECT originator_id FROM keyledger_events WHERE topic LIKE ? LIMIT 1",
                           (f"%{RECORD_TOPIC_SUFFIX}",)).fetchone()
        assert row is not None, "no audit record in the database"
        stored = row[0]
        as_uuid = uuid.UUID(bytes=stored) if isinstance(stored, bytes) and len(stored) == 16 else uuid.UUID(str(stored))
        assert as_uuid == AUDIT_LOG_ID, f"audit records are stored under {as_uuid}, not {AUDIT_LOG_ID}"
        return stored

    def wal_checkpoint(self) -> None:
        conn = self._sqlite()
        try:
            result = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            assert result[0] == 0, f"wal_checkpoint(TRUNCATE) was blocked: {result}"
        finally:
            conn.close()

    # both ----------------------------------------------------------------------------------------------
    def states(self) -> dict[int, bytes]:
        """seq -> the state of every audit record, as JSON (tests/stored_states.py)."""
        if self.postgres:
            engine = sa.create_engine(self.server.database_url)
            try:
                with engine.connect() as conn:
                    rows = conn.execute(sa.text(
                        "SELECT originator_version, state FROM keyledger_events WHERE originator_id = :id "
                        "AND topic LIKE :topic ORDER BY originator_version"),
                        {"id": AUDIT_LOG_ID, "topic": f"%{RECORD_TOPIC_SUFFIX}"}).all()
            finally:
                engine.dispose()
        else:
            conn = self._sqlite()
            try:
                log_id = self._sqlite_log_id(conn)
                rows = conn.execute("SELECT originator_version, state FROM keyledger_events WHERE originator_id = ? "
                                    "AND topic LIKE ? ORDER BY originator_version",
                                    (log_id, f"%{RECORD_TOPIC_SUFFIX}")).fetchall()
            finally:
                conn.close()
        return {version - 1: plain(state) for version, state in rows}

    def set_states(self, states: dict[int, bytes]) -> None:
        """Overwrites the stored state of records (by seq, given as JSON, stored compressed) in one transaction."""
        sql = "UPDATE keyledger_events SET state = {state} WHERE originator_id = {id} AND originator_version = {version}"
        self._write([(sql, seq + 1, stored(state)) for seq, state in states.items()])

    def delete(self, seqs: Iterable[int]) -> None:
        self._write([("DELETE FROM keyledger_events WHERE originator_id = {id} AND originator_version = {version}",
                      seq + 1, None) for seq in seqs])

    def _write(self, statements: list[tuple[str, int, bytes | None]]) -> None:
        if self.postgres:
            engine = sa.create_engine(self.server.database_url)
            try:
                with engine.begin() as conn:
                    for sql, version, state in statements:
                        result = conn.execute(sa.text(sql.format(state=":state", id=":id", version=":version")),
                                              {"state": state, "id": AUDIT_LOG_ID, "version": version})
                        assert result.rowcount == 1, f"{sql} touched {result.rowcount} rows for version {version}"
            finally:
                engine.dispose()
            return
        conn = self._sqlite()
        try:
            log_id = self._sqlite_log_id(conn)
            conn.execute("BEGIN IMMEDIATE")
            for sql, version, state in statements:
                params = ((state,) if state is not None else ()) + (log_id, version)
                cursor = conn.execute(sql.format(state="?", id="?", version="?"), params)
                assert cursor.rowcount == 1, f"{sql} touched {cursor.rowcount} rows for version {version}"
            conn.execute("COMMIT")
        finally:
            conn.close()


def record_of(state: bytes) -> dict[str, Any]:
    return json.loads(state)["record"]


def with_record(state: bytes, **changes: Any) -> bytes:
    whole = json.loads(state)
    whole["record"].update(changes)
    return json.dumps(whole, separators=(",", ":")).encode()
