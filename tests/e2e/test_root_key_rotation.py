"""Online root-key rotation, for the file and the PKCS#11 provider, on both backends: `keyledger root-key rotate`
re-wraps every root-wrapped value while a load of Encrypt/Decrypt runs (no call fails), old ciphertexts decrypt,
`retire 1` destroys version 1, and a backup taken before retirement can no longer be unwrapped with the
provider's keys (docs/key-hierarchy.md, the backup horizon). A crash in the middle is finished by the next run."""
from __future__ import annotations

import base64
import json
import os
import struct
import subprocess
import threading
import time
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from tests.e2e.test_custom_key_stores import CLUSTER, store_env, trust_anchor
from tests.e2e.test_custom_key_stores import PIN as STORE_PIN
from tests.e2e.test_custom_key_stores import TOKEN as STORE_TOKEN
from tests.e2e.test_hsm_root_key import AWS, PIN, TOKEN, hsm_env, keyledger
from tests.e2e.test_lifecycle_import import wrap
from tests.servers import Server
from tests.softhsm import softhsm  # noqa: F401

PROVIDERS = ["file", "pkcs11"]


def _aad(*parts: str) -> bytes:
    return b"".join(struct.pack(">I", len(p.encode())) + p.encode() for p in parts)


def backing_rows(server: Server) -> list[tuple[str, str, bytes]]:
    url = server.database_url or f"sqlite:///{server.sqlite_file}"
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return [(r[0], r[1], bytes(r[2])) for r in conn.execute(sa.text(
                "SELECT key_id, material_id, wrapped FROM backing_keys ORDER BY key_id, material_id"))]
    finally:
        engine.dispose()


def provider_env(provider: str, request: pytest.FixtureRequest, servers, tmp_path) -> dict[str, str]:
    if provider == "file":
        return {}
    hsm = request.getfixturevalue("softhsm")
    hsm.init_token(TOKEN, PIN)
    env = hsm_env(hsm)
    keyledger(tmp_path / "data", servers.database_url(), env, "root-key", "init")
    return env


HANG_SECONDS = 30.0  # the servers read the rotation state with a 1 s cache: a change not seen by then never will be


def root_key_health(server: Server, **expected) -> dict:
    """/healthz's root_key once it shows ``expected`` (bounded wait: the state is cached for a second), and the
    same in /metrics."""
    deadline = time.monotonic() + HANG_SECONDS
    while True:
        state = httpx.get(server.endpoint + "/healthz", timeout=10).json()["root_key"]
        if all(state.get(k) == v for k, v in expected.items()) or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert all(state.get(k) == v for k, v in expected.items()), state
    metrics = httpx.get(server.endpoint + "/metrics", timeout=10).text
    assert f"keyledger_root_key_version {float(state['current_version'])}" in metrics
    in_progress = 1.0 if state["rotation"] == "re-wrapping" else 0.0
    assert f"keyledger_root_key_rotation_in_progress {in_progress}" in metrics
    assert f"keyledger_root_key_retired_versions {float(len(state['retired_versions']))}" in metrics
    assert f'keyledger_root_key_provider{{provider="{state["provider"]}"}} 1.0' in metrics
    return state


class Load:
    """Encrypt and Decrypt in a loop on another thread, counting calls and failures."""

    def __init__(self, server: Server, key_id: str) -> None:
        self.kms = server.client()
        self.key_id = key_id
        self.calls = 0
        self.failures: list[str] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        n = 0
        while not self.stop.is_set():
            n += 1
            plaintext = f"load {n}".encode()
            try:
                blob = self.kms.encrypt(KeyId=self.key_id, Plaintext=plaintext)["CiphertextBlob"]
                assert self.kms.decrypt(CiphertextBlob=blob)["Plaintext"] == plaintext
                self.calls += 2
            except Exception as exc:  # noqa: BLE001 - every failure is counted and shown
                self.failures.append(repr(exc)[:300])

    def __enter__(self) -> Load:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=120)


@pytest.mark.parametrize("provider", PROVIDERS)
def test_rotation_under_load_then_retirement_bounds_backups(provider, servers, request, tmp_path):
    env = provider_env(provider, request, servers, tmp_path)
    data = tmp_path / "data"
    server = servers.start("data", **env)
    kms = server.client()
    keys = [kms.create_key(Description=f"k{i}")["KeyMetadata"]["KeyId"] for i in range(3)]
    blobs = {k: kms.encrypt(KeyId=k, Plaintext=k.encode())["CiphertextBlob"] for k in keys}
    doomed = kms.create_key(Description="to be shredded")["KeyMetadata"]["KeyId"]
    doomed_blob = kms.encrypt(KeyId=doomed, Plaintext=b"shred me")["CiphertextBlob"]
    kms.schedule_key_deletion(KeyId=doomed, PendingWindowInDays=7)
    backup = backing_rows(server)  # a backup of the database, taken before the rotation
    assert {v for _, _, w in backup for v in [struct.unpack(">I", w[:4])[0]]} == {1}
    version_1 = (json.loads((data / "root-key").read_text())["keys"]["1"] if provider == "file" else None)
    if version_1 is not None:  # with the old key, the backup recovers the doomed key's material: the risk retirement ends
        key_id, material_id, wrapped = next(r for r in backup if r[0] == doomed)
        AESGCM(base64.b64decode(version_1)).decrypt(wrapped[4:16], wrapped[16:],
                                                     _aad("backing-key", key_id, material_id))

    with Load(server, keys[0]) as load:
        rotated = keyledger(data, server.database_url, env, "root-key", "rotate", "--batch", "2")
        assert "rotated to root key version 2" in rotated.stdout
        made_during = kms.create_key(Description="made after the rotation began")["KeyMetadata"]["KeyId"]
        keyledger(data, server.database_url, env, "clock", "advance", "--days", "8")
        keyledger(data, server.database_url, env, "maintenance")
        retired = keyledger(data, server.database_url, env, "root-key", "retire", "1")
        assert "retired root key version 1" in retired.stdout
        while load.calls < 20 and not load.failures:
            load.stop.wait(0.05)
    assert load.failures == [] and load.calls >= 20, load.failures[:3]

    for key_id, blob in blobs.items():
        assert kms.decrypt(CiphertextBlob=blob)["Plaintext"] == key_id.encode()
    (tmp_path / "old.bin").write_bytes(blobs[keys[2]])  # and with the AWS CLI
    out = subprocess.run([str(AWS), "kms", "decrypt", "--endpoint-url", server.endpoint, "--ciphertext-blob",
                          f"fileb://{tmp_path / 'old.bin'}", "--query", "Plaintext", "--output", "text"],
                         env=server.cli_env(), capture_output=True, text=True, timeout=120, check=True)
    assert base64.b64decode(out.stdout.strip()) == keys[2].encode()
    assert kms.decrypt(CiphertextBlob=kms.encrypt(KeyId=made_during, Plaintext=b"new")["CiphertextBlob"])["Plaintext"] == b"new"
    with pytest.raises(Exception):
        kms.decrypt(CiphertextBlob=doomed_blob)
    status = json.loads(keyledger(data, server.database_url, env, "root-key", "status").stdout)
    assert status["current"] == 2 and status["retired"] == [1] and set(status["wrapped_values_by_version"]) == {"2"}
    root_key_health(server, provider=provider, sealed=False, current_version=2, rotation="complete",
                    retired_versions=[1])
    live = backing_rows(server)
    assert all(struct.unpack(">I", w[:4])[0] == 2 for _, _, w in live) and doomed not in {r[0] for r in live}

    # The backup's row of the shredded key names version 1, which the provider no longer has.
    key_id, material_id, wrapped = next(r for r in backup if r[0] == doomed)
    assert struct.unpack(">I", wrapped[:4])[0] == 1
    if provider == "file":
        held = json.loads((data / "root-key").read_text())["keys"]
        assert set(held) == {"2"}
        with pytest.raises(InvalidTag):
            AESGCM(base64.b64decode(held["2"])).decrypt(wrapped[4:16], wrapped[16:],
                                                         _aad("backing-key", key_id, material_id))
    else:
        hsm = request.getfixturevalue("softhsm")
        assert [o["id"] for o in hsm.objects(TOKEN, PIN)] == ["00000002"]

    # A restart with the retired version gone serves everything; the history is in the audit chain.
    server.stop()
    again = servers.start("data", **env)
    assert again.client().decrypt(CiphertextBlob=blobs[keys[1]])["Plaintext"] == keys[1].encode()
    again.stop()
    exported = keyledger(data, server.database_url, env, "audit", "export").stdout
    for name in ("CreateRootKeyVersion", "CompleteRootKeyRotation", "RetireRootKeyVersion"):
        assert name in exported
    keyledger(data, server.database_url, env, "audit", "verify")


class Crash(BaseException):
    """The rotating process dies here: nothing after it runs (not even except-Exception handlers)."""


class CrashAfter:
    """Fault injection around the real re-wrapping: the process dies after ``batches`` committed batches."""

    def __init__(self, rows, batches: int) -> None:
        self._rows, self._left = rows, batches

    def rewrap(self, keyring, version, batch):
        if self._left == 0:
            raise Crash()
        self._left -= 1
        return self._rows.rewrap(keyring, version, batch)

    def __getattr__(self, name):
        return getattr(self._rows, name)


class DiesBeforeDestroying:
    """The provider of a process that dies after recording a retirement, before destroying the version."""

    def __init__(self, provider) -> None:
        self._provider = provider

    def destroy_version(self, version: int) -> None:
        raise Crash()

    def __getattr__(self, name):
        return getattr(self._provider, name)


def every_kind_of_root_wrapped_value(server: Server, tmp_path) -> dict[str, Any]:
    """One value of each root-wrapped kind the server keeps, made through its API and CLI: backing keys (a key, a
    multi-Region primary and its replica), access-key secrets and service secrets (made at first start), an import
    wrapping key (GetParametersForImport), a CloudHSM store's password, an XKS proxy credential's secret."""
    kms = server.client()
    made: dict[str, Any] = {}
    primary = kms.create_key(MultiRegion=True)["KeyMetadata"]["KeyId"]
    kms.replicate_key(KeyId=primary, ReplicaRegion="eu-west-1")
    made["replicated"] = kms.encrypt(KeyId=primary, Plaintext=b"across regions")["CiphertextBlob"]
    made["import_key"] = kms.create_key(Origin="EXTERNAL")["KeyMetadata"]["KeyId"]
    made["import"] = kms.get_parameters_for_import(KeyId=made["import_key"], WrappingAlgorithm="RSAES_OAEP_SHA_256",
                                                   WrappingKeySpec="RSA_2048")
    store_id = kms.create_custom_key_store(CustomKeyStoreName="rotated", CloudHsmClusterId=CLUSTER,
                                           KeyStorePassword=STORE_PIN, TrustAnchorCertificate=trust_anchor(tmp_path)
                                           )["CustomKeyStoreId"]
    kms.connect_custom_key_store(CustomKeyStoreId=store_id)
    made["store"] = store_id
    in_token = kms.create_key(Origin="AWS_CLOUDHSM", CustomKeyStoreId=store_id)["KeyMetadata"]["KeyId"]
    made["in_token"] = kms.encrypt(KeyId=in_token, Plaintext=b"in the token")["CiphertextBlob"]
    made["xks"] = json.loads(keyledger(server.data_dir, server.database_url, {}, "xks", "credentials", "create",
                                       "--json").stdout)
    return made


def registered_rows(server: Server) -> dict[str, list[tuple[tuple[str, str, str], bytes]]]:
    """Every root-wrapped value of every registered table (infrastructure/root_wrapped.py): its AAD and bytes."""
    from infrastructure.root_wrapped import REGISTRY

    engine = sa.create_engine(server.database_url or f"sqlite:///{server.sqlite_file}")
    try:
        with engine.connect() as conn:
            return {entry.table.name: [(entry.aad(row), bytes(getattr(row, entry.column)))
                                       for row in conn.execute(sa.select(entry.table))] for entry in REGISTRY}
    finally:
        engine.dispose()


def xks_health(server: Server, credential: dict[str, str]) -> int:
    """A signed XKS proxy GetHealthStatus (keyledger serves the XKS proxy API): it authenticates only if the
    credential's root-wrapped secret still unwraps."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    url = server.endpoint + "/xks/kms/xks/v1/health"
    body = json.dumps({"requestMetadata": {"kmsRequestId": "r-1", "kmsOperation": "KmsHealthCheck"}}).encode()
    request = AWSRequest("POST", url, data=body, headers={"Content-Type": "application/json"})
    SigV4Auth(Credentials(credential["AccessKeyId"], credential["SecretAccessKey"]), "kms-xks-proxy",
              "us-east-1").add_auth(request)
    return httpx.post(url, content=body, headers=dict(request.headers), timeout=30).status_code


def test_rotation_crashed_halfway_is_finished_by_the_next_run(servers, request, tmp_path):
    """Also: every kind of root-wrapped value is re-wrapped (the registry's tables all hold one, so a table added
    later without a value here fails), each still works after version 1 is destroyed, and none is left under it."""
    from application.calls import Operator
    from infrastructure.bootstrap import build_runtime
    from infrastructure.root_keys import FileRootKeyProvider
    from infrastructure.settings import Settings

    data = tmp_path / "data"
    hsm = request.getfixturevalue("softhsm")
    hsm.init_token(STORE_TOKEN, STORE_PIN)
    server = servers.start("data", **store_env(hsm, tmp_path, {CLUSTER: {"module": hsm.module, "token_label": STORE_TOKEN}}))
    kms = server.client()
    blobs = {}
    for i in range(5):
        key_id = kms.create_key()["KeyMetadata"]["KeyId"]
        blobs[key_id] = kms.encrypt(KeyId=key_id, Plaintext=b"%d" % i)["CiphertextBlob"]
    made = every_kind_of_root_wrapped_value(server, tmp_path)
    before = registered_rows(server)
    assert [table for table, rows in before.items() if not rows] == [], "every registered table holds a value"
    assert {struct.unpack(">I", w[:4])[0] for rows in before.values() for _, w in rows} == {1}

    # Crash 1: the provider made version 2, the process died before the history recorded it.
    FileRootKeyProvider(data / "root-key").add_version(2)
    # Crash 2 (the next run): version 2 recorded, two batches of one value re-wrapped, then the process died.
    environ = {"KEYLEDGER_DATA_DIR": str(data), **({"KEYLEDGER_DATABASE_URL": server.database_url}
                                                    if server.database_url else {})}
    runtime = build_runtime(Settings.load(environ=environ))
    try:
        service = runtime.services.root_key
        service._rows = CrashAfter(service._rows, batches=2)
        with pytest.raises(Crash):
            service.rotate(Operator(user="test", host="test"), batch=1)
    finally:
        runtime.close()
    held = json.loads((data / "root-key").read_text())["keys"]
    assert set(held) == {"1", "2"}, "the version the first crash made was used, not a third one"
    status = json.loads(keyledger(data, server.database_url, {}, "root-key", "status").stdout)
    assert status["rotation"] == "re-wrapping" and status["current"] == 2
    assert set(status["wrapped_values_by_version"]) == {"1", "2"}
    keyledger(data, server.database_url, {}, "root-key", "retire", "1", expect=1)  # not while re-wrapping

    # Meanwhile the server serves from the half-rotated state, and says so.
    root_key_health(server, current_version=2, rotation="re-wrapping")
    for key_id, blob in blobs.items():
        assert kms.decrypt(CiphertextBlob=blob)["KeyId"].endswith(key_id)
    finished = keyledger(data, server.database_url, {}, "root-key", "rotate")
    assert "finished the rotation to root key version 2" in finished.stdout
    status = json.loads(keyledger(data, server.database_url, {}, "root-key", "status").stdout)
    assert status["rotation"] == "complete" and set(status["wrapped_values_by_version"]) == {"2"}
    # Crash 3: the retirement is recorded, the process dies before destroying version 1 in the provider.
    runtime = build_runtime(Settings.load(environ=environ))
    try:
        service = runtime.services.root_key
        service._provider = DiesBeforeDestroying(service._provider)
        with pytest.raises(Crash):
            service.retire(1, Operator(user="test", host="test"))
    finally:
        runtime.close()
    assert set(json.loads((data / "root-key").read_text())["keys"]) == {"1", "2"}
    assert json.loads(keyledger(data, server.database_url, {}, "root-key", "status").stdout)["retired"] == [1]
    keyledger(data, server.database_url, {}, "root-key", "retire", "1")  # again: it destroys what the crash left
    for key_id, blob in blobs.items():
        assert kms.decrypt(CiphertextBlob=blob)["KeyId"].endswith(key_id)

    # Every value is under version 2 and authenticates under it with its own AAD (read from the file: the test's
    # own AES-GCM, not keyledger's); version 1 is gone from the file.
    held = json.loads((data / "root-key").read_text())["keys"]
    assert set(held) == {"2"}
    version_2 = AESGCM(base64.b64decode(held["2"]))
    for table, rows in registered_rows(server).items():
        for aad, wrapped in rows:
            assert struct.unpack(">I", wrapped[:4])[0] == 2, table
            version_2.decrypt(wrapped[4:16], wrapped[16:], _aad(*aad))
    # And each works: the store's password logs in again, the import token from before imports, the replica
    # decrypts, the XKS credential authenticates, the token key decrypts.
    kms.disconnect_custom_key_store(CustomKeyStoreId=made["store"])
    kms.connect_custom_key_store(CustomKeyStoreId=made["store"])
    [entry] = kms.describe_custom_key_stores(CustomKeyStoreId=made["store"])["CustomKeyStores"]
    assert entry["ConnectionState"] == "CONNECTED", entry
    assert kms.decrypt(CiphertextBlob=made["in_token"])["Plaintext"] == b"in the token"
    material = os.urandom(32)
    kms.import_key_material(KeyId=made["import_key"], ImportToken=made["import"]["ImportToken"],
                            EncryptedKeyMaterial=wrap(made["import"]["PublicKey"], "RSAES_OAEP_SHA_256", material),
                            ExpirationModel="KEY_MATERIAL_DOES_NOT_EXPIRE")
    assert kms.describe_key(KeyId=made["import_key"])["KeyMetadata"]["KeyState"] == "Enabled"
    assert server.client("eu-west-1").decrypt(CiphertextBlob=made["replicated"])["Plaintext"] == b"across regions"
    assert xks_health(server, made["xks"]) == 200
    keyledger(data, server.database_url, {}, "audit", "verify")


@pytest.mark.parametrize("backend", ["sqlite"])  # the provider is what differs; re-wrapping on both backends is above
def test_env_provider_rotation_needs_the_new_version_in_every_environment_first(servers, tmp_path):
    """The env provider cannot make a version: `rotate` says how to add one; with it in KEYLEDGER_ROOT_KEY (JSON,
    already current, so restarted servers wrap new values under it) the first rotation re-wraps under it, not a
    version nobody holds; `retire` refuses the current and unknown versions, then retires 1; a server given only
    version 2 serves every old ciphertext."""
    old, new = (base64.b64encode(os.urandom(32)).decode() for _ in range(2))
    data = tmp_path / "data"
    only_old = {"KEYLEDGER_ROOT_KEY_PROVIDER": "env", "KEYLEDGER_ROOT_KEY": old}
    server = servers.start("data", **only_old)
    kms = server.client()
    key_1 = kms.create_key()["KeyMetadata"]["KeyId"]
    blob_1 = kms.encrypt(KeyId=key_1, Plaintext=b"under version 1")["CiphertextBlob"]
    server.stop()
    refused = keyledger(data, server.database_url, only_old, "root-key", "rotate", expect=1)
    assert "add the new version to KEYLEDGER_ROOT_KEY" in refused.stderr and old not in refused.stderr + refused.stdout

    both = {**only_old, "KEYLEDGER_ROOT_KEY": json.dumps({"current": 2, "keys": {"1": old, "2": new}})}
    server = servers.start("data", **both)
    kms = server.client()
    key_2 = kms.create_key()["KeyMetadata"]["KeyId"]  # wrapped under 2 already: the environment calls it current
    blob_2 = kms.encrypt(KeyId=key_2, Plaintext=b"made before the rotation")["CiphertextBlob"]
    rotated = keyledger(data, server.database_url, both, "root-key", "rotate")
    assert "rotated to root key version 2" in rotated.stdout
    for version in ("2", "7"):  # the current version; one that never existed
        assert "keyledger:" in keyledger(data, server.database_url, both, "root-key", "retire", version, expect=1).stderr
    keyledger(data, server.database_url, both, "root-key", "retire", "1")
    status = json.loads(keyledger(data, server.database_url, both, "root-key", "status").stdout)
    assert (status["provider"], status["current"], status["retired"]) == ("env", 2, [1])
    assert set(status["wrapped_values_by_version"]) == {"2"}
    root_key_health(server, provider="env", current_version=2, rotation="complete", retired_versions=[1])
    server.stop()

    only_new = {**only_old, "KEYLEDGER_ROOT_KEY": json.dumps({"current": 2, "keys": {"2": new}})}
    again = servers.start("data", **only_new)
    kms = again.client()
    assert kms.decrypt(CiphertextBlob=blob_1)["Plaintext"] == b"under version 1"
    assert kms.decrypt(CiphertextBlob=blob_2)["Plaintext"] == b"made before the rotation"
    again.stop()
    exported = keyledger(data, again.database_url, only_new, "audit", "export").stdout
    assert "RetireRootKeyVersion" in exported and old not in exported and new not in exported
    keyledger(data, again.database_url, only_new, "audit", "verify")

    # A database administrator corrupts one wrapped backing key: the next rotation stops on it, names its table,
    # and exits as a refusal (no traceback, no value printed); retiring around it is impossible (decision 107).
    engine = sa.create_engine(f"sqlite:///{again.sqlite_file}")
    with engine.begin() as conn:
        material_id, wrapped = conn.execute(sa.text("SELECT material_id, wrapped FROM backing_keys WHERE key_id = :k"),
                                            {"k": key_1}).one()
        conn.execute(sa.text("UPDATE backing_keys SET wrapped = :w WHERE key_id = :k"),
                     {"w": bytes(wrapped)[:-1] + bytes([wrapped[-1] ^ 1]), "k": key_1})
    engine.dispose()
    newer = base64.b64encode(os.urandom(32)).decode()
    three = {**only_old, "KEYLEDGER_ROOT_KEY": json.dumps({"current": 2, "keys": {"2": new, "3": newer}})}
    stopped = keyledger(data, again.database_url, three, "root-key", "rotate", expect=1)
    assert "backing_keys does not unwrap" in stopped.stderr and "Traceback" not in stopped.stderr, stopped.stderr
