"""`keyledger history ...` against a real server: changes are made over the AWS API (boto3), then the
command line, run as a subprocess on the server's data directory / database, answers what each key was
at past moments, who changed it, and whether the projections replay to what is live.
"""
from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from datetime import datetime, timezone
from typing import Any

import sqlalchemy as sa

from tests.cli import run_keyledger
from tests.conftest import ServerFactory
from tests.e2e.helpers import keyledger
from tests.servers import ACCOUNT_ID, ROOT, Server

ADMIN_ARN = f"arn:aws:iam::{ACCOUNT_ID}:root"
TIMEOUT = 180


def history(server: Server, *args: str, expect: int = 0) -> subprocess.CompletedProcess:
    """`keyledger history <args>`."""
    return run(server, ["history"], *args, expect=expect)


def run(server: Server, command: list[str], *args: str, expect: int = 0) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KEYLEDGER_", "AWS_"))}
    env.update(PYTHONPATH=str(ROOT), KEYLEDGER_DATA_DIR=str(server.data_dir), COLUMNS="200")
    if server.database_url:
        env["KEYLEDGER_DATABASE_URL"] = server.database_url
    proc = run_keyledger([*command, *args], env, timeout=TIMEOUT)
    assert proc.returncode == expect, (f"{' '.join(args)} exited {proc.returncode}, expected {expect}:\n"
                                       f"stdout: {proc.stdout}\nstderr: {proc.stderr}")
    return proc


def as_json(proc: subprocess.CompletedProcess) -> Any:
    return json.loads(proc.stdout)


def moment() -> str:
    """Now, as epoch seconds with microseconds, taken after the server answered: its events are <= it."""
    time.sleep(0.02)  # keep the next change's timestamp clearly after this moment
    stamp = f"{time.time():.6f}"
    time.sleep(0.02)
    return stamp


def advance_and_maintain(server: Server, days: int) -> None:
    run(server, ["clock", "advance"], "--days", str(days))
    run(server, ["maintenance", "--json"])


def test_key_at_keys_at_and_timeline(servers: ServerFactory) -> None:
    server = servers.start()
    kms = server.client()
    before = moment()
    created = kms.create_key(Description="history", Tags=[{"TagKey": "team", "TagValue": "a"}])
    key_id = created["KeyMetadata"]["KeyId"]
    requests = [created["ResponseMetadata"]["RequestId"]]
    t_created = moment()
    alias = f"alias/history-{uuid.uuid4().hex[:8]}"
    kms.create_alias(AliasName=alias, TargetKeyId=key_id)
    grantee = f"arn:aws:iam::{ACCOUNT_ID}:user/history"
    for call in (lambda: kms.tag_resource(KeyId=key_id, Tags=[{"TagKey": "env", "TagValue": "prod"}]),
                 lambda: kms.create_grant(KeyId=key_id, GranteePrincipal=grantee, Operations=["Decrypt"]),
                 lambda: kms.disable_key(KeyId=key_id)):
        requests.append(call()["ResponseMetadata"]["RequestId"])
    t_disabled = moment()
    requests.append(kms.schedule_key_deletion(KeyId=key_id, PendingWindowInDays=7)["ResponseMetadata"]["RequestId"])
    advance_and_maintain(server, 8)

    then = as_json(history(server, "key-at", key_id, "--at", t_created, "--json"))
    assert (then["KeyMetadata"]["KeyState"], then["Aliases"], then["Grants"]) == ("Enabled", [], [])
    assert then["Tags"] == [{"TagKey": "team", "TagValue": "a"}]
    assert then["KeyMetadata"]["CreationDate"].endswith("Z") and then["Version"] == 1
    disabled = as_json(history(server, "key-at", key_id, "--at", t_disabled, "--json"))
    assert (disabled["KeyMetadata"]["KeyState"], disabled["Aliases"]) == ("Disabled", [alias])
    assert {t["TagKey"] for t in disabled["Tags"]} == {"team", "env"}
    assert [(g["GranteePrincipal"], g["Operations"]) for g in disabled["Grants"]] == [(grantee, ["Decrypt"])]
    by_alias = as_json(history(server, "key-at", alias, "--region", "us-east-1", "--at", t_disabled, "--json"))
    assert by_alias["KeyMetadata"]["KeyId"] == key_id
    rfc3339 = datetime.fromtimestamp(float(t_disabled), timezone.utc).isoformat().replace("+00:00", "Z")
    assert as_json(history(server, "key-at", key_id, "--at", rfc3339, "--json")) == disabled

    missing = history(server, "key-at", key_id, "--at", before, expect=1)
    assert f"Key arn:aws:kms:us-east-1:{ACCOUNT_ID}:key/{key_id} did not exist at" in missing.stderr
    future = history(server, "key-at", key_id, "--at", str(time.time() + 30 * 86400), expect=2)
    assert "future" in future.stderr

    states = as_json(history(server, "keys-at", "--at", t_disabled, "--state", "Disabled", "--json"))
    assert key_id in [a["KeyMetadata"]["KeyId"] for a in states]
    assert as_json(history(server, "keys-at", "--at", t_created, "--state", "Disabled", "--json")) == []

    events = as_json(history(server, "timeline", key_id, "--json"))
    assert [e["EventType"] for e in events] == ["Created", "Tagged", "GrantCreated", "Disabled", "DeletionScheduled",
                                                "Deleted"]
    assert [e["EventName"] for e in events] == ["CreateKey", "TagResource", "CreateGrant", "DisableKey",
                                                "ScheduleKeyDeletion", "DeleteKey"]
    assert [e["Actor"] for e in events] == [ADMIN_ARN] * 5 + ["kms.amazonaws.com"]
    assert [e["RequestId"] for e in events[:5]] == requests
    # A time printed by the timeline, given back as --at, lands on that very event.
    gone = as_json(history(server, "key-at", key_id, "--at", events[-1]["Time"], "--json"))
    assert (gone["KeyMetadata"]["KeyState"], gone["Aliases"], gone["Grants"], gone["Version"]) == ("Deleted", [], [], 6)

    table = history(server, "key-at", key_id, "--at", t_disabled).stdout
    assert key_id in table and "Disabled" in table and alias in table
    timeline_table = history(server, "timeline", key_id).stdout
    assert "DeletionScheduled" in timeline_table and ADMIN_ARN in timeline_table


def test_replay_proves_the_projections_and_rebuilds_the_past(servers: ServerFactory) -> None:
    server = servers.start()
    kms = server.client()
    keys = [kms.create_key(Description=f"replay {i}")["KeyMetadata"]["KeyId"] for i in range(3)]
    kms.create_alias(AliasName="alias/replay-a", TargetKeyId=keys[0])
    t_before = moment()
    kms.disable_key(KeyId=keys[1])
    kms.update_alias(AliasName="alias/replay-a", TargetKeyId=keys[2])
    kms.enable_key_rotation(KeyId=keys[2])

    keyledger(server, "principals", "create", "arn:aws:iam::111122223333:user/replayed")
    keyledger(server, "principals", "attach-policy", "arn:aws:iam::111122223333:user/replayed", "--name", "p",
              "--policy", '{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "kms:Encrypt", '
                          '"Resource": "*"}]}')
    ok = history(server, "replay")
    assert "OK: 3 keys, 1 aliases" in ok.stdout and "2 principals match" in ok.stdout and "events/s" in ok.stdout
    live = sa.create_engine(server.database_url or f"sqlite:///{server.sqlite_file}")
    try:  # a tampered principals row is a difference, like a tampered key row
        where = sa.text("SELECT policies_json FROM principals WHERE name = 'replayed'")
        update = sa.text("UPDATE principals SET policies_json = :v WHERE name = 'replayed'")
        with live.begin() as conn:
            original = conn.execute(where).scalar_one()
            conn.execute(update, {"v": "{}"})
        tampered = history(server, "replay", expect=1)
        assert "principals[" in tampered.stdout + tampered.stderr
        with live.begin() as conn:
            conn.execute(update, {"v": original})
    finally:
        live.dispose()

    into = servers.tmp_path / "past.db"
    past = history(server, "replay", "--until", t_before, "--into", f"sqlite:///{into}")
    assert "OK:" in past.stdout
    engine = sa.create_engine(f"sqlite:///{into}")
    try:
        with engine.connect() as conn:
            states = dict(conn.execute(sa.text("SELECT key_id, key_state FROM key_state")).all())
            target = conn.execute(sa.text("SELECT target_key_id FROM key_aliases")).scalar_one()
    finally:
        engine.dispose()
    assert states == {k: "Enabled" for k in keys} and target == keys[0]

    default_until = history(server, "replay", "--until", t_before)
    assert str(server.data_dir.resolve()) in default_until.stdout

    if servers.backend == "postgres":
        schema = "kl_replay_" + uuid.uuid4().hex[:8]
        servers.schemas.append(schema)  # dropped with the server's own schema
        separator = "&" if "?" in (servers.base_url or "") else "?"
        history(server, "replay", "--into", f"{servers.base_url}{separator}options=-csearch_path%3D{schema}")

    live = sa.create_engine(server.database_url or f"sqlite:///{server.sqlite_file}")
    try:
        with live.begin() as conn:
            conn.execute(sa.text("UPDATE key_state SET key_state = 'Enabled' WHERE key_id = :k"), {"k": keys[1]})
            conn.execute(sa.text("DELETE FROM key_event_index WHERE key_id = :k AND version = 1"), {"k": keys[0]})
    finally:
        live.dispose()
    different = history(server, "replay", expect=1)
    assert f"key_state[{keys[1]}] key_state: live 'Enabled', rebuilt 'Disabled'" in different.stdout
    assert f"key_event_index[{keys[0]}, 1] is only in the rebuilt table" in different.stdout
