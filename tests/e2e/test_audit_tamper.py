"""Tampering with the audit log behind the server's back, on SQLite and PostgreSQL: each kind of change
made directly in the database (or to the checkpoint file) makes `keyledger audit verify` exit 1 naming
the first bad seq as domain/audit/chain.py defines it; an untouched log verifies."""
from __future__ import annotations

import json
import os
import shutil

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from domain.audit.chain import checkpoint_from_json, checkpoint_to_json, make_checkpoint
from tests.e2e.test_audit_support import (
    FIRST_START,
    AuditTable,
    audit,
    checkpoint,
    checkpoint_lines,
    export_jsonl,
    kms_client,
    record_of,
    verify,
    with_record,
)
from tests.servers import Server

CALLS = 20
RECORDS = CALLS + FIRST_START  # what a prepared log holds: the first start's record, then one per call
K = 7  # the record tampered with: not the first, not near a checkpoint boundary's end


def make_calls(server: Server, count: int) -> None:
    """`count` calls, each leaving exactly one record: a mix of changes, crypto and refusals."""
    if count <= 0:
        return
    kms = kms_client(server)
    key = kms.create_key()["KeyMetadata"]["KeyId"]
    made = 1
    while made < count:
        step = made % 4
        if step == 0:
            kms.describe_key(KeyId=key)
        elif step == 1:
            kms.encrypt(KeyId=key, Plaintext=os.urandom(16), EncryptionContext={"n": str(made)})
        elif step == 2:
            kms.generate_random(NumberOfBytes=8)
        else:
            try:
                kms.describe_key(KeyId="alias/does-not-exist")
            except kms.exceptions.NotFoundException:
                pass
        made += 1


def start(servers, name: str = "server") -> Server:
    return servers.start(name=name, KEYLEDGER_AUDIT_CHECKPOINT_RECORDS="5")


def prepared(servers, calls: int = CALLS) -> Server:
    """A server whose log holds `calls` records and a forced checkpoint covering all of them; stopped."""
    server = start(servers)
    for _ in range(calls // 5):
        make_calls(server, 5)
        audit(server, "checkpoint")  # the server may sign this one itself; either way one more checkpoint
    make_calls(server, calls % 5)
    server.stop()
    assert checkpoint(server) == calls + FIRST_START
    assert len(checkpoint_lines(server)) >= calls // 5 + 1
    records = export_jsonl(server)
    assert [r["seq"] for r in records] == list(range(1, calls + FIRST_START + 1))
    verdict = verify(server)
    assert verdict.ok and f"OK: {calls + FIRST_START} records" in verdict.output, verdict.output
    return server


def assert_fails(server: Server, first_bad: int | None, *words: str) -> str:
    verdict = verify(server)
    assert verdict.code == 1, f"verify should fail, exited {verdict.code}: {verdict.output}"
    assert "FAILED" in verdict.output, verdict.output
    if first_bad is None:
        assert "FAILED (checkpoint file)" in verdict.output, verdict.output
    else:
        assert verdict.first_bad_seq == first_bad, f"expected first bad seq {first_bad}: {verdict.output}"
    for word in words:
        assert word in verdict.output, f"{word!r} not in: {verdict.output}"
    return verdict.output


# -- an untouched log -------------------------------------------------------------------------------------

def test_untouched_log_verifies(servers) -> None:
    server = start(servers)
    make_calls(server, CALLS)
    assert verify(server).ok  # while the server runs
    server.stop()
    assert checkpoint_from_json(checkpoint_lines(server)[-1]).seq == RECORDS  # signed at graceful shutdown
    assert checkpoint(server) == RECORDS
    verdict = verify(server)
    assert verdict.ok, verdict.output
    assert f"OK: {RECORDS} records" in verdict.output
    # Restarting and appending more keeps it whole.
    server = start(servers)
    make_calls(server, 6)
    server.stop()
    verdict = verify(server)
    assert verdict.ok and f"OK: {RECORDS + 6} records" in verdict.output, verdict.output


# -- tampering with records ---------------------------------------------------------------------------------

def test_modified_record_names_its_seq(servers) -> None:
    server = prepared(servers)
    table = AuditTable(server)
    state = table.states()[K]
    assert record_of(state)["seq"] == K
    new_name = "Decrypt" if record_of(state)["eventName"] != "Decrypt" else "Encrypt"
    table.set_states({K: with_record(state, eventName=new_name)})
    assert export_jsonl(server)[K - 1]["eventName"] == new_name
    assert_fails(server, K, "modified")


def test_modified_error_code_names_its_seq(servers) -> None:
    server = prepared(servers)
    table = AuditTable(server)
    refused = [seq for seq, state in table.states().items() if record_of(state)["errorCode"]]
    assert refused
    seq = refused[len(refused) // 2]
    table.set_states({seq: with_record(table.states()[seq], errorCode=None, errorMessage=None)})
    assert_fails(server, seq)


def test_deleted_record_names_the_missing_seq(servers) -> None:
    server = prepared(servers)
    AuditTable(server).delete([K])
    assert K not in [r["seq"] for r in export_jsonl(server)]
    assert_fails(server, K, "missing")


def test_swapped_records_name_the_lower_seq(servers) -> None:
    server = prepared(servers)
    table = AuditTable(server)
    states = table.states()
    table.set_states({K: states[K + 1], K + 1: states[K]})
    assert [r["seq"] for r in export_jsonl(server)][K - 1:K + 1] == [K + 1, K]
    assert_fails(server, K)


def test_truncated_tail_is_detected(servers) -> None:
    server = prepared(servers)
    AuditTable(server).delete(range(RECORDS - 4, RECORDS + 1))  # the last 5, all covered by the checkpoint
    assert len(export_jsonl(server)) == RECORDS - 5
    assert_fails(server, RECORDS - 4, "truncated")


def test_rewritten_and_rechained_log_is_caught_by_a_checkpoint(servers) -> None:
    """Change a record and recompute every leaf and chain after it: the per-record checks pass, only the
    signed checkpoint can tell; the first bad seq is one past the last checkpoint that still matched."""
    from domain.audit.chain import GENESIS, seal

    server = prepared(servers)
    table = AuditTable(server)
    states = table.states()
    cps = [checkpoint_from_json(line) for line in checkpoint_lines(server)]
    chain, rewritten = GENESIS, {}
    for seq in sorted(states):
        record = record_of(states[seq])
        if seq == K:
            record["eventName"] = "Rewritten"
        sealed = seal(record, chain, seq)
        chain = bytes.fromhex(sealed["chain"])
        if seq >= K:
            whole = json.loads(states[seq])
            whole["record"] = sealed
            rewritten[seq] = json.dumps(whole, separators=(",", ":")).encode()
    table.set_states(rewritten)
    vouched = max([cp.seq for cp in cps if cp.seq < K], default=0)
    assert_fails(server, vouched + 1, "checkpoint")


# -- tampering with checkpoints -----------------------------------------------------------------------------

def _other_key() -> bytes:
    return Ed25519PrivateKey.generate().private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                                                      serialization.NoEncryption())


def test_forged_checkpoint_is_detected(servers) -> None:
    server = prepared(servers)
    path = server.data_dir / "audit-checkpoints.jsonl"
    lines = checkpoint_lines(server)
    last = checkpoint_from_json(lines[-1])
    head = export_jsonl(server)[-1]
    forged = make_checkpoint(_other_key(), head["seq"], head["chain"], last.time, last)
    with open(path, "a") as f:
        f.write(checkpoint_to_json(forged) + "\n")
    assert_fails(server, None, "forged")


def test_altered_checkpoint_chain_is_detected(servers) -> None:
    server = prepared(servers)
    path = server.data_dir / "audit-checkpoints.jsonl"
    lines = checkpoint_lines(server)
    victim = json.loads(lines[0])
    victim["chain"] = ("0" if victim["chain"][0] != "0" else "1") + victim["chain"][1:]
    lines[0] = json.dumps(victim, sort_keys=True, separators=(",", ":"))
    path.write_text("\n".join(lines) + "\n")
    assert_fails(server, None)


def test_removed_checkpoint_line_is_detected(servers) -> None:
    server = prepared(servers)
    path = server.data_dir / "audit-checkpoints.jsonl"
    lines = checkpoint_lines(server)
    assert len(lines) >= 3, lines
    del lines[1]
    path.write_text("\n".join(lines) + "\n")
    assert_fails(server, None, "not linked")


# -- rolling the database back ---------------------------------------------------------------------------------

def test_rolled_back_database_is_detected(servers) -> None:
    early_calls = 8
    server = start(servers)
    make_calls(server, early_calls)
    server.stop()
    table = AuditTable(server)
    if not server.database_url:
        table.wal_checkpoint()
        backup = server.data_dir.parent / "keyledger.db.backup"
        shutil.copy2(server.sqlite_file, backup)
    server = start(servers)  # same data directory / schema
    make_calls(server, 12)
    server.stop()
    assert checkpoint(server) == early_calls + 12 + FIRST_START
    assert verify(server).ok
    early = early_calls + FIRST_START
    if server.database_url:  # emulate: the newest records vanish
        AuditTable(server).delete(range(early + 1, early + 13))
    else:
        for suffix in ("-wal", "-shm"):
            side = server.sqlite_file.with_name(server.sqlite_file.name + suffix)
            if side.exists():
                side.unlink()
        shutil.copy2(backup, server.sqlite_file)
    assert len(export_jsonl(server)) == early
    assert_fails(server, early + 1, "truncated")


@pytest.mark.parametrize("backend", ["sqlite"])  # a file-level rollback is a SQLite scenario
def test_rolled_back_database_that_keeps_running_is_detected(servers) -> None:
    """Roll back, then let the server run on: the log grows again past the checkpoints with other records
    (a fork). Verification must still fail."""
    server = start(servers)
    make_calls(server, 8)
    server.stop()
    AuditTable(server).wal_checkpoint()
    backup = server.data_dir.parent / "keyledger.db.backup"
    shutil.copy2(server.sqlite_file, backup)
    server = start(servers)
    make_calls(server, 12)
    server.stop()
    assert checkpoint(server) == 20 + FIRST_START
    for suffix in ("-wal", "-shm"):
        side = server.sqlite_file.with_name(server.sqlite_file.name + suffix)
        if side.exists():
            side.unlink()
    shutil.copy2(backup, server.sqlite_file)
    server = start(servers)
    make_calls(server, 20)
    server.stop()
    assert len(export_jsonl(server)) == 28 + FIRST_START
    verdict = verify(server)
    assert verdict.code == 1 and "FAILED" in verdict.output, verdict.output


# -- the public key -----------------------------------------------------------------------------------------------

def test_verify_with_the_published_public_key(servers, tmp_path) -> None:
    server = prepared(servers)
    pem = audit(server, "public-key").stdout
    assert pem.startswith("-----BEGIN PUBLIC KEY-----"), pem
    published = tmp_path / "audit-public.pem"
    published.write_text(pem)
    verdict = verify(server, "--public-key", str(published))
    assert verdict.ok and f"OK: {RECORDS} records" in verdict.output, verdict.output

    other = tmp_path / "other-public.pem"
    other.write_bytes(Ed25519PrivateKey.generate().public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    assert_fails_with = verify(server, "--public-key", str(other))
    assert assert_fails_with.code == 1, assert_fails_with.output
    assert "forged" in assert_fails_with.output, assert_fails_with.output

    # A checkpoint file taken elsewhere (--checkpoints) is judged the same way.
    copy = tmp_path / "checkpoints-copy.jsonl"
    shutil.copy2(server.data_dir / "audit-checkpoints.jsonl", copy)
    verdict = verify(server, "--checkpoints", str(copy), "--public-key", str(published))
    assert verdict.ok, verdict.output
    lines = copy.read_text().splitlines()
    copy.write_text("\n".join(lines[:-1]) + "\n")  # an older (shorter) copy still vouches for what it covers
    assert verify(server, "--checkpoints", str(copy), "--public-key", str(published)).ok
