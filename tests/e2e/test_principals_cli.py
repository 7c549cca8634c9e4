"""`keyledger principals|access-keys ...` against a running server, on SQLite and PostgreSQL: the operator
creates users, roles and access keys with the command line (direct database access) while the server runs,
callers use the new keys with boto3, and the server follows every change within its cache time
(KEYLEDGER_KEY_CACHE_SECONDS, 1 s). Each change is an audited IAM call; no secret reaches the database, the
audit log, the data directory or the server's output."""
from __future__ import annotations

import json
import os
import stat
import subprocess
import time
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from tests.cli import run_keyledger
from tests.e2e.helpers import code, postgres_tables, secret_hits
from tests.e2e.test_audit_support import export_jsonl, verify
from tests.servers import ACCOUNT_ID, ADMIN_KEY_ID, ROOT, Server
from tests.stored_states import sqlite_states

ALICE = f"arn:aws:iam::{ACCOUNT_ID}:user/alice"
DEPLOY = f"arn:aws:iam::{ACCOUNT_ID}:role/apps/deploy"
OTHER_ACCOUNT = "444455556666"
HANG_SECONDS = 30.0  # a change that has not shown by then never will: the cache's TTL is 1 s
ENCRYPT_ONLY = json.dumps({"Version": "2012-10-17", "Statement": [
    {"Sid": "UseKeys", "Effect": "Allow", "Action": ["kms:Encrypt", "kms:DescribeKey", "kms:CreateKey", "kms:ListKeys"],
     "Resource": "*"}]})


def keyledger(server: Server, *args: str, expect: int = 0) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KEYLEDGER_", "AWS_"))}
    env.update(PYTHONPATH=str(ROOT), KEYLEDGER_DATA_DIR=str(server.data_dir), COLUMNS="200")
    if server.database_url:
        env["KEYLEDGER_DATABASE_URL"] = server.database_url
    proc = run_keyledger(args, env, timeout=120)
    assert proc.returncode == expect, (f"keyledger {' '.join(args)} exited {proc.returncode}, expected {expect}:\n"
                                       f"stdout: {proc.stdout}\nstderr: {proc.stderr}")
    return proc


def as_json(proc: subprocess.CompletedProcess) -> Any:
    return json.loads(proc.stdout)


def kms(server: Server, key_id: str, secret: str) -> Any:
    return server.client(key_id=key_id, secret=secret)


def refused_eventually(call: Any) -> None:
    """Calls until the server answers UnrecognizedClientException. How soon is the cache's business
    (tests/unit/test_ttl_cache.py proves the TTL on a moved clock); the deadline only stops a hang."""
    deadline = time.monotonic() + HANG_SECONDS
    while True:
        try:
            call()
        except ClientError as error:
            assert code(error) == "UnrecognizedClientException", error.response
            return
        if time.monotonic() > deadline:
            pytest.fail(f"the key still worked {HANG_SECONDS} s after the change")
        time.sleep(0.05)


def accepted_eventually(call: Any) -> None:
    deadline = time.monotonic() + HANG_SECONDS
    while True:
        try:
            call()
            return
        except ClientError as error:
            assert code(error) == "UnrecognizedClientException", error.response
        if time.monotonic() > deadline:
            pytest.fail(f"the key was still refused {HANG_SECONDS} s after the change")
        time.sleep(0.05)


def stored_bytes(server: Server, backend: str) -> bytes:
    if backend == "postgres":
        return b"\n".join(postgres_tables(server).values())
    return b"\n".join([p.read_bytes() for p in sorted(server.data_dir.glob("keyledger.db*"))]
                      + [sqlite_states(server.data_dir / "keyledger.db")])


def assert_secret_nowhere(server: Server, backend: str, secrets: dict[str, bytes], key_id: str) -> None:
    stored = stored_bytes(server, backend)
    assert key_id.encode() in stored, "positive control: the scan must see the access key id"
    others = b"\n".join(p.read_bytes() for p in sorted(server.data_dir.rglob("*")) if p.is_file()
                        and p.name not in ("root-key", "admin-credentials") and not p.name.startswith("keyledger.db"))
    exported = json.dumps(export_jsonl(server)).encode()
    assert key_id.encode() in exported, "positive control: the audit log names the access key id"
    places = {"database": stored, "data directory": others, "server output": server.log().encode(),
              "audit log": exported}
    assert secret_hits(places, secrets) == []


def test_a_users_key_lifecycle_while_the_server_runs(servers, backend) -> None:
    server = servers.start()
    policy_file = servers.tmp_path / "encrypt-only.json"
    policy_file.write_text(ENCRYPT_ONLY)

    created = as_json(keyledger(server, "principals", "create", ALICE, "--json"))
    assert (created["Arn"], created["Type"]) == (ALICE, "user") and created["PrincipalId"].startswith("AIDA")
    keyledger(server, "principals", "attach-policy", ALICE, "--name", "encrypt-only", "--policy-file", str(policy_file))
    new = as_json(keyledger(server, "access-keys", "create", "--principal", ALICE, "--json"))["AccessKey"]
    key_id, secret = new["AccessKeyId"], new["SecretAccessKey"]
    assert (new["Principal"], new["ActsAs"], new["Status"]) == (ALICE, ALICE, "Active")

    alice = kms(server, key_id, secret)
    answered = alice.create_key(Description="made by alice")
    request_id = answered["ResponseMetadata"]["RequestId"]
    # Its identity policy allows these (the default key policy delegates to it); what matters here is who the
    # server says the caller is.
    assert alice.list_keys()["Keys"]

    conflict = keyledger(server, "principals", "delete", ALICE, expect=1)
    assert "DeleteConflict" in conflict.stderr and key_id in conflict.stderr and "--force" in conflict.stderr

    keyledger(server, "access-keys", "disable", key_id)
    refused_eventually(alice.list_keys)
    keyledger(server, "access-keys", "enable", key_id)
    accepted_eventually(alice.list_keys)
    keyledger(server, "access-keys", "delete", key_id)
    refused_eventually(alice.list_keys)
    assert as_json(keyledger(server, "access-keys", "list", "--principal", ALICE, "--json")) == []

    keyledger(server, "principals", "delete", ALICE, expect=1)  # the policy is still attached
    deleted = keyledger(server, "principals", "delete", ALICE, "--force", "--json")
    assert as_json(deleted)["DeletedPolicyNames"] == ["encrypt-only"]
    assert ALICE not in [p["Arn"] for p in as_json(keyledger(server, "principals", "list", "--json"))]
    keyledger(server, "principals", "show", ALICE, expect=1)

    records = export_jsonl(server)
    call = next(r for r in records if r["requestID"] == request_id)
    assert call["eventName"] == "CreateKey" and call["errorCode"] is None
    alice_id = call["userIdentity"]["principalId"]
    assert call["userIdentity"] == {"type": "IAMUser", "principalId": alice_id, "arn": ALICE, "userName": "alice",
                                    "accountId": ACCOUNT_ID, "accessKeyId": key_id}
    assert alice_id.startswith("AIDA") and len(alice_id) == 21  # IAM's unique id of the user, as CloudTrail has it
    refused = [r for r in records if r["errorCode"] == "UnrecognizedClientException"]
    assert refused and all(r["userIdentity"]["accessKeyId"] == key_id for r in refused)

    iam = [r for r in records if r["eventSource"] == "iam.amazonaws.com"]
    assert [(r["eventName"], r["errorCode"]) for r in iam] == [
        ("CreateUser", None), ("PutUserPolicy", None), ("CreateAccessKey", None), ("DeleteUser", "DeleteConflict"),
        ("UpdateAccessKey", None), ("UpdateAccessKey", None), ("DeleteAccessKey", None),
        ("DeleteUser", "DeleteConflict"), ("DeleteUser", None)]
    for record in iam:
        assert record["userIdentity"]["type"] == "Operator" and record["userIdentity"]["invokedBy"] == "keyledger-cli"
        assert record["recipientAccountId"] == ACCOUNT_ID and record["readOnly"] is False
    assert iam[2]["responseElements"]["accessKey"] == {"userName": "alice", "accessKeyId": key_id,
                                                      "status": "Active", "createDate": new["CreateDate"][:19] + "Z"}
    assert [r["requestParameters"].get("status") for r in iam[4:6]] == ["Inactive", "Active"]
    assert iam[1]["requestParameters"]["policyDocument"] == ENCRYPT_ONLY
    assert iam[-1]["additionalEventData"] == {"deletedAccessKeyIds": [], "deletedPolicyNames": ["encrypt-only"],
                                              "authorizedByRule": "operator"}
    assert all(r["additionalEventData"]["authorizedByRule"] == "operator" for r in iam)  # no policy was asked
    assert verify(server).ok

    server.stop()
    assert_secret_nowhere(server, backend, {"alice's secret": secret.encode()}, key_id)


def test_role_keys_act_as_sessions_and_accounts_are_apart(servers, backend, monkeypatch) -> None:
    server = servers.start()
    keyledger(server, "principals", "create", DEPLOY)
    keyledger(server, "principals", "attach-policy", DEPLOY, "--name", "keys", "--policy", ENCRYPT_ONLY)
    credentials = servers.tmp_path / "aws" / "credentials"
    credentials.parent.mkdir()
    credentials.write_text("[existing]\naws_access_key_id = AKIAEXISTING\naws_secret_access_key = x\n")
    made = keyledger(server, "access-keys", "create", "--principal", DEPLOY, "--credentials-file", str(credentials),
                     "--profile", "deploy")
    assert stat.S_IMODE(credentials.stat().st_mode) == 0o600
    role_key = made.stdout.split("AccessKeyId:")[1].split()[0]
    written = credentials.read_text()
    assert "[existing]" in written and f"[deploy]\naws_access_key_id = {role_key}\n" in written
    role_secret = written.split("[deploy]")[1].split("aws_secret_access_key = ")[1].split()[0]
    assert role_secret not in made.stdout + made.stderr, "a key written to a file is not also printed"
    keyledger(server, "access-keys", "create", "--principal", DEPLOY, "--credentials-file", str(credentials),
              "--profile", "deploy", expect=2)

    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(credentials))
    monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)
    session = boto3.Session(profile_name="deploy", region_name="us-east-1")
    role = session.client("kms", endpoint_url=server.endpoint, config=Config(retries={"total_max_attempts": 1}))
    request_id = role.create_key()["ResponseMetadata"]["RequestId"]
    acts_as = f"arn:aws:sts::{ACCOUNT_ID}:assumed-role/deploy/{role_key}"
    keys = as_json(keyledger(server, "access-keys", "list", "--principal", DEPLOY, "--json"))
    assert [(k["AccessKeyId"], k["ActsAs"], k["Status"]) for k in keys] == [(role_key, acts_as, "Active")]

    # Another account's root: no `principals create` needed; it sees its own account's keys only.
    other = as_json(keyledger(server, "access-keys", "create", "--principal", f"arn:aws:iam::{OTHER_ACCOUNT}:root",
                              "--json"))["AccessKey"]
    assert other["ActsAs"] == f"arn:aws:iam::{OTHER_ACCOUNT}:root"
    tenant = kms(server, other["AccessKeyId"], other["SecretAccessKey"])
    assert tenant.list_keys()["Keys"] == []
    tenant_key = tenant.create_key()["KeyMetadata"]
    assert tenant_key["AWSAccountId"] == OTHER_ACCOUNT and f":{OTHER_ACCOUNT}:key/" in tenant_key["Arn"]
    assert [k["KeyId"] for k in tenant.list_keys()["Keys"]] == [tenant_key["KeyId"]]
    admin_keys = {k["KeyId"] for k in server.client().list_keys(Limit=1000)["Keys"]}
    assert tenant_key["KeyId"] not in admin_keys and admin_keys
    listed = as_json(keyledger(server, "access-keys", "list", "--account", OTHER_ACCOUNT, "--json"))
    assert [k["AccessKeyId"] for k in listed] == [other["AccessKeyId"]]
    root = as_json(keyledger(server, "principals", "show", f"arn:aws:iam::{ACCOUNT_ID}:root", "--json"))
    assert [k["AccessKeyId"] for k in root["AccessKeys"]] == [ADMIN_KEY_ID]  # the first-start key is the root's

    records = {r["requestID"]: r for r in export_jsonl(server)}
    identity = records[request_id]["userIdentity"]
    assert (identity["type"], identity["arn"], identity["accessKeyId"]) == ("AssumedRole", acts_as, role_key)
    role_id = identity["sessionContext"]["sessionIssuer"]["principalId"]
    assert role_id.startswith("AROA") and identity["principalId"] == f"{role_id}:{role_key}"
    assert identity["sessionContext"]["sessionIssuer"] == {
        "type": "Role", "principalId": role_id, "arn": DEPLOY, "accountId": ACCOUNT_ID, "userName": "deploy"}
    tenant_records = [r for r in records.values() if r["userIdentity"].get("accountId") == OTHER_ACCOUNT]
    assert {r["eventName"] for r in tenant_records} == {"ListKeys", "CreateKey"}
    assert verify(server).ok

    keyledger(server, "principals", "delete", DEPLOY, "--force")
    refused_eventually(role.list_keys)  # a deleted principal's keys stop working
    server.stop()
    assert_secret_nowhere(server, backend, {"role secret": role_secret.encode(),
                                            "tenant secret": other["SecretAccessKey"].encode()}, role_key)


def test_refusals_are_clear_exit_non_zero_and_are_audited(tmp_path: Path) -> None:
    server = Server(data_dir=tmp_path / "cli-only")  # the command line alone, on a fresh data directory
    bad = keyledger(server, "principals", "create", "arn:aws:iam::1234:user/x", expect=2)
    assert "ValidationError" in bad.stderr and "12-digit account" in bad.stderr
    assert "NoSuchEntity" in keyledger(server, "principals", "show", ALICE, expect=1).stderr
    keyledger(server, "principals", "create", ALICE)
    assert "EntityAlreadyExists" in keyledger(server, "principals", "create",
                                               f"arn:aws:iam::{ACCOUNT_ID}:user/ALICE", expect=1).stderr
    malformed = keyledger(server, "principals", "attach-policy", ALICE, "--name", "p", "--policy",
                          '{"Version": "2012-10-17", "Statement": {"Effect": "Allow", "Action": "kms:Encrypt"}}',
                          expect=2)
    assert "MalformedPolicyDocument: Policy 'p': Statement 1 needs 'Resource' or 'NotResource'." in malformed.stderr
    assert "not valid JSON" in keyledger(server, "principals", "attach-policy", ALICE, "--name", "p", "--policy",
                                         "{", expect=2).stderr
    keyledger(server, "principals", "attach-policy", ALICE, "--name", "p", expect=2)  # neither --policy nor a file
    root = f"arn:aws:iam::{ACCOUNT_ID}:root"
    assert "account root" in keyledger(server, "principals", "attach-policy", root, "--name", "p", "--policy",
                                       ENCRYPT_ONLY, expect=2).stderr
    assert "NoSuchEntity" in keyledger(server, "principals", "detach-policy", ALICE, "--name", "nope", expect=1).stderr
    assert "NoSuchEntity" in keyledger(server, "access-keys", "disable", "AKIANOSUCHKEY0000000", expect=1).stderr
    for _ in range(2):
        keyledger(server, "access-keys", "create", "--principal", ALICE, "--json")
    assert "LimitExceeded" in keyledger(server, "access-keys", "create", "--principal", ALICE, expect=1).stderr
    assert "role session" in keyledger(server, "access-keys", "create", "--principal",
                                       f"arn:aws:sts::{ACCOUNT_ID}:assumed-role/deploy/s", expect=2).stderr
    table = keyledger(server, "principals", "list").stdout
    assert ALICE in table and "root" in table

    failed = [(r["eventName"], r["errorCode"]) for r in export_jsonl(server) if r["errorCode"]]
    assert failed == [("CreateUser", "ValidationError"), ("CreateUser", "EntityAlreadyExists"),
                      ("PutUserPolicy", "MalformedPolicyDocument"), ("PutUserPolicy", "MalformedPolicyDocument"),
                      ("PutUserPolicy", "ValidationError"), ("DeleteUserPolicy", "NoSuchEntity"),
                      ("UpdateAccessKey", "NoSuchEntity"), ("CreateAccessKey", "LimitExceeded"),
                      ("CreateAccessKey", "ValidationError")]
    assert verify(server).ok
