"""External key stores both ways, with two real keyledger servers over HTTPS on 127.0.0.1 (a test certificate made
here): server B serves the XKS proxy API (its own keys are the external keys), server A has a custom key store of
type EXTERNAL_KEY_STORE pointing at B. boto3 and the AWS CLI create a key in A's store and encrypt and decrypt
through A (double encryption: A's layer, then B's); disabling the external key on B makes A's key unusable with
AWS's error; a stopped (SIGSTOP) or gone B makes A answer within the configured bound, and A keeps answering other
requests meanwhile; both audit logs show the calls (B's with A's principal, key ARN and request id); `audit
verify` passes on both; no XKS secret is in any database file, log or audit record. A runs on SQLite and on
PostgreSQL; B on SQLite."""
from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
from botocore.exceptions import ClientError

from tests.certificates import self_signed
from tests.e2e.helpers import code, keyledger, postgres_tables, secret_hits
from tests.servers import ROOT, Server
from tests.stored_states import sqlite_states

AWS = Path(sys.executable).parent / "aws"
TIMEOUT = 2.0  # KEYLEDGER_XKS_PROXY_TIMEOUT on A: loose enough for a loaded CI machine, the bound that is tested


def aws_cli(server: Server, *args: str) -> Any:
    assert server.tls is not None
    out = subprocess.run([str(AWS), "kms", *args, "--endpoint-url", server.endpoint, "--ca-bundle", str(server.tls.cert),
                          "--output", "json"], env=server.cli_env(), capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout) if out.stdout.strip() else {}


def records(server: Server) -> list[dict[str, Any]]:
    """The server's audit records, read from its database as an auditor's copy would be (no root key needed)."""
    from application.audit.checkpoints import audit_records
    from infrastructure.bootstrap import build_ledger
    from infrastructure.settings import Settings

    ledger = build_ledger(Settings.load(environ={}, data_dir=server.data_dir, database_url=server.database_url))
    try:
        return list(audit_records(ledger))
    finally:
        ledger.close()
        ledger.recorder.datastore.engine.dispose()  # type: ignore[attr-defined]


def verified(*servers: Server) -> list[str]:
    """`keyledger audit verify` on each server's data, run side by side; their outputs."""
    procs = []
    for server in servers:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("KEYLEDGER_", "AWS_"))}
        env.update(PYTHONPATH=str(ROOT), KEYLEDGER_DATA_DIR=str(server.data_dir),
                   **({"KEYLEDGER_DATABASE_URL": server.database_url} if server.database_url else {}))
        procs.append(subprocess.Popen([sys.executable, "-m", "api", "audit", "verify"], cwd=ROOT, env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    outputs = [proc.communicate(timeout=120)[0] for proc in procs]
    assert all(proc.returncode == 0 for proc in procs), outputs
    return outputs


def refusing(port: int, deadline: float = 10.0) -> bool:
    """Whether the port stops taking connections (a server shutting down closes its listener first)."""
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        except OSError:
            return True
        time.sleep(0.05)
    return False


def refusal(action: Any, **params: Any) -> tuple[str, str]:
    """(AWS error code, message) of a refused call. Only strings are kept: a kept exception's traceback would keep
    the HTTP response, and with it the client's TLS connection, open past the client's close."""
    try:
        action(**params)
    except ClientError as error:
        return code(error), str(error)
    raise AssertionError(f"{action} was not refused")


def stored(server: Server, backend: str) -> dict[str, bytes]:
    if backend == "postgres":
        return postgres_tables(server)
    return {**{p.name: p.read_bytes() for p in sorted(server.data_dir.glob("keyledger.db*"))},
                "states": sqlite_states(server.data_dir / "keyledger.db")}


def test_external_key_store_through_another_keyledger(servers, backend, tmp_path):
    tls = self_signed(tmp_path / "tls")
    proxy = Server(data_dir=tmp_path / "b", tls=tls).start()  # B: SQLite, its own database
    servers.servers.append(proxy)
    credential = json.loads(keyledger(proxy, "xks", "credentials", "create", "--json"))
    external_kms = proxy.client()
    external_key = external_kms.create_key(Description="the external key")["KeyMetadata"]["KeyId"]
    kms_side = Server(data_dir=tmp_path / "a", database_url=servers.database_url(), tls=tls, env={
        "KEYLEDGER_XKS_PROXY_PORT": str(proxy.port), "KEYLEDGER_XKS_PROXY_CA_BUNDLE": str(tls.cert),
        "KEYLEDGER_XKS_PROXY_TIMEOUT": str(TIMEOUT)})
    servers.servers.append(kms_side)
    kms_side.start()
    kms = kms_side.client()

    # The store (boto3): created against B's health check, DISCONNECTED, then CONNECTED; the secret never returned.
    store_id = kms.create_custom_key_store(
        CustomKeyStoreName="through-b", CustomKeyStoreType="EXTERNAL_KEY_STORE",
        XksProxyUriEndpoint="https://127.0.0.1", XksProxyUriPath="/xks/kms/xks/v1", XksProxyConnectivity="PUBLIC_ENDPOINT",
        XksProxyAuthenticationCredential={"AccessKeyId": credential["AccessKeyId"],
                                          "RawSecretAccessKey": credential["SecretAccessKey"]})["CustomKeyStoreId"]
    assert kms.describe_custom_key_stores(CustomKeyStoreId=store_id)["CustomKeyStores"][0]["ConnectionState"] == \
        "DISCONNECTED"
    kms.connect_custom_key_store(CustomKeyStoreId=store_id)
    [entry] = kms.describe_custom_key_stores(CustomKeyStoreId=store_id)["CustomKeyStores"]
    assert entry["ConnectionState"] == "CONNECTED" and entry["XksProxyConfiguration"]["AccessKeyId"] == \
        credential["AccessKeyId"] and credential["SecretAccessKey"] not in json.dumps(entry, default=str)

    # UpdateCustomKeyStore while CONNECTED: a credential rotated on B is taken (checked against B first), a path B
    # does not serve is refused as AWS refuses it, the endpoint and connectivity need DISCONNECTED.
    rotated = json.loads(keyledger(proxy, "xks", "credentials", "rotate", credential["AccessKeyId"], "--json"))
    kms.update_custom_key_store(CustomKeyStoreId=store_id, XksProxyAuthenticationCredential={
        "AccessKeyId": rotated["AccessKeyId"], "RawSecretAccessKey": rotated["SecretAccessKey"]},
        XksProxyUriEndpoint="https://127.0.0.1", XksProxyConnectivity="PUBLIC_ENDPOINT")
    assert refusal(kms.update_custom_key_store, CustomKeyStoreId=store_id, XksProxyUriPath="/other/kms/xks/v1")[0] == \
        "XksProxyInvalidConfigurationException"
    assert refusal(kms.update_custom_key_store, CustomKeyStoreId=store_id, XksProxyUriEndpoint="https://localhost")[0] \
        == "CustomKeyStoreInvalidStateException"
    [entry] = kms.describe_custom_key_stores(CustomKeyStoreId=store_id)["CustomKeyStores"]
    assert (entry["XksProxyConfiguration"]["AccessKeyId"], entry["XksProxyConfiguration"]["UriPath"]) == (
        rotated["AccessKeyId"], "/xks/kms/xks/v1")

    # A key in it (AWS CLI), checked against B's GetKeyMetadata; encrypt with the CLI, decrypt with boto3.
    key = aws_cli(kms_side, "create-key", "--origin", "EXTERNAL_KEY_STORE", "--custom-key-store-id", store_id,
                  "--xks-key-id", external_key)["KeyMetadata"]
    assert (key["Origin"], key["XksKeyConfiguration"]["Id"], key["KeyState"]) == ("EXTERNAL_KEY_STORE", external_key,
                                                                                 "Enabled")
    for xks_key_id, error in ((external_key, "XksKeyAlreadyInUseException"), ("no-such-key", "XksKeyNotFoundException")):
        assert refusal(kms.create_key, Origin="EXTERNAL_KEY_STORE", CustomKeyStoreId=store_id, XksKeyId=xks_key_id)[0] \
            == error
    (tmp_path / "plain.txt").write_bytes(b"held outside, used inside")
    blob = base64.b64decode(aws_cli(kms_side, "encrypt", "--key-id", key["KeyId"], "--plaintext",
                                    f"fileb://{tmp_path / 'plain.txt'}", "--encryption-context", "app=e2e")["CiphertextBlob"])
    assert kms.decrypt(CiphertextBlob=blob, EncryptionContext={"app": "e2e"})["Plaintext"] == b"held outside, used inside"
    data_key = kms.generate_data_key(KeyId=key["KeyId"], KeySpec="AES_256")
    assert kms.decrypt(CiphertextBlob=data_key["CiphertextBlob"])["Plaintext"] == data_key["Plaintext"]

    # The external key disabled on B: A's key cannot encrypt or decrypt (AWS's error); enabled again, it can.
    external_kms.disable_key(KeyId=external_key)
    error, message = refusal(kms.encrypt, KeyId=key["KeyId"], Plaintext=b"x")
    assert error == "KMSInvalidStateException" and "not enabled" in message
    external_kms.enable_key(KeyId=external_key)
    assert kms.decrypt(CiphertextBlob=blob, EncryptionContext={"app": "e2e"})["KeyId"] == key["Arn"]

    # B stopped mid-flight (SIGSTOP: it accepts connections and never answers): A answers within the bound, and its
    # event loop stays free meanwhile (health answers while the Decrypt waits).
    assert proxy.process is not None
    os.kill(proxy.process.pid, signal.SIGSTOP)
    health: list[float] = []

    def probe() -> None:
        time.sleep(0.3)
        started = time.monotonic()
        httpx.get(kms_side.endpoint + "/healthz/live", verify=kms_side.verify, timeout=5)
        health.append(time.monotonic() - started)
    try:
        prober = threading.Thread(target=probe)
        prober.start()
        started = time.monotonic()
        error, message = refusal(kms.decrypt, CiphertextBlob=blob, EncryptionContext={"app": "e2e"})
        elapsed = time.monotonic() - started
        prober.join()
    finally:
        os.kill(proxy.process.pid, signal.SIGCONT)
    # The answer names the proxy's timeout (not a hang: boto3's 30 s read timeout would fail the call), and A's
    # liveness answered meanwhile (httpx's 5 s timeout would have failed the probe). How long each took is
    # printed, not asserted: bounds in seconds belong to `make bench` on a quiet machine.
    assert error == "KMSInvalidStateException" and "did not respond in time" in message
    assert health, "A's liveness probe did not answer while the proxy was frozen"
    print(f"frozen proxy: A answered in {elapsed:.2f} s (timeout {TIMEOUT} s); liveness in {health[0]:.3f} s")

    # Both logs show the calls: B's XKS records name A's principal, key ARN and request id.
    a_records = [r for r in records(kms_side) if r.get("resources") and r["resources"][0]["ARN"] == key["Arn"]]
    encrypted = next(r for r in a_records if r["eventName"] == "Encrypt" and not r["errorCode"])
    b_records = [r for r in records(proxy) if r["eventSource"] == "kms-xks-proxy"]
    b_encrypt = next(r for r in b_records if r["eventName"] == "XksEncrypt"
                     and r["requestParameters"]["requestMetadata"]["kmsRequestId"] == encrypted["requestID"])
    metadata = b_encrypt["requestParameters"]["requestMetadata"]
    assert (metadata["kmsKeyArn"], metadata["kmsOperation"]) == (key["Arn"], "Encrypt")
    assert metadata["awsPrincipalArn"] == encrypted["userIdentity"]["arn"]
    assert b_encrypt["resources"][0]["ARN"].endswith(external_key)
    assert {"XksGetHealthStatus", "XksGetKeyMetadata", "XksEncrypt", "XksDecrypt"} <= {r["eventName"] for r in b_records}
    assert any(r["eventName"] == "XksEncrypt" and r["errorCode"] == "InvalidStateException" for r in b_records)
    usage = external_kms.get_key_last_usage(KeyId=external_key)["KeyLastUsage"]
    assert usage["Operation"] in ("Encrypt", "Decrypt")

    # B going away (SIGTERM: it closes its listener at once): A answers at once that it cannot reach the proxy.
    proxy.process.send_signal(signal.SIGTERM)
    assert refusing(proxy.port)
    error, message = refusal(kms.decrypt, CiphertextBlob=blob, EncryptionContext={"app": "e2e"})
    assert error == "KMSInvalidStateException" and "cannot communicate" in message  # refused, not timed out
    # Open TLS connections hold a graceful shutdown until their peer answers the close: clients close first, then
    # A (whose pool of connections to B closes with it), then B finishes.
    kms.close()
    external_kms.close()
    kms_side.stop()
    proxy.process.wait(timeout=15)

    assert all("OK" in out for out in verified(kms_side, proxy))
    secrets = {f"XKS secret {n}": form for n, c in enumerate((credential, rotated)) for form in (
        c["SecretAccessKey"].encode(), base64.b64decode(c["SecretAccessKey"]))}
    places = {**{f"A {k}": v for k, v in stored(kms_side, backend).items()},
              **{f"B {k}": v for k, v in stored(proxy, "sqlite").items()},
              "A log": kms_side.log().encode(), "B log": proxy.log().encode(),
              "A audit": json.dumps(records(kms_side)).encode(), "B audit": json.dumps(records(proxy)).encode()}
    assert secret_hits(places, secrets) == []
