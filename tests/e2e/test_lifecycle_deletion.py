"""Key deletion end to end, on SQLite and PostgreSQL: ScheduleKeyDeletion, the waiting period, deletion by
the maintenance pass when the service clock passes the deletion date, and crypto-shredding -- the
key's root-wrapped backing keys are gone from the database (raw and wrapped, in every stored file or
table), while the key's event history stays."""
from __future__ import annotations

import base64
import json
import sqlite3
import struct
import time
import uuid
from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa
from botocore.exceptions import ClientError
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from tests.e2e.helpers import (
    advance_days,
    code,
    create_key,
    error_code,
    keyledger,
    listed,
    maintenance,
    postgres_tables,
    secret_hits,
    unique_alias,
    unvalidated_client,
)
from tests.servers import Server

BACKING_KEY_PURPOSE = "backing-key"


# -- helpers -----------------------------------------------------------------------------------------








def backing_rows(server: Server, backend: str, key_id: str) -> list[tuple[str, str, bytes]]:
    """(key_id, material_id, wrapped) of the key's backing keys, read straight from the database."""
    if backend == "sqlite":
        conn = sqlite3.connect(f"file:{server.sqlite_file}?mode=ro", uri=True)
        try:
            rows = conn.execute("SELECT key_id, material_id, wrapped FROM backing_keys WHERE key_id = ?",
                                (key_id,)).fetchall()
        finally:
            conn.close()
    else:
        assert server.database_url
        engine = sa.create_engine(server.database_url)
        try:
            with engine.connect() as conn:
                rows = conn.execute(sa.text("SELECT key_id, material_id, wrapped FROM backing_keys "
                                            "WHERE key_id = :k"), {"k": key_id}).all()
        finally:
            engine.dispose()
    return [(str(k), str(m), bytes(w)) for k, m, w in rows]


def unwrap(server: Server, key_id: str, material_id: str, wrapped: bytes) -> bytes:
    """Undoes the root-key wrapping with the root key file, as documented in domain/crypto/wrapping.py."""
    document = json.loads((server.data_dir / "root-key").read_text())
    (version,) = struct.unpack(">I", wrapped[:4])
    root = base64.b64decode(document["keys"][str(version)])
    aad = b"".join(struct.pack(">I", len(p)) + p for p in
                   (s.encode("utf-8") for s in (BACKING_KEY_PURPOSE, key_id, material_id)))
    return AESGCM(root).decrypt(wrapped[4:16], wrapped[16:], aad)


def sqlite_files(server: Server) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(server.data_dir.glob("keyledger.db*"))
            if p.name in ("keyledger.db", "keyledger.db-wal", "keyledger.db-shm")}



def checkpoint(server: Server) -> None:
    conn = sqlite3.connect(server.sqlite_file)
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()


def event_originators(server: Server, backend: str) -> list[uuid.UUID]:
    if backend == "sqlite":
        conn = sqlite3.connect(f"file:{server.sqlite_file}?mode=ro", uri=True)
        try:
            values = [r[0] for r in conn.execute("SELECT originator_id FROM keyledger_events")]
        finally:
            conn.close()
    else:
        assert server.database_url
        engine = sa.create_engine(server.database_url)
        try:
            with engine.connect() as conn:
                values = [r[0] for r in conn.execute(sa.text("SELECT originator_id FROM keyledger_events"))]
        finally:
            engine.dispose()
    out = []
    for value in values:
        if isinstance(value, bytes) and len(value) == 16:
            out.append(uuid.UUID(bytes=value))
        else:
            out.append(uuid.UUID(str(value.decode() if isinstance(value, bytes) else value)))
    return out


# -- Scheduling and canceling --------------------------------------------------------------------------

def test_schedule_deletion_window_rules(shared_server):
    raw = unvalidated_client(shared_server)
    key = create_key(raw)["KeyId"]
    for days in (0, 6, 31):
        assert error_code(raw.schedule_key_deletion, KeyId=key, PendingWindowInDays=days) == "ValidationException"
    assert raw.describe_key(KeyId=key)["KeyMetadata"]["KeyState"] == "Enabled"
    before = datetime.now(timezone.utc)
    response = raw.schedule_key_deletion(KeyId=key)  # default window: 30 days
    assert response["KeyState"] == "PendingDeletion"
    assert response["PendingWindowInDays"] == 30
    assert abs(response["DeletionDate"].astimezone(timezone.utc) - (before + timedelta(days=30))) < timedelta(minutes=10)
    assert error_code(raw.schedule_key_deletion, KeyId=key, PendingWindowInDays=7) == "KMSInvalidStateException"


def test_pending_deletion_refuses_use_and_cancel_brings_the_key_back_disabled(servers):
    server = servers.start(name="cancel", KEYLEDGER_MAINTENANCE_INTERVAL="0")
    kms = server.client()
    key = create_key(kms)["KeyId"]
    alias = unique_alias("cancel")
    kms.create_alias(AliasName=alias, TargetKeyId=key)
    blob = kms.encrypt(KeyId=key, Plaintext=b"kept after cancel")["CiphertextBlob"]

    before = datetime.now(timezone.utc)
    scheduled = kms.schedule_key_deletion(KeyId=key, PendingWindowInDays=7)
    assert scheduled["KeyState"] == "PendingDeletion"
    assert scheduled["PendingWindowInDays"] == 7
    meta = kms.describe_key(KeyId=key)["KeyMetadata"]
    assert meta["KeyState"] == "PendingDeletion" and meta["Enabled"] is False
    assert abs(meta["DeletionDate"].astimezone(timezone.utc) - (before + timedelta(days=7))) < timedelta(minutes=10)
    assert error_code(kms.encrypt, KeyId=key, Plaintext=b"x") == "KMSInvalidStateException"
    assert error_code(kms.encrypt, KeyId=alias, Plaintext=b"x") == "KMSInvalidStateException"
    assert error_code(kms.decrypt, CiphertextBlob=blob) == "KMSInvalidStateException"
    assert error_code(kms.generate_data_key, KeyId=key, KeySpec="AES_256") == "KMSInvalidStateException"
    assert error_code(kms.enable_key, KeyId=key) == "KMSInvalidStateException"
    assert key in listed(kms.list_keys, "Keys", "KeyId")  # still listed while pending

    # Still within the window: maintenance deletes nothing.
    advance_days(server, 3)
    assert maintenance(server)["deleted"] == []

    kms.cancel_key_deletion(KeyId=key)
    meta = kms.describe_key(KeyId=key)["KeyMetadata"]
    assert meta["KeyState"] == "Disabled" and meta["Enabled"] is False
    assert "DeletionDate" not in meta
    assert error_code(kms.encrypt, KeyId=key, Plaintext=b"x") == "DisabledException"
    assert error_code(kms.cancel_key_deletion, KeyId=key) == "KMSInvalidStateException"

    # Past the original deletion date: nothing is deleted any more.
    advance_days(server, 8)
    assert maintenance(server)["deleted"] == []
    assert kms.describe_key(KeyId=key)["KeyMetadata"]["KeyState"] == "Disabled"
    kms.enable_key(KeyId=key)
    assert kms.decrypt(CiphertextBlob=blob)["Plaintext"] == b"kept after cancel"
    assert kms.describe_key(KeyId=alias)["KeyMetadata"]["KeyId"] == key


def test_in_server_scheduler_deletes_due_keys(servers):
    server = servers.start(name="scheduler", KEYLEDGER_MAINTENANCE_INTERVAL="0.5")
    kms = server.client()
    key = create_key(kms)["KeyId"]
    kms.schedule_key_deletion(KeyId=key, PendingWindowInDays=7)
    keyledger(server, "clock", "advance", "--days", "8")
    deadline = time.monotonic() + 20
    gone = False
    while time.monotonic() < deadline and not gone:
        try:
            kms.describe_key(KeyId=key)
            time.sleep(0.3)
        except ClientError as error:
            assert code(error) == "NotFoundException"
            gone = True
    assert gone, f"the server's own maintenance did not delete the key within 20 s\n{server.log()}"


# -- Deletion and crypto-shredding ------------------------------------------------------------------------

def test_deletion_after_the_window_shreds_the_key(servers, backend):
    server = servers.start(name="shred", KEYLEDGER_MAINTENANCE_INTERVAL="0")
    kms = server.client()

    doomed = create_key(kms, Description="to be deleted")["KeyId"]
    kms.rotate_key_on_demand(KeyId=doomed)  # two backing keys
    signer = create_key(kms, KeySpec="ECC_NIST_P256", KeyUsage="SIGN_VERIFY")["KeyId"]
    survivor = create_key(kms, Description="stays")["KeyId"]
    doomed_alias, signer_alias, survivor_alias = unique_alias("doomed"), unique_alias("signer"), unique_alias("stays")
    kms.create_alias(AliasName=doomed_alias, TargetKeyId=doomed)
    kms.create_alias(AliasName=signer_alias, TargetKeyId=signer)
    kms.create_alias(AliasName=survivor_alias, TargetKeyId=survivor)
    doomed_blob = kms.encrypt(KeyId=doomed, Plaintext=b"unreadable after deletion",
                              EncryptionContext={"purpose": "shred"})["CiphertextBlob"]
    survivor_blob = kms.encrypt(KeyId=survivor, Plaintext=b"still readable")["CiphertextBlob"]
    signature = kms.sign(KeyId=signer, Message=b"m", SigningAlgorithm="ECDSA_SHA_256")["Signature"]

    # Before deletion: the backing keys, straight from the database, unwrapped with the root key file.
    secrets: dict[str, bytes] = {}
    for key, expected_rows in ((doomed, 2), (signer, 1)):
        rows = backing_rows(server, backend, key)
        assert len(rows) == expected_rows, rows
        for key_id, material_id, wrapped in rows:
            material = unwrap(server, key_id, material_id, wrapped)
            assert len(material) >= 32
            secrets[f"material {key_id}/{material_id}"] = material
            secrets[f"wrapped {key_id}/{material_id}"] = wrapped
    survivor_rows = backing_rows(server, backend, survivor)
    assert len(survivor_rows) == 1
    survivor_wrapped = survivor_rows[0][2]

    for key in (doomed, signer):
        kms.schedule_key_deletion(KeyId=key, PendingWindowInDays=7)
    assert maintenance(server)["deleted"] == []  # not due yet
    advance_days(server, 8)
    report = maintenance(server)
    assert sorted(report["deleted"]) == sorted([doomed, signer])
    assert maintenance(server)["deleted"] == []

    # The keys are gone for every API.
    for key in (doomed, signer):
        assert error_code(kms.describe_key, KeyId=key) == "NotFoundException"
        assert error_code(kms.list_aliases, KeyId=key) == "NotFoundException"
        assert error_code(kms.schedule_key_deletion, KeyId=key, PendingWindowInDays=7) == "NotFoundException"
        assert error_code(kms.cancel_key_deletion, KeyId=key) == "NotFoundException"
    assert error_code(kms.encrypt, KeyId=doomed, Plaintext=b"x") == "NotFoundException"
    assert error_code(kms.get_key_rotation_status, KeyId=doomed) == "NotFoundException"
    assert error_code(kms.list_key_rotations, KeyId=doomed) == "NotFoundException"
    assert error_code(kms.enable_key, KeyId=doomed) == "NotFoundException"
    assert error_code(kms.describe_key, KeyId=doomed_alias) == "NotFoundException"
    assert error_code(kms.encrypt, KeyId=doomed_alias, Plaintext=b"x") == "NotFoundException"
    assert error_code(kms.sign, KeyId=signer, Message=b"m", SigningAlgorithm="ECDSA_SHA_256") == "NotFoundException"
    assert error_code(kms.get_public_key, KeyId=signer) == "NotFoundException"
    for kwargs in ({}, {"KeyId": doomed}):
        with pytest.raises(ClientError) as info:
            kms.decrypt(CiphertextBlob=doomed_blob, EncryptionContext={"purpose": "shred"}, **kwargs)
        assert code(info.value) in ("InvalidCiphertextException", "NotFoundException")
    assert error_code(kms.verify, KeyId=signer, Message=b"m", Signature=signature,
                      SigningAlgorithm="ECDSA_SHA_256") == "NotFoundException"
    key_ids = listed(kms.list_keys, "Keys", "KeyId")
    assert doomed not in key_ids and signer not in key_ids and survivor in key_ids
    aliases = listed(kms.list_aliases, "Aliases", "AliasName")
    assert doomed_alias not in aliases and signer_alias not in aliases and survivor_alias in aliases
    # The alias names are free again.
    kms.create_alias(AliasName=doomed_alias, TargetKeyId=survivor)
    assert kms.describe_key(KeyId=doomed_alias)["KeyMetadata"]["KeyId"] == survivor
    assert kms.decrypt(CiphertextBlob=survivor_blob)["Plaintext"] == b"still readable"

    assert backing_rows(server, backend, doomed) == []
    assert backing_rows(server, backend, signer) == []

    # The history stays: the deleted keys' events are all still in the log.
    originators = event_originators(server, backend)
    assert originators.count(uuid.UUID(doomed)) >= 4  # created, rotated, deletion scheduled, deleted
    assert originators.count(uuid.UUID(signer)) >= 3

    # Crypto-shredding: neither the material nor its wrapped form is left anywhere in the database.
    # (On SQLite after a checkpoint; test_stopped_server_leaves_no_shredded_material_in_the_wal checks
    # the files exactly as the stopped server leaves them.)
    if backend == "sqlite":
        server.stop()
        checkpoint(server)
        stored = sqlite_files(server)
        assert "keyledger.db" in stored
    else:
        stored = postgres_tables(server)
        server.stop()
    assert secret_hits(stored, secrets) == []
    # Positive control: the same search finds the surviving key's wrapped backing key.
    assert secret_hits(stored, {"survivor": survivor_wrapped})


# SQLite's write-ahead log only; PostgreSQL is checked in test_deletion_after_the_window_shreds_the_key.
@pytest.mark.parametrize("backend", ["sqlite"])
def test_stopped_server_leaves_no_shredded_material_in_the_wal(servers, backend):
    """After the key is deleted and the server stopped (SIGTERM, as an operator would), the SQLite files as
    the server left them -- no checkpoint by anyone else -- must not hold the deleted key's backing key,
    not even root-wrapped: whoever holds the root key could otherwise recover the shredded material."""
    server = servers.start(name="wal", KEYLEDGER_MAINTENANCE_INTERVAL="0")
    kms = server.client()
    key = create_key(kms)["KeyId"]
    ((key_id, material_id, wrapped),) = backing_rows(server, backend, key)
    secrets = {"material": unwrap(server, key_id, material_id, wrapped), "wrapped": wrapped}
    kms.schedule_key_deletion(KeyId=key, PendingWindowInDays=7)
    advance_days(server, 8)
    assert maintenance(server)["deleted"] == [key]
    assert error_code(kms.describe_key, KeyId=key) == "NotFoundException"
    server.stop()
    stored = sqlite_files(server)
    assert secret_hits(stored, secrets) == [], (
        f"files left by the stopped server: { {name: len(data) for name, data in stored.items()} }")
