"""The command line as a new user meets it (issue 16), against a real server and its store: each case the
issue lists, as a regression test."""
from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Iterator

import pytest
from typer.testing import CliRunner

from tests.cli import run_keyledger
from tests.conftest import ServerFactory
from tests.servers import ACCOUNT_ID, ROOT, Server, free_port

ROOT_ARN = f"arn:aws:iam::{ACCOUNT_ID}:root"


def run(server: Server | None, *args: str, expect: int = 0, columns: int = 80, env: dict | None = None,
        data_dir: Path | None = None, process: bool = False) -> subprocess.CompletedProcess:
    """``keyledger <args>`` in a terminal ``columns`` wide (80: where truncation used to happen); in a process of
    its own for ``serve`` and when ``process`` (the entry point itself is what is tested), else in this one
    (tests/cli.py)."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("KEYLEDGER_", "AWS_"))}
    environment.update(PYTHONPATH=str(ROOT), COLUMNS=str(columns))
    if server is not None:
        environment["KEYLEDGER_DATA_DIR"] = str(server.data_dir)
        if server.database_url:
            environment["KEYLEDGER_DATABASE_URL"] = server.database_url
    if data_dir is not None:
        environment["KEYLEDGER_DATA_DIR"] = str(data_dir)
    environment.update(env or {})
    proc = run_keyledger(args, environment, timeout=120, subprocess_only=process or args[:1] == ("serve",))
    assert proc.returncode == expect, (f"keyledger {' '.join(args)} exited {proc.returncode}, expected {expect}:\n"
                                       f"{proc.stdout}\n{proc.stderr}")
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    factory = ServerFactory("sqlite", tmp_path)
    try:
        yield factory.start("cli")
    finally:
        factory.close()


# -- help ---------------------------------------------------------------------------------------------

def _commands(group, path=()):  # every leaf command of the click tree, with its path
    for name, command in getattr(group, "commands", {}).items():
        if hasattr(command, "commands"):
            yield from _commands(command, (*path, name))
        else:
            yield (*path, name), command


def test_help_keeps_every_flags_variable_and_default() -> None:
    import typer.main

    from api.cli import cli

    runner = CliRunner()
    group = typer.main.get_command(cli)
    checked = 0
    for path, command in _commands(group):
        result = runner.invoke(cli, [*path, "--help"], env={"COLUMNS": "400"}, terminal_width=400)
        assert result.exit_code == 0, (path, result.output)
        for param in command.params:
            text = getattr(param, "help", None) or ""
            if "[env KEYLEDGER_" in text.replace("\\", ""):
                variable = text.split("[env ", 1)[1].split(";")[0].split("]")[0]
                assert f"[env {variable}" in result.output, (path, param.name, result.output)
                checked += 1
    assert checked > 30  # data dir and database URL on every command, serve's flags, ...
    serve = runner.invoke(cli, ["serve", "--help"], env={"COLUMNS": "400"}, terminal_width=400).output
    for shown in ("[env KEYLEDGER_HOST; default 127.0.0.1]", "[env KEYLEDGER_PORT; default 8080]",
                  "[env KEYLEDGER_WORKERS; default 1]", "[env KEYLEDGER_MAX_HEADER_BYTES; default 16384]"):
        assert shown in serve


def test_version() -> None:
    assert run(None, "--version", process=True).stdout.startswith("keyledger ")


# -- time arguments -----------------------------------------------------------------------------------

def test_every_time_argument_takes_each_form_and_refuses_others_in_one_line(server: Server) -> None:
    kms = server.client()
    key_id = kms.create_key()["KeyMetadata"]["KeyId"]
    for value in ("yesterday", "-1h", "7d ago", "now", "2026-01-01T00:00:00Z", "1767225600"):
        run(server, "audit", "export", "--from", value, "--format", "jsonl")
        run(server, "report", "usage", "--key", key_id, "--from", value, "--output", "json")
    records = [json.loads(line) for line in run(server, "audit", "export", "--from", "-1h", "--format", "jsonl",
                                               "--key", key_id).stdout.splitlines()]
    assert [r["eventName"] for r in records] == ["CreateKey"]
    assert run(server, "audit", "export", "--to", "-1h", "--format", "jsonl", "--key", key_id).stdout == ""
    run(server, "history", "key-at", key_id, "--at", "now")
    run(server, "history", "key-at", key_id)  # --at defaults to now
    for command in (["audit", "export", "--from"], ["report", "usage", "--key", key_id, "--from"],
                    ["history", "key-at", key_id, "--at"], ["history", "keys-at", "--at"],
                    ["report", "access", "--key", key_id, "--at"]):
        refused = run(server, *command, "the day before", expect=2, columns=200)
        assert "is not a time: use RFC 3339" in refused.stderr and "7d ago" in refused.stderr


# -- tables that never cut ids, and --output --------------------------------------------------------------

def test_tables_never_truncate_arns_and_output_formats(server: Server) -> None:
    kms = server.client()
    admin = server.client()
    alice, role = f"arn:aws:iam::{ACCOUNT_ID}:user/alice", f"arn:aws:iam::{ACCOUNT_ID}:role/app"
    for principal in (alice, role):
        run(server, "principals", "create", principal)
    key = admin.create_key()["KeyMetadata"]
    for grantee in (alice, role):
        kms.create_grant(KeyId=key["KeyId"], GranteePrincipal=grantee, Operations=["Decrypt"])
    table = run(server, "report", "access", "--key", key["Arn"], "--operation", "Decrypt").stdout
    lines = table.splitlines()
    for principal in (ROOT_ARN, alice, role):
        assert any(principal in line for line in lines), table  # whole, on one line
    for command in (["history", "keys-at"], ["history", "timeline", key["KeyId"]]):
        text = run(server, *command).stdout
        assert any(key["Arn"] in line for line in text.splitlines()) or any(
            key["KeyId"] in line for line in text.splitlines()), text
    keys = run(server, "history", "keys-at").stdout
    assert any(key["Arn"] in line for line in keys.splitlines()), keys
    as_json = json.loads(run(server, "report", "access", "--key", key["Arn"], "--operation", "Decrypt",
                             "--output", "json").stdout)
    assert {r["Principal"] for r in as_json} >= {ROOT_ARN, alice, role}
    text = run(server, "report", "access", "--key", key["Arn"], "--operation", "Decrypt", "-o", "text").stdout
    assert all(len(line.split("\t")) == 4 for line in text.splitlines()) and alice in text
    assert json.loads(run(server, "history", "keys-at", "--json").stdout)  # the old flag still works


def test_report_access_lists_only_what_the_key_can_do(server: Server) -> None:
    kms = server.client()
    symmetric = kms.create_key()["KeyMetadata"]["Arn"]
    signing = kms.create_key(KeySpec="ECC_NIST_P256", KeyUsage="SIGN_VERIFY")["KeyMetadata"]["Arn"]
    on_symmetric = {r["Operation"] for r in json.loads(run(server, "report", "access", "--key", symmetric,
                                                           "-o", "json").stdout)}
    assert {"Encrypt", "Decrypt", "GenerateDataKey", "EnableKeyRotation", "DescribeKey"} <= on_symmetric
    assert not on_symmetric & {"Sign", "Verify", "Decapsulate", "Encapsulate", "GenerateMac", "GetPublicKey",
                               "DeriveSharedSecret", "ImportKeyMaterial"}
    on_signing = {r["Operation"] for r in json.loads(run(server, "report", "access", "--key", signing,
                                                         "-o", "json").stdout)}
    assert {"Sign", "Verify", "GetPublicKey"} <= on_signing
    assert not on_signing & {"Encrypt", "Decrypt", "GenerateDataKey", "EnableKeyRotation", "Decapsulate"}


# -- every key form -------------------------------------------------------------------------------------

def test_key_in_every_form_everywhere(server: Server) -> None:
    kms = server.client()
    key = kms.create_key(Description="aliased")["KeyMetadata"]
    other = kms.create_key()["KeyMetadata"]
    alias = f"alias/app-{uuid.uuid4().hex[:6]}"
    kms.create_alias(AliasName=alias, TargetKeyId=key["KeyId"])
    for _ in range(3):
        kms.encrypt(KeyId=alias, Plaintext=b"x")
    kms.encrypt(KeyId=other["KeyId"], Plaintext=b"x")
    alias_arn = f"arn:aws:kms:us-east-1:{ACCOUNT_ID}:{alias}"
    for form in (key["KeyId"], key["Arn"], alias, alias_arn):
        described = json.loads(run(server, "history", "key-at", form, "--at", "now", "-o", "json").stdout)
        assert described["KeyMetadata"]["KeyId"] == key["KeyId"], form
        timeline = json.loads(run(server, "history", "timeline", form, "-o", "json").stdout)
        assert timeline[0]["EventType"] == "Created", form
        usage = json.loads(run(server, "report", "usage", "--key", form, "-o", "json").stdout)
        assert {(r["EventName"], r["Calls"]) for r in usage} >= {("Encrypt", 3)}, form
        access = json.loads(run(server, "report", "access", "--key", form, "--operation", "Encrypt", "-o", "json").stdout)
        assert access[0]["Allowed"] is True, form
    exported = [json.loads(line) for line in run(server, "audit", "export", "--key", alias, "--format",
                                                 "jsonl").stdout.splitlines()]
    names = [r["eventName"] for r in exported]
    assert names.count("Encrypt") == 3 and "CreateAlias" in names, names
    by_arn = run(server, "audit", "export", "--key", alias_arn, "--format", "jsonl").stdout.splitlines()
    assert len(by_arn) == len(exported)
    # The alias moves: calls through it afterwards are about the other key, and still found.
    kms.update_alias(AliasName=alias, TargetKeyId=other["KeyId"])
    kms.encrypt(KeyId=alias, Plaintext=b"x")
    again = [json.loads(line) for line in run(server, "audit", "export", "--key", alias, "--format",
                                              "jsonl").stdout.splitlines()]
    assert [r["eventName"] for r in again].count("Encrypt") == 4  # not the direct call on the other key earlier


def test_usage_priced_at_aws_list_prices(server: Server) -> None:
    kms = server.client()
    key_id = kms.create_key()["KeyMetadata"]["KeyId"]
    signing = kms.create_key(KeySpec="ECC_NIST_P256", KeyUsage="SIGN_VERIFY")["KeyMetadata"]["KeyId"]
    for _ in range(3):
        kms.encrypt(KeyId=key_id, Plaintext=b"x")
    kms.sign(KeyId=signing, Message=b"m", SigningAlgorithm="ECDSA_SHA_256")
    run(server, "clock", "advance", "--days", "73")  # 73 days: 2.4 months of storage per key
    answer = json.loads(run(server, "report", "usage", "--priced", "-o", "json").stdout)
    estimate = answer["Estimate"]
    assert estimate["Keys"] == 2 and estimate["Requests"] >= 6 and estimate["Currency"] == "USD"
    lines = {line["Item"]: line for line in estimate["Lines"]}
    assert lines["key storage (key-months)"]["Quantity"] == pytest.approx(2 * 73 * 24 / 730, rel=0.01)
    assert lines["free-tier requests"]["Quantity"] == estimate["Requests"]  # far below 20,000 a month
    assert estimate["Total"] == pytest.approx(2 * 73 * 24 / 730, rel=0.01)  # $1 a key-month, requests free
    one = json.loads(run(server, "report", "usage", "--key", key_id, "--priced", "-o", "json").stdout)
    assert one["Estimate"]["Keys"] == 1 and one["Estimate"]["Requests"] == 4  # CreateKey and three Encrypts
    table = run(server, "report", "usage", "--key", key_id, "--priced", columns=200).stdout
    assert "At AWS KMS list prices" in table
    bad = server.data_dir.parent / "prices.json"
    bad.write_text("{}")
    refused = run(server, "report", "usage", "--priced", expect=1, env={"KEYLEDGER_PRICE_TABLE": str(bad)})
    assert str(bad) in refused.stderr


def test_alias_in_several_regions_asks_for_region(server: Server) -> None:
    alias = f"alias/both-{uuid.uuid4().hex[:6]}"
    for region in ("us-east-1", "eu-west-1"):
        kms = server.client(region=region)
        kms.create_alias(AliasName=alias, TargetKeyId=kms.create_key()["KeyMetadata"]["KeyId"])
    refused = run(server, "history", "key-at", alias, expect=1)
    assert "several regions (eu-west-1, us-east-1)" in refused.stderr and "--region" in refused.stderr
    chosen = json.loads(run(server, "history", "key-at", alias, "--region", "eu-west-1", "-o", "json").stdout)
    assert chosen["KeyMetadata"]["Arn"].startswith("arn:aws:kms:eu-west-1:")


# -- audit tail -------------------------------------------------------------------------------------------

def test_audit_tail_shows_the_last_n_and_follow_streams(server: Server) -> None:
    kms = server.client()
    for _ in range(4):
        kms.create_key()
    last_two = [json.loads(line) for line in run(server, "audit", "tail", "-n", "2").stdout.splitlines()]
    everything = [json.loads(line) for line in run(server, "audit", "export", "--format", "jsonl").stdout.splitlines()]
    assert [r["seq"] for r in last_two] == [r["seq"] for r in everything[-2:]]
    assert len(run(server, "audit", "tail", "--count", "3").stdout.splitlines()) == 3
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KEYLEDGER_", "AWS_"))}
    env.update(PYTHONPATH=str(ROOT), KEYLEDGER_DATA_DIR=str(server.data_dir))
    head = last_two[-1]["seq"]  # follow from here, however long the follower takes to start
    follower = subprocess.Popen([sys.executable, "-m", "api", "audit", "tail", "--from-seq", str(head), "--follow",
                                 "--poll", "0.1"], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
    try:
        created = kms.create_key()["ResponseMetadata"]["RequestId"]
        ready, _, _ = select.select([follower.stdout], [], [], 120)  # a hang bound, not a timing assertion
        assert ready, "audit tail --follow printed nothing"
        assert json.loads(follower.stdout.readline())["requestID"] == created
        second = kms.create_key()["ResponseMetadata"]["RequestId"]
        ready, _, _ = select.select([follower.stdout], [], [], 120)
        assert ready and json.loads(follower.stdout.readline())["requestID"] == second
    finally:
        follower.terminate()
        follower.wait(timeout=15)


# -- status and serve -----------------------------------------------------------------------------------

def test_status(server: Server) -> None:
    def status() -> dict:
        return json.loads(run(server, "status", "--json", env={"KEYLEDGER_PORT": str(server.port)}).stdout)

    # The server takes the background lock on its first background pass, within a second of answering.
    deadline = time.monotonic() + 30  # a hang guard, not a timing assertion
    report = status()
    while report["background work"].startswith("none") and time.monotonic() < deadline:
        time.sleep(0.2)
        report = status()
    assert report["endpoint"] == f"http://127.0.0.1:{server.port} (answering (200 ready))"
    assert report["backend"].startswith("SQLite ") and report["sealed"] == "no"
    assert report["root key provider"] == "file" and report["audit head"].startswith("seq ")
    assert report["background work"].startswith(f"process {server.process.pid} on ")


def test_status_creates_nothing(tmp_path: Path) -> None:
    missing = tmp_path / "never-served"
    proc = run(None, "status", data_dir=missing, expect=1, env={"KEYLEDGER_PORT": str(free_port())})
    assert "no keyledger database yet" in proc.stdout and "not answering" in proc.stdout
    assert not missing.exists()


def test_serve_says_the_port_is_taken_before_creating_anything(server: Server, tmp_path: Path) -> None:
    fresh = tmp_path / "second"
    proc = run(None, "serve", expect=1, data_dir=fresh, env={"KEYLEDGER_PORT": str(server.port)})
    assert f"cannot listen on 127.0.0.1:{server.port}: the port is already in use" in proc.stderr
    assert "keyledger listening" not in proc.stdout
    assert not fresh.exists()
