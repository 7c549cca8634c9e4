"""Without its root key the server starts sealed: health answers, every key operation refuses."""
from __future__ import annotations

import base64
import json
import os

import httpx
import pytest
from botocore.exceptions import ClientError


def _sealed_answers(server) -> str:
    health = httpx.get(server.endpoint + "/healthz", timeout=5)
    assert health.status_code == 503 and health.json()["status"] == "sealed"
    with pytest.raises(ClientError) as info:
        server.client().list_keys()
    assert info.value.response["Error"]["Code"] == "KMSInternalException"
    assert "sealed" in info.value.response["Error"]["Message"]
    return health.json()["reason"]


def test_missing_root_key_file_seals_and_restoring_it_unseals(servers):
    server = servers.start("data")
    kms = server.client()
    key_id = kms.create_key()["KeyMetadata"]["KeyId"]
    blob = kms.encrypt(KeyId=key_id, Plaintext=b"before")["CiphertextBlob"]
    server.stop()

    root_key = server.data_dir / "root-key"
    kept = root_key.read_bytes()
    root_key.unlink()
    sealed = servers.start("data")
    assert "missing" in _sealed_answers(sealed)
    sealed.stop()

    root_key.write_bytes(kept)
    os.chmod(root_key, 0o600)
    again = servers.start("data")
    assert again.client().decrypt(CiphertextBlob=blob)["Plaintext"] == b"before"


def test_wrong_root_key_seals_without_writing(servers):
    server = servers.start("data")
    server.client().create_key()
    server.stop()
    root_key = server.data_dir / "root-key"
    root_key.write_text(json.dumps({"current": 1, "keys": {"1": base64.b64encode(os.urandom(32)).decode()}}))
    os.chmod(root_key, 0o600)
    sealed = servers.start("data")
    assert "wrong key" in _sealed_answers(sealed)


def test_environment_root_key_provider(servers):
    root = base64.b64encode(os.urandom(32)).decode()
    server = servers.start("env", KEYLEDGER_ROOT_KEY_PROVIDER="env", KEYLEDGER_ROOT_KEY=root)
    kms = server.client()
    key_id = kms.create_key()["KeyMetadata"]["KeyId"]
    blob = kms.encrypt(KeyId=key_id, Plaintext=b"env")["CiphertextBlob"]
    assert not (server.data_dir / "root-key").exists()
    server.stop()
    unset = servers.start("env", KEYLEDGER_ROOT_KEY_PROVIDER="env")
    assert "KEYLEDGER_ROOT_KEY" in _sealed_answers(unset)
    unset.stop()
    again = servers.start("env", KEYLEDGER_ROOT_KEY_PROVIDER="env", KEYLEDGER_ROOT_KEY=root)
    assert again.client().decrypt(CiphertextBlob=blob)["Plaintext"] == b"env"
