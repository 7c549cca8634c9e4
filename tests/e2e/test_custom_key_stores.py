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
from tests.e2e.helpers import code, error_code, postgres_tables, secret_hits
from tests.e2e.test_hsm_root_key import keyledger
from tests.servers import Server
from tests.softhsm import SoftHsm, softhsm  # noqa: F401 - the fixture, used by name (hence F811 below)
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


def test_cloudhsm_store_life_cycle(servers, backend, softhsm, tmp_path):  # noqa: F811
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
    sealed_pair = kms.generate_data_key_pair_without_plaintext(KeyId=key_id, KeyPairSpec="RSA_2048")
    assert sealed_pair["PrivateKeyCiphertextBlob"][0] == 2 and "PrivateKeyPlaintext" not in sealed_pair
    assert kms.decrypt(CiphertextBlob=sealed_pair["PrivateKeyCiphertextBlob"])["KeyId"].endswith(key_id)
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

    # Replay rebuilds the stores' read model from their events and finds it equal to the live one; a row changed
    # in the database is a difference it names.
    replayed = keyledger(server.data_dir, server.database_url, {}, "history", "replay")
    assert "OK:" in replayed.stdout, replayed.stdout
    engine = sa.create_engine(server.database_url or f"sqlite:///{server.sqlite_file}")
    update = sa.text("UPDATE custom_key_stores SET name = :n WHERE store_id = :s")
    try:
        with engine.begin() as conn:
            conn.execute(update, {"n": "forged", "s": store_id})
        tampered = keyledger(server.data_dir, server.database_url, {}, "history", "replay", expect=1)
        assert "custom_key_stores[" in tampered.stdout + tampered.stderr, tampered.stdout + tampered.stderr
    finally:
        with engine.begin() as conn:
            conn.execute(update, {"n": "hsm-store-renamed", "s": store_id})
        engine.dispose()

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
    # The history stays: at a moment before the deletion, the key was in this store and the store was connected.
    then = json.loads(keyledger(server.data_dir, server.database_url, {}, "history", "key-store-at", key_id,
                                "--at", str(moment), "--json").stdout)
    assert then["Store"]["CustomKeyStore"]["CustomKeyStoreId"] == store_id

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
    # Nor any key material or plaintext the token-backed key protected: the data key, the key pair's private key,
    # the encrypted plaintext (its key's material never left the token, so there is none of it to look for).
    secrets = {"PIN": PIN.encode(), "data key": data_key["Plaintext"], "private key": pair["PrivateKeyPlaintext"],
               "plaintext": b"hardware secret"}
    assert secret_hits(stored, secrets) == []


def test_store_errors_wrong_pin_and_password_update(servers, backend, softhsm, tmp_path):  # noqa: F811
    softhsm.init_token(TOKEN, PIN)
    softhsm.init_token("store-2", PIN)
    spare = {f"cluster-limitstore{c}": {"module": softhsm.module, "token_label": f"spare-{c}"} for c in "abcdefghi"}
    for cluster in spare.values():
        softhsm.init_token(cluster["token_label"], PIN)
    env = store_env(softhsm, tmp_path, {**spare, CLUSTER: {"module": softhsm.module, "token_label": TOKEN},
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
    assert error_code(kms.create_key, CustomKeyStoreId=store_id, Origin="AWS_CLOUDHSM", MultiRegion=True) == \
        "UnsupportedOperationException"
    assert error_code(kms.create_key, CustomKeyStoreId=store_id, KeySpec="RSA_2048", KeyUsage="SIGN_VERIFY",
                      Origin="AWS_CLOUDHSM") == "UnsupportedOperationException"
    assert error_code(kms.describe_custom_key_stores, CustomKeyStoreId=store_id, CustomKeyStoreName="s") == \
        "ValidationException"
    # AWS's quota: 10 custom key stores per account and Region (9 more on their own tokens), then LimitExceeded.
    spares = [create(CustomKeyStoreName=f"spare-{n}", CloudHsmClusterId=cluster, KeyStorePassword=PIN)
              for n, cluster in enumerate(spare)]
    assert error_code(create, CustomKeyStoreName="eleventh", CloudHsmClusterId=OTHER_CLUSTER) == "LimitExceededException"
    assert error_code(kms.describe_custom_key_stores, Marker="not-a-marker") == "InvalidMarkerException"
    first = kms.describe_custom_key_stores(Limit=1)
    assert len(first["CustomKeyStores"]) == 1 and first["Truncated"]
    seen, marker = [first["CustomKeyStores"][0]["CustomKeyStoreId"]], first["NextMarker"]
    while marker:
        page = kms.describe_custom_key_stores(Limit=4, Marker=marker)
        seen += [entry["CustomKeyStoreId"] for entry in page["CustomKeyStores"]]
        marker = page.get("NextMarker")
    assert len(seen) == len(set(seen)) == 10

    # Connection failures with AWS's codes: the cluster taken out of the map; its token no longer in the module
    # (the map now names a label the module does not hold: SoftHSM2 answers a token deleted under a loaded module
    # with a general error, INTERNAL_ERROR, where an HSM answers "not present").
    clusters = json.loads((tmp_path / "clusters.json").read_text())
    del clusters["cluster-limitstorea"]
    clusters["cluster-limitstoreb"]["token_label"] = "spare-gone"
    (tmp_path / "clusters.json").write_text(json.dumps(clusters))
    for spare_id, expected in ((spares[0], "CLUSTER_NOT_FOUND"), (spares[1], "INSUFFICIENT_CLOUDHSM_HSMS"),
                               (spares[2], None)):
        kms.connect_custom_key_store(CustomKeyStoreId=spare_id)
        [entry] = kms.describe_custom_key_stores(CustomKeyStoreId=spare_id)["CustomKeyStores"]
        assert (entry["ConnectionState"], entry.get("ConnectionErrorCode")) == \
            ("FAILED" if expected else "CONNECTED", expected), entry

    # A hostile caller: another account's root, and this account's administrator in another Region, find no such
    # store, cannot list, use, connect, disconnect, rename or delete it, nor make or use keys in it.
    other = json.loads(keyledger(server.data_dir, server.database_url, {}, "access-keys", "create", "--principal",
                                 "arn:aws:iam::444455556666:root", "--json").stdout)["AccessKey"]
    for outsider in (server.client(key_id=other["AccessKeyId"], secret=other["SecretAccessKey"]),
                     server.client("eu-west-1")):
        assert outsider.describe_custom_key_stores()["CustomKeyStores"] == []
        for call, extra in ((outsider.describe_custom_key_stores, {}), (outsider.connect_custom_key_store, {}),
                            (outsider.disconnect_custom_key_store, {}), (outsider.delete_custom_key_store, {}),
                            (outsider.update_custom_key_store, {"NewCustomKeyStoreName": "mine"}),
                            (outsider.generate_random, {"NumberOfBytes": 8}),
                            (outsider.create_key, {"Origin": "AWS_CLOUDHSM"})):
            assert error_code(call, CustomKeyStoreId=store_id, **extra) == "CustomKeyStoreNotFoundException", call
        assert error_code(outsider.encrypt, KeyId=key_id, Plaintext=b"x") == "NotFoundException"
    assert kms.describe_custom_key_stores(CustomKeyStoreId=store_id)["CustomKeyStores"][0]["CustomKeyStoreName"] == "s"

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
    # The passwords given to CreateCustomKeyStore and UpdateCustomKeyStore are in no database file or audit record.
    stored = stored_bytes(server, backend)
    stored["audit export"] = keyledger(server.data_dir, server.database_url, {}, "audit", "export", "--format",
                                       "cloudtrail").stdout.encode()
    assert b"UpdateCustomKeyStore" in stored["audit export"]
    assert secret_hits(stored, {"PIN": PIN.encode(), "wrong PIN": b"wrong-pin-1"}) == []
