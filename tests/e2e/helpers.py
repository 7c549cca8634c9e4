"""Small helpers shared by the end-to-end tests (no fixtures here: those live in tests/conftest.py)."""
from __future__ import annotations

import base64
import json
import os
import time
import uuid
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from tests.cli import run_keyledger
from tests.servers import ACCOUNT_ID, ADMIN_KEY_ID, ADMIN_SECRET, ROOT, Server

REGION = "us-east-1"


def code(error: ClientError | BaseException) -> str:
    """The AWS error code of a botocore ClientError."""
    assert isinstance(error, ClientError), f"expected a ClientError, got {error!r}"
    return error.response["Error"]["Code"]


def status(error: ClientError) -> int:
    return error.response["ResponseMetadata"]["HTTPStatusCode"]


def unvalidated_client(server: Server, region: str = REGION) -> Any:
    """A boto3 KMS client that sends what it is given: botocore's client-side parameter validation is off,
    so out-of-range values (NumberOfBytes=0, ...) reach the server and the server's answer is tested."""
    return boto3.client(
        "kms", endpoint_url=server.endpoint, region_name=region, aws_access_key_id=ADMIN_KEY_ID,
        aws_secret_access_key=ADMIN_SECRET,
        config=Config(parameter_validation=False, retries={"max_attempts": 1, "mode": "standard"},
                      connect_timeout=5, read_timeout=30),
    )


def create_key(kms: Any, **kwargs: Any) -> dict[str, Any]:
    """CreateKey; returns KeyMetadata."""
    return kms.create_key(**kwargs)["KeyMetadata"]


def unique_alias(prefix: str = "e2e") -> str:
    return f"alias/{prefix}-{uuid.uuid4().hex[:12]}"


def key_arn(key_id: str, region: str = REGION, account: str = ACCOUNT_ID) -> str:
    return f"arn:aws:kms:{region}:{account}:key/{key_id}"


def alias_arn(alias_name: str, region: str = REGION, account: str = ACCOUNT_ID) -> str:
    return f"arn:aws:kms:{region}:{account}:{alias_name}"


def all_key_forms(kms: Any, key_id: str) -> dict[str, str]:
    """The four KeyId forms naming ``key_id``: key id, key ARN, alias name (created here), alias ARN."""
    alias = unique_alias("form")
    kms.create_alias(AliasName=alias, TargetKeyId=key_id)
    return {"key id": key_id, "key ARN": key_arn(key_id), "alias name": alias, "alias ARN": alias_arn(alias)}


def secret_forms(secret: bytes) -> list[bytes]:
    """How a secret could show up in stored bytes: raw, base64 (both alphabets), hex."""
    b64 = base64.b64encode(secret)
    return [secret, b64, b64.rstrip(b"="), base64.urlsafe_b64encode(secret).rstrip(b"="),
            secret.hex().encode(), secret.hex().upper().encode()]


# -- the keyledger command line, run against a test server's data directory / database ---------------

def keyledger(server: Server, *args: str) -> str:
    """Runs ``keyledger <args>`` as an operator would; returns stdout, fails the test on a non-zero exit."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KEYLEDGER_", "AWS_"))}
    env.update(PYTHONPATH=str(ROOT), KEYLEDGER_DATA_DIR=str(server.data_dir))
    if server.database_url:
        env["KEYLEDGER_DATABASE_URL"] = server.database_url
    proc = run_keyledger(args, env, timeout=120)
    assert proc.returncode == 0, f"keyledger {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def maintenance(server: Server) -> dict[str, Any]:
    return json.loads(keyledger(server, "maintenance", "--json").strip().splitlines()[-1])


def advance_days(server: Server, days: float) -> None:
    keyledger(server, "clock", "advance", "--days", str(days))
    time.sleep(1.2)  # the server re-reads the clock offset at most once a second


def error_code(call: Any, *args: Any, **kwargs: Any) -> str:
    with pytest.raises(ClientError) as info:
        call(*args, **kwargs)
    return code(info.value)


def secret_hits(stored: dict[str, bytes], secrets: dict[str, bytes]) -> list[str]:
    """Where any form of any secret (raw, base64, hex, see secret_forms) appears in the stored bytes."""
    found = []
    for where, haystack in stored.items():
        for label, secret in secrets.items():
            for form in secret_forms(secret):
                if form in haystack:
                    found.append(f"{label} in {where} ({'raw' if form == secret else form[:12]!r}...)")
    return found


def listed(call: Any, member: str, field: str) -> set[str]:
    """Every ``field`` of every page of a List* call, following NextMarker (bounded)."""
    out, marker = set(), None
    for _ in range(100):
        page = call(Limit=100, **({"Marker": marker} if marker else {}))
        out |= {item[field] for item in page[member]}
        if not page["Truncated"]:
            return out
        marker = page["NextMarker"]
    raise AssertionError(f"{member} never stopped paginating")


def postgres_tables(server: Server) -> dict[str, bytes]:
    """Every value of every table in the server's PostgreSQL schema, as bytes, per table."""
    import sqlalchemy as sa

    from tests.stored_states import plain

    schema = server.postgres_schema
    engine = sa.create_engine(server.database_url)
    out: dict[str, bytes] = {}
    try:
        with engine.connect() as conn:
            tables = [r[0] for r in conn.execute(sa.text(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = :s"), {"s": schema})]
            assert "backing_keys" in tables and "keyledger_events" in tables, tables
            for table in tables:
                chunks = []
                for row in conn.execute(sa.text(f'SELECT * FROM "{schema}"."{table}"')):
                    for value in row:
                        if isinstance(value, memoryview):
                            value = value.tobytes()
                        if value is not None:
                            chunks.append(value if isinstance(value, bytes) else str(value).encode("utf-8"))
                        if isinstance(value, bytes) and table in ("keyledger_events", "keyledger_snapshots"):
                            chunks.append(plain(value))  # a compressed state's JSON (tests/stored_states.py)
                out[table] = b"\n".join(chunks)
    finally:
        engine.dispose()
    return out
