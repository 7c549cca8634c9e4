"""Custom key stores of type AWS_CLOUDHSM on a real PKCS#11 token (SoftHSM2), driven with boto3 and the AWS CLI
against a real server, on SQLite and PostgreSQL: the store's life cycle (create, connect, create a key, use it,
disconnect -> Unavailable, reconnect, schedule deletion, deletion -> the object is gone from the token), AWS's
errors, and no PIN in any database file, log or audit record."""
from __future__ import annotations

import base64
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from botocore.exceptions import ClientError

from tests.certificates import self_signed
from tests.e2e.helpers import code, error_code, postgres_tables, secret_forms
from tests.e2e.test_hsm_root_key import keyledger
from tests.servers import Server
from tests.softhsm import SoftHsm, softhsm  # noqa: F401
from tests.stored_states import sqlite_states

PIN = "store-pin-48213"
TOKEN = "store-1"
CLUSTER = "cluster-2a3b4c5d6e7"  # AWS's pattern: cluster-[2-7a-zA-Z]{11,16}
OTHER_CLUSTER = "cluster-7bcdefghjkm"  # a second token, for "in use" and "not related"
AWS = Path(sys.executable).parent / "aws"


def store_env(hsm: SoftHsm, tmp_path: Path, clusters: dict[str, Any]) -> dict[str, str]:
    path = tmp_path / "clusters.json"
    path.write_text(json.dumps(clusters))
    return {**hsm.env, "KEYLEDGER_CLOUDHSM_CLUSTERS": str(path), "KEYLEDGER_MAINTENANCE_INTERVAL": "0.5",
            "KEYLEDGER_KEY_CACHE_SECONDS": "0.2"}


def trust_anchor(tmp_path: Path) -> str:
    return self_signed(tmp_path / "ca").cert.read_text()


def aws_cli(server: Server, *args: str) -> Any:
    out = subprocess.run([str(AWS), "kms", *args, "--endpoint-url", server.endpoint, "--output", "json"],
                         env=server.cli_env(), capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout) if out.stdout.strip() else {}


def stored_bytes(server: Server, backend: str) -> dict[str, bytes]:
    if backend == "sqlite":
        return {**{p.name: p.read_bytes() for p in sorted(server.data_dir.glob("keyledger.db*"))},
                "states": sqlite_states(server.data_dir / "keyledger.db")}
    return postgres_tables(server)


def wait_for(what: Any, message: str, deadline_seconds: float = 30.0) -> Any:
    """Polls until ``what()`` is truthy; the deadline only stops a hang, it is not the assertion."""
    deadline = time.monotonic() + deadline_seconds
    while time.monotonic() < deadline:
        value = what()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(message)


def test_cloudhsm_store_life_cycle(servers, backend, softhsm, tmp_path):
    softhsm.init_token(TOKEN, PIN)
    env = store_env(softhsm, tmp_path, {CLUSTER: {"module": softhsm.module, "token_label": TOKEN}})
    server = servers.start("data", **env)
    kms = server.client()
    anchor = trust_anchor(tmp_path)

    # Create (AWS CLI): a new store is DISCONNECTED; the password is never returned.
    created = aws_cli(server, "create-custom-key-store", "--custom-key-store-name", "hsm-store",
                      "--cloud-hsm-cluster-id", CLUSTER, "--key-store-password", PIN,
                      "--trust-anchor-certificate", anchor)
    store_id = created["CustomKeyStoreId"]
    assert store_id.startswith("cks-") and len(store_id) == 21
    [entry] = kms.describe_custom_key_stores(CustomKeyStoreId=store_id)["CustomKeyStores"]
    assert entry["ConnectionState"] == "DISCONNECTED" and entry["CloudHsmClusterId"] == CLUSTER
    assert entry["TrustAnchorCertificate"] == anchor and entry["CustomKeyStoreType"] == "AWS_CLOUDHSM"
    assert entry["CustomKeyStoreName"] == "hsm-store" and "ConnectionErrorCode" not in entry
    assert PIN not in json.dumps(entry, default=str)
    assert error_code(kms.create_key, Origin="AWS_CLOUDHSM", CustomKeyStoreId=store_id) == \
        "CustomKeyStoreInvalidStateException"

    # Connect (AWS CLI); the state is final when the call returns.
    aws_cli(server, "connect-custom-key-store", "--custom-key-store-id", store_id)
    listed = aws_cli(server, "describe-custom-key-stores")["CustomKeyStores"]
    assert [(s["CustomKeyStoreId"], s["ConnectionState"]) for s in listed] == [(store_id, "CONNECTED")]
    health = httpx.get(server.endpoint + "/healthz", timeout=5).json()
    assert health["custom_key_stores"] == [{"id": store_id, "type": "AWS_CLOUDHSM", "connection_state": "CONNECTED"}]
    metrics = httpx.get(server.endpoint + "/metrics", timeout=5).text
    assert 'keyledger_custom_key_stores{connection_state="CONNECTED",type="AWS_CLOUDHSM"} 1' in metrics

    # A key in the store: a non-extractable AES-256 object in the token, labelled with the key id.
    meta = kms.create_key(Origin="AWS_CLOUDHSM", CustomKeyStoreId=store_id, Description="in the token")["KeyMetadata"]
    key_id = meta["KeyId"]
    assert (meta["Origin"], meta["CustomKeyStoreId"], meta["CloudHsmClusterId"]) == ("AWS_CLOUDHSM", store_id, CLUSTER)
    assert meta["KeyState"] == "Enabled" and meta["KeySpec"] == "SYMMETRIC_DEFAULT"
    objects = [o for o in softhsm.objects(TOKEN, PIN) if o["label"] == key_id]
    assert len(objects) == 1 and objects[0]["sensitive"] and not objects[0]["extractable"]
    assert error_code(kms.enable_key_rotation, KeyId=key_id) == "UnsupportedOperationException"

    # Use: every key-encryption step runs in the token; Decrypt needs no KeyId.
    software = kms.create_key()["KeyMetadata"]["KeyId"]
    blob = kms.encrypt(KeyId=key_id, Plaintext=b"hardware secret", EncryptionContext={"app": "e2e"})["CiphertextBlob"]
    assert blob[0] == 2
    out = kms.decrypt(CiphertextBlob=blob, EncryptionContext={"app": "e2e"})
    assert out["Plaintext"] == b"hardware secret" and out["KeyId"].endswith(key_id)
    assert error_code(kms.decrypt, CiphertextBlob=blob, EncryptionContext={"app": "other"}) == "InvalidCiphertextException"
    assert error_code(kms.decrypt, CiphertextBlob=blob, KeyId=software, EncryptionContext={"app": "e2e"}) == \
        "IncorrectKeyException"
    tampered = bytearray(blob)
    tampered[-1] ^= 1
    assert error_code(kms.decrypt, CiphertextBlob=bytes(tampered), EncryptionContext={"app": "e2e"}) == \
        "InvalidCiphertextException"
    moved = kms.re_encrypt(CiphertextBlob=blob, SourceEncryptionContext={"app": "e2e"}, DestinationKeyId=software)
    back = kms.re_encrypt(CiphertextBlob=moved["CiphertextBlob"], DestinationKeyId=key_id)
    assert kms.decrypt(CiphertextBlob=back["CiphertextBlob"])["Plaintext"] == b"hardware secret"
    data_key = kms.generate_data_key(KeyId=key_id, KeySpec="AES_256")
    assert kms.decrypt(CiphertextBlob=data_key["CiphertextBlob"])["Plaintext"] == data_key["Plaintext"]
    sealed_only = kms.generate_data_key_without_plaintext(KeyId=key_id, NumberOfBytes=24)
    assert len(kms.decrypt(CiphertextBlob=sealed_only["CiphertextBlob"])["Plaintext"]) == 24
    pair = kms.generate_data_key_pair(KeyId=key_id, KeyPairSpec="ECC_NIST_P256")
    assert kms.decrypt(CiphertextBlob=pair["PrivateKeyCiphertextBlob"])["Plaintext"] == pair["PrivateKeyPlaintext"]
    assert len(kms.generate_random(NumberOfBytes=32, CustomKeyStoreId=store_id)["Plaintext"]) == 32
    (tmp_path / "plain.txt").write_bytes(b"cli")
    cli_blob = aws_cli(server, "encrypt", "--key-id", key_id, "--plaintext", f"fileb://{tmp_path / 'plain.txt'}")["CiphertextBlob"]
    assert kms.decrypt(CiphertextBlob=base64.b64decode(cli_blob))["Plaintext"] == b"cli"

    # A connected store cannot be deleted or reconfigured; its name can change.
    assert error_code(kms.delete_custom_key_store, CustomKeyStoreId=store_id) == "CustomKeyStoreInvalidStateException"
    assert error_code(kms.update_custom_key_store, CustomKeyStoreId=store_id, KeyStorePassword="another-pin") == \
        "CustomKeyStoreInvalidStateException"
    kms.update_custom_key_store(CustomKeyStoreId=store_id, NewCustomKeyStoreName="hsm-store-renamed")

    # Disconnect: the key is Unavailable and refuses crypto with AWS's error; reconnecting restores it.
    aws_cli(server, "disconnect-custom-key-store", "--custom-key-store-id", store_id)
    assert kms.describe_key(KeyId=key_id)["KeyMetadata"]["KeyState"] == "Unavailable"
    assert kms.describe_key(KeyId=key_id)["KeyMetadata"]["Enabled"] is False
    for call, kwargs in ((kms.encrypt, {"KeyId": key_id, "Plaintext": b"x"}),
                         (kms.decrypt, {"CiphertextBlob": back["CiphertextBlob"]}),
                         (kms.generate_data_key, {"KeyId": key_id, "KeySpec": "AES_256"})):
        with pytest.raises(ClientError) as info:
            call(**kwargs)
        assert code(info.value) == "KMSInvalidStateException" and "is unavailable" in str(info.value)
    assert error_code(kms.disconnect_custom_key_store, CustomKeyStoreId=store_id) == "CustomKeyStoreInvalidStateException"
    assert error_code(kms.generate_random, NumberOfBytes=8, CustomKeyStoreId=store_id) == \
        "CustomKeyStoreInvalidStateException"
    while_disconnected = time.time()
    time.sleep(0.05)
    kms.connect_custom_key_store(CustomKeyStoreId=store_id)
    assert kms.describe_key(KeyId=key_id)["KeyMetadata"]["KeyState"] == "Enabled"
    assert kms.decrypt(CiphertextBlob=blob, EncryptionContext={"app": "e2e"})["Plaintext"] == b"hardware secret"
    # Point in time: which store held the key then, and was it connected.
    for moment, state in ((while_disconnected, "DISCONNECTED"), (time.time(), "CONNECTED")):
        then = json.loads(keyledger(server.data_dir, server.database_url, {}, "history", "key-store-at", key_id,
                                    "--at", str(moment), "--json").stdout)
        assert then["Store"]["CustomKeyStore"]["CustomKeyStoreId"] == store_id
        assert then["Store"]["CustomKeyStore"]["ConnectionState"] == state

    # A store with keys (even pending deletion) cannot be deleted.
    kms.schedule_key_deletion(KeyId=key_id, PendingWindowInDays=7)
    kms.disconnect_custom_key_store(CustomKeyStoreId=store_id)
    assert kms.describe_key(KeyId=key_id)["KeyMetadata"]["KeyState"] == "PendingDeletion"
    assert error_code(kms.delete_custom_key_store, CustomKeyStoreId=store_id) == "CustomKeyStoreHasCMKsException"

    # The waiting period ends while the store is disconnected: the key waits (its object cannot be destroyed);
    # once the store is connected the server's maintenance deletes the key and destroys the object.
    keyledger(server.data_dir, server.database_url, {}, "clock", "advance", "--days", "8")
    time.sleep(2.5)  # several maintenance passes at 0.5 s: none may delete the key while the store is disconnected
    assert kms.describe_key(KeyId=key_id)["KeyMetadata"]["KeyState"] == "PendingDeletion"
    assert [o for o in softhsm.objects(TOKEN, PIN) if o["label"] == key_id]
    kms.connect_custom_key_store(CustomKeyStoreId=store_id)

    def deleted() -> bool:
        try:
            kms.describe_key(KeyId=key_id)
        except ClientError as exc:
            return code(exc) == "NotFoundException"
        return False

    wait_for(deleted, f"the server's maintenance did not delete the key\n{server.log()}")
    assert [o for o in softhsm.objects(TOKEN, PIN) if o["label"] == key_id] == [], "the token object is gone"

    # Now the store can be deleted (disconnected first).
    kms.disconnect_custom_key_store(CustomKeyStoreId=store_id)
    kms.delete_custom_key_store(CustomKeyStoreId=store_id)
    assert error_code(kms.describe_custom_key_stores, CustomKeyStoreId=store_id) == "CustomKeyStoreNotFoundException"
    assert kms.describe_custom_key_stores()["CustomKeyStores"] == []

    # The history stays, and the ledger verifies.
    keyledger(server.data_dir, server.database_url, {}, "audit", "verify")

    # No PIN in any database file, the server's log or any audit record.
    server.stop()
    stored = stored_bytes(server, backend)
    stored["server log"] = server.log().encode()
    trail = keyledger(server.data_dir, server.database_url, {}, "audit", "export", "--format", "cloudtrail").stdout
    stored["audit export"] = trail.encode()
    assert "CreateCustomKeyStore" in trail and "ConnectCustomKeyStore" in trail
    hits = [f"{form[:12]!r} in {where}" for where, data in stored.items() for form in secret_forms(PIN.encode())
            if form in data]
    assert hits == []


def test_store_errors_wrong_pin_and_password_update(servers, softhsm, tmp_path):
    softhsm.init_token(TOKEN, PIN)
    softhsm.init_token("store-2", PIN)
    env = store_env(softhsm, tmp_path, {CLUSTER: {"module": softhsm.module, "token_label": TOKEN},
                                        "cluster-2bcdefghjkmn": {"module": softhsm.module, "token_label": TOKEN},
                                        OTHER_CLUSTER: {"module": softhsm.module, "token_label": "store-2"},
                                        "cluster-3bcdefghjkmn": {"module": softhsm.module, "token_label": "absent"}})
    server = servers.start("data", **env)
    kms = server.client()
    anchor = trust_anchor(tmp_path)

    def create(**kwargs: Any) -> str:
        params = {"CustomKeyStoreName": "s", "CloudHsmClusterId": CLUSTER, "TrustAnchorCertificate": anchor,
                  "KeyStorePassword": "wrong-pin-1", **kwargs}
        return kms.create_custom_key_store(**params)["CustomKeyStoreId"]

    assert error_code(create, CloudHsmClusterId="cluster-4bcdefghjkmn") == "CloudHsmClusterNotFoundException"
    assert error_code(create, CloudHsmClusterId="cluster-3bcdefghjkmn") == "CloudHsmClusterNotActiveException"
    assert error_code(create, TrustAnchorCertificate="not a certificate") == "IncorrectTrustAnchorException"
    assert error_code(create, CustomKeyStoreType="EXTERNAL_KEY_STORE") == "ValidationException"  # CloudHSM members
    store_id = create()
    assert error_code(create) == "CustomKeyStoreNameInUseException"
    # Another cluster id on the same token is the same hardware: in use.
    assert error_code(create, CustomKeyStoreName="t", CloudHsmClusterId="cluster-2bcdefghjkmn") == \
        "CloudHsmClusterInUseException"

    # A wrong password: the connection FAILS with AWS's code; a FAILED store must be disconnected first.
    kms.connect_custom_key_store(CustomKeyStoreId=store_id)
    [entry] = kms.describe_custom_key_stores(CustomKeyStoreName="s")["CustomKeyStores"]
    assert (entry["ConnectionState"], entry["ConnectionErrorCode"]) == ("FAILED", "INVALID_CREDENTIALS")
    assert error_code(kms.connect_custom_key_store, CustomKeyStoreId=store_id) == "CustomKeyStoreInvalidStateException"
    kms.disconnect_custom_key_store(CustomKeyStoreId=store_id)
    # Moving to a cluster of another token is refused; the related one is accepted.
    assert error_code(kms.update_custom_key_store, CustomKeyStoreId=store_id, CloudHsmClusterId=OTHER_CLUSTER) == \
        "CloudHsmClusterNotRelatedException"
    kms.update_custom_key_store(CustomKeyStoreId=store_id, KeyStorePassword=PIN, CloudHsmClusterId="cluster-2bcdefghjkmn")
    kms.connect_custom_key_store(CustomKeyStoreId=store_id)
    [entry] = kms.describe_custom_key_stores(CustomKeyStoreId=store_id)["CustomKeyStores"]
    assert entry["ConnectionState"] == "CONNECTED" and "ConnectionErrorCode" not in entry
    assert entry["CloudHsmClusterId"] == "cluster-2bcdefghjkmn"
    key_id = kms.create_key(CustomKeyStoreId=store_id, Origin="AWS_CLOUDHSM")["KeyMetadata"]["KeyId"]
    assert kms.describe_key(KeyId=key_id)["KeyMetadata"]["CloudHsmClusterId"] == "cluster-2bcdefghjkmn"

    # Other errors callers meet.
    assert error_code(kms.create_key, CustomKeyStoreId="cks-00000000000000000", Origin="AWS_CLOUDHSM") == \
        "CustomKeyStoreNotFoundException"
    assert error_code(kms.create_key, Origin="AWS_CLOUDHSM") == "ValidationException"
    assert error_code(kms.create_key, CustomKeyStoreId=store_id, KeySpec="RSA_2048", KeyUsage="SIGN_VERIFY",
                      Origin="AWS_CLOUDHSM") == "UnsupportedOperationException"
    assert error_code(kms.describe_custom_key_stores, CustomKeyStoreId=store_id, CustomKeyStoreName="s") == \
        "ValidationException"
    first = kms.describe_custom_key_stores(Limit=1)
    assert len(first["CustomKeyStores"]) == 1
    if first.get("Truncated"):
        rest = kms.describe_custom_key_stores(Limit=1, Marker=first["NextMarker"])["CustomKeyStores"]
        assert rest and rest[0]["CustomKeyStoreId"] != first["CustomKeyStores"][0]["CustomKeyStoreId"]

    # A database administrator marks a disconnected store CONNECTED in the read model: the row's tag no longer
    # matches, and the key's calls fail closed instead of using the token.
    blob = kms.encrypt(KeyId=key_id, Plaintext=b"p")["CiphertextBlob"]
    kms.disconnect_custom_key_store(CustomKeyStoreId=store_id)
    engine = sa.create_engine(server.database_url or f"sqlite:///{server.sqlite_file}")
    with engine.begin() as conn:
        assert conn.execute(sa.text("UPDATE custom_key_stores SET connection_state = 'CONNECTED' "
                                    "WHERE store_id = :s"), {"s": store_id}).rowcount == 1
    engine.dispose()
    time.sleep(0.5)  # past the view's cache time
    assert error_code(kms.decrypt, CiphertextBlob=blob) == "KMSInternalException"
    assert error_code(kms.describe_custom_key_stores) == "KMSInternalException"
    server.stop()
    assert "wrong-pin-1" not in server.log() and PIN not in server.log()
