"""Durability and secrecy at rest, on both backends.

Restart: everything a client saw before SIGTERM is there after a new process starts on the same data
directory (and, for PostgreSQL, the same schema), and old ciphertexts still decrypt.

Secrets at rest: no plaintext, data key, root key or admin secret is ever written to the database in
any recognisable form (raw, base64, hex) -- checked on the SQLite file and its WAL while the server
runs and after it stops, and on a dump of every table of the server's PostgreSQL schema.
"""
from __future__ import annotations

import base64
import json
import os
from typing import Any

import pytest

from tests.e2e.helpers import create_key, key_arn, postgres_tables, secret_forms, secret_hits, unique_alias
from tests.servers import ADMIN_SECRET, Server
from tests.stored_states import sqlite_states


def _aliases(kms) -> list[dict[str, Any]]:
    out, marker = [], None
    while True:
        page = kms.list_aliases(Limit=100, **({"Marker": marker} if marker else {}))
        out += page["Aliases"]
        if not page["Truncated"]:
            return sorted(out, key=lambda a: a["AliasName"])
        marker = page["NextMarker"]


def _key_ids(kms) -> set[str]:
    return {k["KeyId"] for k in kms.list_keys(Limit=1000)["Keys"]}


# -- Restart ----------------------------------------------------------------------------------------

def test_restart_keeps_keys_aliases_and_ciphertexts(servers):
    first = servers.start(name="node")
    kms = first.client()
    enabled = create_key(kms, Description="stays enabled", Tags=[{"TagKey": "t", "TagValue": "1"}])["KeyId"]
    disabled = create_key(kms, Description="gets disabled")["KeyId"]
    pending = create_key(kms, Description="pending deletion")["KeyId"]
    retargeted = create_key(kms, Description="alias target after update")["KeyId"]
    kms.update_key_description(KeyId=enabled, Description="stays enabled (updated)")

    alias_enabled, alias_moved, alias_deleted = unique_alias("r1"), unique_alias("r2"), unique_alias("r3")
    kms.create_alias(AliasName=alias_enabled, TargetKeyId=enabled)
    kms.create_alias(AliasName=alias_moved, TargetKeyId=disabled)
    kms.update_alias(AliasName=alias_moved, TargetKeyId=retargeted)
    kms.create_alias(AliasName=alias_deleted, TargetKeyId=enabled)
    kms.delete_alias(AliasName=alias_deleted)

    messages = {key: os.urandom(48) for key in (enabled, disabled, pending, retargeted)}
    blobs = {key: kms.encrypt(KeyId=key, Plaintext=msg, EncryptionContext={"key": key})["CiphertextBlob"]
             for key, msg in messages.items()}
    data_key = kms.generate_data_key(KeyId=alias_enabled, KeySpec="AES_256")

    kms.disable_key(KeyId=disabled)
    kms.schedule_key_deletion(KeyId=pending, PendingWindowInDays=7)

    before_meta = {k: kms.describe_key(KeyId=k)["KeyMetadata"] for k in messages}
    before_aliases = _aliases(kms)
    before_keys = _key_ids(kms)
    before_tags = kms.list_resource_tags(KeyId=enabled)["Tags"]
    before_policy = kms.get_key_policy(KeyId=enabled, PolicyName="default")["Policy"]

    first.stop()  # SIGTERM
    assert first.process is not None and first.process.poll() is not None

    second = servers.start(name="node")
    assert second.data_dir == first.data_dir and second.database_url == first.database_url
    kms = second.client()

    assert _key_ids(kms) == before_keys
    for key, meta in before_meta.items():
        assert kms.describe_key(KeyId=key)["KeyMetadata"] == meta, key
    assert _aliases(kms) == before_aliases
    assert alias_deleted not in {a["AliasName"] for a in before_aliases}
    assert kms.list_resource_tags(KeyId=enabled)["Tags"] == before_tags
    assert kms.get_key_policy(KeyId=enabled, PolicyName="default")["Policy"] == before_policy
    assert kms.describe_key(KeyId=alias_moved)["KeyMetadata"]["KeyId"] == retargeted

    # Old ciphertexts decrypt (usable keys) or refuse exactly as before the restart (unusable ones).
    for key in (enabled, retargeted):
        out = kms.decrypt(CiphertextBlob=blobs[key], EncryptionContext={"key": key})
        assert out["Plaintext"] == messages[key] and out["KeyId"] == key_arn(key)
    assert kms.decrypt(CiphertextBlob=data_key["CiphertextBlob"])["Plaintext"] == data_key["Plaintext"]
    with pytest.raises(kms.exceptions.DisabledException):
        kms.decrypt(CiphertextBlob=blobs[disabled], EncryptionContext={"key": disabled})
    with pytest.raises(kms.exceptions.KMSInvalidStateException):
        kms.decrypt(CiphertextBlob=blobs[pending], EncryptionContext={"key": pending})

    # State transitions continue from where they were.
    kms.enable_key(KeyId=disabled)
    assert kms.decrypt(CiphertextBlob=blobs[disabled], EncryptionContext={"key": disabled})["Plaintext"] == messages[disabled]
    kms.cancel_key_deletion(KeyId=pending)
    kms.enable_key(KeyId=pending)
    assert kms.decrypt(CiphertextBlob=blobs[pending], EncryptionContext={"key": pending})["Plaintext"] == messages[pending]
    # And new work goes on: a new key, an alias name re-used after its deletion.
    new_key = create_key(kms)["KeyId"]
    kms.create_alias(AliasName=alias_deleted, TargetKeyId=new_key)
    blob = kms.encrypt(KeyId=alias_deleted, Plaintext=b"after restart")["CiphertextBlob"]
    assert kms.decrypt(CiphertextBlob=blob)["Plaintext"] == b"after restart"


def test_second_restart_sees_changes_made_after_the_first(servers):
    first = servers.start(name="node")
    key = create_key(first.client())["KeyId"]
    first.stop()
    second = servers.start(name="node")
    second.client().update_key_description(KeyId=key, Description="changed after restart 1")
    blob = second.client().encrypt(KeyId=key, Plaintext=b"x")["CiphertextBlob"]
    second.stop()
    third = servers.start(name="node")
    kms = third.client()
    assert kms.describe_key(KeyId=key)["KeyMetadata"]["Description"] == "changed after restart 1"
    assert kms.decrypt(CiphertextBlob=blob)["Plaintext"] == b"x"


# -- Secrets at rest --------------------------------------------------------------------------------

def _sqlite_bytes(server: Server) -> bytes:
    """The SQLite database file and its -wal / -shm companions, as they are on disk right now."""
    parts = []
    for path in sorted(server.data_dir.glob("keyledger.db*")):
        parts.append(path.read_bytes())
    parts.append(sqlite_states(server.data_dir / "keyledger.db"))  # the JSON of compressed states
    return b"\n".join(parts)




def _stored(server: Server, backend: str) -> bytes:
    return _sqlite_bytes(server) if backend == "sqlite" else b"\n".join(postgres_tables(server).values())


def _root_key_material(server: Server) -> list[bytes]:
    text = (server.data_dir / "root-key").read_text()
    document = json.loads(text) if text.strip().startswith("{") else {"keys": {"1": text.strip()}}
    raw = [base64.b64decode(k) for k in document["keys"].values()]
    assert raw and all(len(k) == 32 for k in raw)
    return [text.strip().encode()] + [form for k in raw for form in secret_forms(k)]


def _hits(haystack: bytes, secrets: dict[str, bytes]) -> list[str]:
    return secret_hits({"": haystack}, secrets)


def _other_files(server: Server) -> bytes:
    """Everything in the data directory except the two files that hold secrets by design."""
    by_design = {"root-key", "admin-credentials"}
    return b"\n".join(p.read_bytes() for p in sorted(server.data_dir.rglob("*"))
                      if p.is_file() and p.name not in by_design and not p.name.startswith("keyledger.db"))


def test_no_secret_is_stored_at_rest(servers, backend):
    server = servers.start(name="secrets")
    kms = server.client()
    key = create_key(kms, Description="secrets at rest")["KeyId"]
    other = create_key(kms)["KeyId"]
    alias = unique_alias("secrets")
    kms.create_alias(AliasName=alias, TargetKeyId=key)

    secrets: dict[str, bytes] = {}
    for i in range(4):
        plaintext = os.urandom(32 + 13 * i)
        secrets[f"plaintext {i}"] = plaintext
        blob = kms.encrypt(KeyId=alias, Plaintext=plaintext, EncryptionContext={"n": str(i)})["CiphertextBlob"]
        kms.re_encrypt(CiphertextBlob=blob, SourceEncryptionContext={"n": str(i)}, DestinationKeyId=other)
        assert kms.decrypt(CiphertextBlob=blob, EncryptionContext={"n": str(i)})["Plaintext"] == plaintext
    printable = ("pw-" + os.urandom(24).hex()).encode()
    secrets["printable plaintext"] = printable
    kms.encrypt(KeyId=key, Plaintext=printable)
    for spec in ("AES_256", "AES_128"):
        secrets[f"data key {spec}"] = kms.generate_data_key(KeyId=key, KeySpec=spec)["Plaintext"]
    secrets["data key 48 bytes"] = kms.generate_data_key(KeyId=key, NumberOfBytes=48)["Plaintext"]
    without = kms.generate_data_key_without_plaintext(KeyId=key, KeySpec="AES_256")
    secrets["data key without plaintext"] = kms.decrypt(CiphertextBlob=without["CiphertextBlob"])["Plaintext"]
    secrets["random"] = kms.generate_random(NumberOfBytes=64)["Plaintext"]
    secrets["admin secret"] = ADMIN_SECRET.encode()
    # Backing keys never leave the server, so this test cannot name them; what it can check is that the
    # root key wrapping them (read from the root-key file) is nowhere in the database in any form, and
    # (by the scans below) that no value the service ever handed out in clear was stored.
    root_forms = _root_key_material(server)

    # While the server runs (for SQLite the fresh pages are in the -wal file).
    stored = _stored(server, backend)
    assert key.encode() in stored, "positive control: the scan must see the database's contents"
    assert _hits(stored, secrets) == []
    assert [f[:8] for f in root_forms if f in stored] == []
    if backend == "sqlite":
        assert server.sqlite_file.exists()

    server.stop()

    # After a clean shutdown (SQLite checkpoints the WAL into the main file).
    stored = _stored(server, backend)
    assert key.encode() in stored
    assert _hits(stored, secrets) == []
    assert [f[:8] for f in root_forms if f in stored] == []

    # Nothing else in the data directory, and nothing in the server's own output.
    assert _hits(_other_files(server), secrets) == []
    log = server.log().encode()
    assert _hits(log, secrets) == []
    assert ADMIN_SECRET.encode() not in log
    assert [f[:8] for f in root_forms if f in log] == []


def test_admin_secret_is_not_in_database_or_log(servers, backend):
    server = servers.start(name="admin")
    server.client().list_keys()  # the credential was created and used
    stored = _stored(server, backend)
    assert b"AKIAKEYLEDGERTESTS01" in stored, "positive control: the access key id is stored"
    assert [f[:8] for f in secret_forms(ADMIN_SECRET.encode()) if f in stored] == []
    server.stop()
    stored = _stored(server, backend)
    assert b"AKIAKEYLEDGERTESTS01" in stored
    assert [f[:8] for f in secret_forms(ADMIN_SECRET.encode()) if f in stored] == []
    assert ADMIN_SECRET not in server.log()
