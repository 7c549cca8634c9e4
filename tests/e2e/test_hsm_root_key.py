"""The root key in a PKCS#11 token (SoftHSM2): created by `keyledger root-key init`, never extractable, wrap
and unwrap inside the token; a restart unwraps again; wrong PIN, absent token or missing key start sealed with
the reason; neither the PIN nor any key material is in the database, the log or the audit records."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from botocore.exceptions import ClientError

from tests.cli import run_keyledger
from tests.e2e.helpers import postgres_tables, secret_hits
from tests.servers import ROOT, Server
from tests.softhsm import SoftHsm, softhsm  # noqa: F401 - the fixture, used by name (hence F811 below)
from tests.stored_states import sqlite_states

PIN = "user-pin-7391"
TOKEN = "keyledger-root"
AWS = Path(sys.executable).parent / "aws"


def hsm_env(hsm: SoftHsm, pin: str = PIN, token: str = TOKEN, obj: str = "root") -> dict[str, str]:
    return {**hsm.env, "KEYLEDGER_ROOT_KEY_PROVIDER": "pkcs11", "KEYLEDGER_ROOT_KEY": f"pkcs11:token={token};object={obj}",
            "KEYLEDGER_PKCS11_MODULE": hsm.module, "KEYLEDGER_PKCS11_PIN": pin}


def keyledger(data_dir: Path, database_url: str | None, env: dict[str, str], *args: str,
              expect: int = 0) -> subprocess.CompletedProcess:
    full = {k: v for k, v in os.environ.items() if not k.startswith(("KEYLEDGER_", "AWS_"))}
    full.update(PYTHONPATH=str(ROOT), KEYLEDGER_DATA_DIR=str(data_dir), **env)
    if database_url:
        full["KEYLEDGER_DATABASE_URL"] = database_url
    proc = run_keyledger(args, full, timeout=300)
    assert proc.returncode == expect, f"keyledger {args} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
    return proc


def sealed_reason(server: Server) -> str:
    health = httpx.get(server.endpoint + "/healthz", timeout=5)
    assert health.status_code == 503 and health.json()["status"] == "sealed", health.text
    assert health.json()["root_key"]["sealed"] is True and health.json()["root_key"]["provider"] == "pkcs11"
    metrics = httpx.get(server.endpoint + "/metrics", timeout=5).text
    assert "keyledger_sealed 1.0" in metrics and 'keyledger_root_key_provider{provider="pkcs11"} 1.0' in metrics
    with pytest.raises(ClientError) as info:
        server.client().list_keys()
    assert info.value.response["Error"]["Code"] == "KMSInternalException"
    return health.json()["reason"]


def stored_bytes(server: Server, backend: str) -> bytes:
    if backend == "sqlite":
        return b"\n".join([p.read_bytes() for p in sorted(server.data_dir.glob("keyledger.db*"))]
                          + [sqlite_states(server.data_dir / "keyledger.db")])
    return b"\n".join(postgres_tables(server).values())


def test_root_key_in_token_round_trip_restart_and_sealed_reasons(servers, backend, softhsm, tmp_path):  # noqa: F811
    softhsm.init_token(TOKEN, PIN)
    data = tmp_path / "data"
    env = hsm_env(softhsm)
    # Before init: the token holds no root key, and the server says so instead of making one outside it.
    server = servers.start("data", **env)
    assert "root-key init" in sealed_reason(server)
    server.stop()

    created = keyledger(data, servers.database_url(), env, "root-key", "init")
    assert "version 1" in created.stdout
    keyledger(data, servers.database_url(), env, "root-key", "init", expect=1)  # never a second key
    objects = softhsm.objects(TOKEN, PIN)
    assert objects == [{"label": "root", "id": "00000001", "sensitive": True, "extractable": False}]

    server = servers.start("data", **env)
    kms = server.client()
    key_id = kms.create_key(Description="wrapped in the token")["KeyMetadata"]["KeyId"]
    blob = kms.encrypt(KeyId=key_id, Plaintext=b"in hardware")["CiphertextBlob"]
    data_key = kms.generate_data_key(KeyId=key_id, KeySpec="AES_256")["Plaintext"]
    assert not (data / "root-key").exists(), "no root key file next to the database"
    # The AWS CLI, same server.
    cli_env = server.cli_env()
    (tmp_path / "plain.txt").write_bytes(b"hello")
    out = subprocess.run([str(AWS), "kms", "encrypt", "--endpoint-url", server.endpoint, "--key-id", key_id,
                          "--plaintext", f"fileb://{tmp_path / 'plain.txt'}", "--query", "CiphertextBlob", "--output", "text"],
                         env=cli_env, capture_output=True, text=True, timeout=120, check=True)
    cli_blob = out.stdout.strip()
    server.stop()

    # Restarted with the PIN in a mode-0600 file instead of the environment.
    pin_file = tmp_path / "pin"
    pin_file.write_text(PIN + "\n")
    pin_file.chmod(0o600)
    from_file = {k: v for k, v in env.items() if k != "KEYLEDGER_PKCS11_PIN"}
    again = servers.start("data", **from_file, KEYLEDGER_PKCS11_PIN_FILE=str(pin_file))
    assert again.client().decrypt(CiphertextBlob=blob)["Plaintext"] == b"in hardware"
    out = subprocess.run([str(AWS), "kms", "decrypt", "--endpoint-url", again.endpoint, "--ciphertext-blob",
                          "fileb://" + str(_write(tmp_path / "cli.bin", cli_blob)), "--query", "Plaintext",
                          "--output", "text"], env=again.cli_env(), capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "aGVsbG8="
    again.stop()

    # A wrong PIN, read from the file the URI's pin-source names (RFC 7512).
    wrong_file = tmp_path / "wrong-pin"
    wrong_file.write_text("0000-wrong")
    wrong_file.chmod(0o600)
    wrong_pin = servers.start("data", **{**from_file, "KEYLEDGER_ROOT_KEY": f"pkcs11:token={TOKEN};object=root"
                                                                           f"?pin-source=file:{wrong_file}"})
    assert "PIN" in sealed_reason(wrong_pin) and "0000-wrong" not in wrong_pin.log()
    wrong_pin.stop()
    no_token = servers.start("data", **hsm_env(softhsm, token="absent-token"))
    assert "No PKCS#11 token labelled 'absent-token'" in sealed_reason(no_token)
    no_token.stop()
    no_key = servers.start("data", **hsm_env(softhsm, obj="other"))
    assert "holds no root key labelled 'other'" in sealed_reason(no_key)
    no_key.stop()

    # Neither the PIN nor a data key is in the database, any server's log or the audit records.
    stored = {"database": stored_bytes(again, backend),
              "audit export": keyledger(data, servers.database_url(), {}, "audit", "export").stdout.encode()}
    assert key_id.encode() in stored["database"] and key_id.encode() in stored["audit export"], "positive control"
    for n, started in enumerate((server, again, wrong_pin, no_token, no_key)):
        stored[f"log of server {n}"] = started.log().encode()
    assert secret_hits(stored, {"PIN": PIN.encode(), "wrong PIN": b"0000-wrong", "data key": data_key,
                                "plaintext": b"in hardware"}) == []


def _write(path: Path, base64_text: str) -> Path:
    import base64

    path.write_bytes(base64.b64decode(base64_text))
    return path


def test_token_key_cannot_be_read_out_and_wrong_token_key_is_the_wrong_key(servers, softhsm, tmp_path):  # noqa: F811
    """A different token key under the same label (another token's, a restored wrong one) is refused as the wrong
    key: the database's check value does not authenticate under it."""
    softhsm.init_token(TOKEN, PIN)
    softhsm.init_token("impostor", PIN)
    data = tmp_path / "data"
    keyledger(data, servers.database_url(), hsm_env(softhsm), "root-key", "init")
    keyledger(data, servers.database_url(), hsm_env(softhsm, token="impostor"), "root-key", "init")
    server = servers.start("data", **hsm_env(softhsm))
    server.client().create_key()
    server.stop()
    impostor = servers.start("data", **hsm_env(softhsm, token="impostor"))
    assert "wrong key" in sealed_reason(impostor)
