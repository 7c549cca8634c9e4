"""The real AWS CLI against keyledger: what a user types in a shell must work. Each `aws` call costs
about a second, so this file runs on SQLite, plus one PostgreSQL smoke test."""
from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import pytest

from tests.e2e.helpers import alias_arn, key_arn, unique_alias
from tests.servers import Server

AWS = Path(sys.executable).parent / "aws"


@pytest.fixture(scope="module")
def cli_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One SQLite server for this module (the CLI tests need no PostgreSQL beyond the smoke test)."""
    if not AWS.exists():
        pytest.skip(f"the AWS CLI is not installed next to {sys.executable}")
    server = Server(data_dir=tmp_path_factory.mktemp("cli") / "server")
    try:
        yield server.start()
    finally:
        server.stop()


def aws(server: Server, *args: str, check: bool = True, output: str = "json") -> subprocess.CompletedProcess:
    command = [str(AWS), "kms", *args, "--endpoint-url", server.endpoint, "--output", output]
    result = subprocess.run(command, env=server.cli_env(), capture_output=True, text=True, timeout=120)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(command)} exited {result.returncode}:\n{result.stderr}")
    return result


def aws_json(server: Server, *args: str) -> Any:
    out = aws(server, *args).stdout
    return json.loads(out) if out.strip() else None


def test_create_and_describe_key(cli_server):
    created = aws_json(cli_server, "create-key", "--description", "made by the aws cli",
                       "--tags", "TagKey=origin,TagValue=cli")["KeyMetadata"]
    assert created["KeySpec"] == "SYMMETRIC_DEFAULT"
    assert created["KeyState"] == "Enabled"
    assert created["Arn"] == key_arn(created["KeyId"])
    described = aws_json(cli_server, "describe-key", "--key-id", created["Arn"])["KeyMetadata"]
    assert described["KeyId"] == created["KeyId"]
    assert described["Description"] == "made by the aws cli"
    tags = aws_json(cli_server, "list-resource-tags", "--key-id", created["KeyId"])["Tags"]
    assert tags == [{"TagKey": "origin", "TagValue": "cli"}]


def test_alias_encrypt_decrypt_round_trip(cli_server, tmp_path):
    key_id = aws_json(cli_server, "create-key")["KeyMetadata"]["KeyId"]
    alias = unique_alias("cli")
    assert aws(cli_server, "create-alias", "--alias-name", alias, "--target-key-id", key_id).stdout.strip() == ""

    plaintext = os.urandom(300) + b"\x00\n\r binary safe"
    (tmp_path / "plain.bin").write_bytes(plaintext)
    encrypted = aws_json(cli_server, "encrypt", "--key-id", alias, "--plaintext", f"fileb://{tmp_path / 'plain.bin'}",
                         "--encryption-context", "purpose=cli-test")
    assert encrypted["KeyId"] == key_arn(key_id)
    (tmp_path / "cipher.bin").write_bytes(base64.b64decode(encrypted["CiphertextBlob"]))

    decrypted = aws(cli_server, "decrypt", "--ciphertext-blob", f"fileb://{tmp_path / 'cipher.bin'}",
                    "--encryption-context", "purpose=cli-test", "--query", "Plaintext", output="text")
    assert base64.b64decode(decrypted.stdout.strip()) == plaintext

    # Naming the key by alias ARN on decrypt works too; a wrong context fails with the AWS error.
    full = aws_json(cli_server, "decrypt", "--ciphertext-blob", f"fileb://{tmp_path / 'cipher.bin'}",
                    "--encryption-context", "purpose=cli-test", "--key-id", alias_arn(alias))
    assert base64.b64decode(full["Plaintext"]) == plaintext
    assert full["KeyId"] == key_arn(key_id)
    wrong = aws(cli_server, "decrypt", "--ciphertext-blob", f"fileb://{tmp_path / 'cipher.bin'}",
                "--encryption-context", "purpose=other", check=False)
    assert wrong.returncode in (254, 255)
    assert "InvalidCiphertextException" in wrong.stderr


def test_list_keys_and_aliases(cli_server):
    key_id = aws_json(cli_server, "create-key")["KeyMetadata"]["KeyId"]
    alias = unique_alias("cli-list")
    aws(cli_server, "create-alias", "--alias-name", alias, "--target-key-id", key_id)
    # The CLI paginates on its own: --page-size forces several requests with Marker/NextMarker.
    keys = aws_json(cli_server, "list-keys", "--page-size", "1")["Keys"]
    ids = [k["KeyId"] for k in keys]
    assert key_id in ids and len(ids) == len(set(ids))
    assert {"KeyId": key_id, "KeyArn": key_arn(key_id)} in keys
    aliases = aws_json(cli_server, "list-aliases", "--key-id", key_id)["Aliases"]
    assert [a["AliasName"] for a in aliases] == [alias]
    assert aliases[0]["AliasArn"] == alias_arn(alias)
    everything = aws_json(cli_server, "list-aliases", "--page-size", "1")["Aliases"]
    assert alias in [a["AliasName"] for a in everything]


def test_generate_data_key(cli_server, tmp_path):
    key_id = aws_json(cli_server, "create-key")["KeyMetadata"]["KeyId"]
    data_key = aws_json(cli_server, "generate-data-key", "--key-id", key_id, "--key-spec", "AES_256")
    plaintext = base64.b64decode(data_key["Plaintext"])
    assert len(plaintext) == 32
    assert data_key["KeyId"] == key_arn(key_id)
    (tmp_path / "dk.bin").write_bytes(base64.b64decode(data_key["CiphertextBlob"]))
    decrypted = aws(cli_server, "decrypt", "--ciphertext-blob", f"fileb://{tmp_path / 'dk.bin'}",
                    "--query", "Plaintext", output="text")
    assert base64.b64decode(decrypted.stdout.strip()) == plaintext


def test_schedule_key_deletion(cli_server):
    key_id = aws_json(cli_server, "create-key")["KeyMetadata"]["KeyId"]
    scheduled = aws_json(cli_server, "schedule-key-deletion", "--key-id", key_id, "--pending-window-in-days", "7")
    assert scheduled["KeyId"] == key_arn(key_id)
    assert scheduled["KeyState"] == "PendingDeletion"
    assert scheduled["PendingWindowInDays"] == 7
    state = aws(cli_server, "describe-key", "--key-id", key_id, "--query", "KeyMetadata.KeyState", output="text")
    assert state.stdout.strip() == "PendingDeletion"


def test_describe_unknown_key_fails_with_not_found(cli_server):
    result = aws(cli_server, "describe-key", "--key-id", "00000000-0000-4000-8000-000000000000", check=False)
    assert result.returncode in (254, 255), result
    assert "NotFoundException" in result.stderr
    assert result.stdout.strip() == ""


@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
def test_postgres_smoke(servers, tmp_path):
    if not AWS.exists():
        pytest.skip(f"the AWS CLI is not installed next to {sys.executable}")
    server = servers.start()
    key_id = aws_json(server, "create-key", "--description", "pg smoke")["KeyMetadata"]["KeyId"]
    (tmp_path / "plain.bin").write_bytes(b"postgres smoke test")
    encrypted = aws_json(server, "encrypt", "--key-id", key_id, "--plaintext", f"fileb://{tmp_path / 'plain.bin'}")
    (tmp_path / "cipher.bin").write_bytes(base64.b64decode(encrypted["CiphertextBlob"]))
    decrypted = aws(server, "decrypt", "--ciphertext-blob", f"fileb://{tmp_path / 'cipher.bin'}",
                    "--query", "Plaintext", output="text")
    assert base64.b64decode(decrypted.stdout.strip()) == b"postgres smoke test"
    assert key_id in [k["KeyId"] for k in aws_json(server, "list-keys")["Keys"]]
