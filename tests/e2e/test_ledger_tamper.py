"""One ledger (docs/audit.md, docs/threat-model.md): a database administrator with write access changes what
is stored behind a stopped server's back, on SQLite and PostgreSQL. Every change to every kind of stored fact
(key, alias, principal, grant and audit events, read-model rows, access-key rows, checkpoints) is reported by
`keyledger audit verify`; the forgeries that would grant access (K1, K3, K4 in issue 12) make the calls
that read them fail closed; a tail that does not verify seals the server at start."""
from __future__ import annotations

import json
import signal
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import httpx
import pytest
import sqlalchemy as sa
from botocore.exceptions import ClientError

from tests.e2e.test_audit_support import audit, checkpoint_lines, verify
from tests.e2e.test_principals_cli import as_json, keyledger
from tests.servers import ACCOUNT_ID, Server
from tests.stored_states import plain, stored

MALLORY = f"arn:aws:iam::{ACCOUNT_ID}:user/mallory"
ROOT_ARN = f"arn:aws:iam::{ACCOUNT_ID}:root"


@dataclass
class History:
    server: Server
    key_id: str
    mallory_key: str
    mallory_secret: str
    shipped: str  # the checkpoints as `audit checkpoints` printed them (a copy kept off the machine)


class StoredRow(NamedTuple):
    id: int
    originator_id: Any
    originator_version: int
    topic: str
    state: bytes  # as JSON
    stored: bytes  # as stored


class Store:
    """Direct SQL on the stopped server's database, as its administrator would have it."""

    def __init__(self, server: Server) -> None:
        url = server.database_url or f"sqlite:///{server.sqlite_file}"
        self.engine = sa.create_engine(url)

    def close(self) -> None:
        self.engine.dispose()

    def rows(self, sql: str, **params: Any) -> list[Any]:
        with self.engine.connect() as conn:
            return conn.execute(sa.text(sql), params).all()

    def run(self, sql: str, **params: Any) -> int:
        with self.engine.begin() as conn:
            return conn.execute(sa.text(sql), params).rowcount

    def events(self, topic_suffix: str) -> list[Any]:
        """The rows, each state as its JSON (tests/stored_states.py); ``stored``: the bytes as stored."""
        return [StoredRow(r.id, r.originator_id, r.originator_version, r.topic, plain(r.state), bytes(r.state))
                for r in self.rows("SELECT id, originator_id, originator_version, topic, state FROM keyledger_events "
                                   "WHERE topic LIKE :t ORDER BY id", t=f"%{topic_suffix}")]

    def set_state(self, position: int, state: bytes) -> None:
        """``state`` given as JSON, stored as the service stores it."""
        assert self.run("UPDATE keyledger_events SET state = :s WHERE id = :i", s=stored(state), i=position) == 1

    def delete(self, position: int) -> None:
        assert self.run("DELETE FROM keyledger_events WHERE id = :i", i=position) == 1

    def insert_copy(self, row: Any, version: int) -> None:
        self.run("INSERT INTO keyledger_events (originator_id, originator_version, topic, state) "
                 "VALUES (:o, :v, :t, :s)", o=row.originator_id, v=version, t=row.topic, s=row.stored)

    def snapshot(self) -> dict[str, list[Any]]:
        return {table: self.rows(f"SELECT * FROM {table}") for table in (
            "keyledger_events", "key_state", "key_aliases", "key_grants", "principals", "access_keys")}

    def restore(self, saved: dict[str, list[Any]]) -> None:
        """Puts every table back as it was (the tamper matrix undoes each change before the next)."""
        with self.engine.begin() as conn:
            for table, rows in saved.items():
                conn.execute(sa.text(f"DELETE FROM {table}"))
                if rows:
                    columns = list(rows[0]._mapping.keys())
                    conn.execute(sa.text(f"INSERT INTO {table} ({', '.join(columns)}) VALUES "
                                         f"({', '.join(':' + c for c in columns)})"),
                                 [dict(r._mapping) for r in rows])


def flipped(state: bytes, needle: bytes, replacement: bytes) -> bytes:
    assert needle in state, (needle, state[:200])
    return state.replace(needle, replacement, 1)


@pytest.fixture
def history(servers) -> History:
    server = servers.start()
    kms = server.client()
    key_id = kms.create_key(Description="payroll")["KeyMetadata"]["KeyId"]
    kms.create_alias(AliasName="alias/payroll", TargetKeyId=key_id)
    kms.tag_resource(KeyId=key_id, Tags=[{"TagKey": "team", "TagValue": "pay"}])
    keyledger(server, "principals", "create", MALLORY)
    new = as_json(keyledger(server, "access-keys", "create", "--principal", MALLORY, "--json"))["AccessKey"]
    kms.create_grant(KeyId=key_id, GranteePrincipal=f"arn:aws:iam::{ACCOUNT_ID}:role/auditor",
                     Operations=["DescribeKey"])
    kms.encrypt(KeyId=key_id, Plaintext=b"salaries")
    mallory = server.client(key_id=new["AccessKeyId"], secret=new["SecretAccessKey"])
    with pytest.raises(ClientError) as refused:
        mallory.encrypt(KeyId=key_id, Plaintext=b"x")
    assert refused.value.response["Error"]["Code"] == "AccessDeniedException"
    server.stop()  # signs the shutdown checkpoint
    shipped = audit(server, "checkpoints").stdout
    assert shipped.strip() and verify(server).ok
    return History(server, key_id, new["AccessKeyId"], new["SecretAccessKey"], shipped)


def assert_verify_fails(server: Server, *words: str) -> str:
    verdict = verify(server)
    assert verdict.code == 1, f"verify passed a tampered ledger: {verdict.output}"
    for word in words:
        assert word in verdict.output, f"{word!r} not in: {verdict.output}"
    return verdict.output


# -- the matrix: every tamper kind on every fact kind, each reported by verify ---------------------------------

Tamper = Callable[[Store, History], list[str]]  # makes a change; returns words verify must print


def key_event_modified(store: Store, h: History) -> list[str]:
    created = store.events("Key.Created")[0]
    store.set_state(created.id, flipped(bytes(created.state), b"payroll", b"paywall"))
    return ["modified", h.key_id]


def key_event_deleted(store: Store, h: History) -> list[str]:
    tagged = store.events("Key.Tagged")[0]
    store.delete(tagged.id)
    return ["deleted", h.key_id]


def key_event_inserted(store: Store, h: History) -> list[str]:
    tagged = store.events("Key.Tagged")[0]
    last = store.rows("SELECT max(originator_version) FROM keyledger_events WHERE originator_id = :o",
                      o=tagged.originator_id)[0][0]
    store.insert_copy(tagged, last + 1)
    return ["inserted", h.key_id]


def key_events_reordered(store: Store, h: History) -> list[str]:
    rows = [r for r in store.rows("SELECT id, state FROM keyledger_events WHERE originator_id = :o "
                                  "ORDER BY originator_version", o=store.events("Key.Created")[0].originator_id)]
    first, second = rows[1], rows[2]
    store.set_state(first.id, bytes(second.state))
    store.set_state(second.id, bytes(first.state))
    return [h.key_id]


def grant_event_deleted(store: Store, h: History) -> list[str]:  # K5
    store.delete(store.events("Key.GrantCreated")[0].id)
    return ["deleted", h.key_id]


def aggregate(row: Any) -> str:
    """An event row's aggregate as verify names it."""
    stored = row.originator_id  # SQLite keeps the 16 bytes, PostgreSQL a uuid
    return str(uuid.UUID(bytes=bytes(stored)) if isinstance(stored, (bytes, memoryview)) else uuid.UUID(str(stored)))


def alias_event_modified(store: Store, h: History) -> list[str]:
    created = store.events("Alias.Created")[0]
    store.set_state(created.id, flipped(bytes(created.state), b"payroll", b"paywall"))
    return ["modified", aggregate(created)]


def alias_event_deleted(store: Store, h: History) -> list[str]:
    created = store.events("Alias.Created")[0]
    store.delete(created.id)
    return ["deleted", aggregate(created)]


def grant_event_modified(store: Store, h: History) -> list[str]:
    created = store.events("Key.GrantCreated")[0]
    store.set_state(created.id, flipped(bytes(created.state), b"DescribeKey", b"Decrypt"))
    return ["modified", h.key_id]


def one_digit_changed(state: bytes) -> bytes:
    at = next(i for i, b in enumerate(state) if chr(b).isdigit())
    return state[:at] + (b"1" if state[at:at + 1] != b"1" else b"2") + state[at + 1:]


def principal_event_modified(store: Store, h: History) -> list[str]:
    added = store.events("Principal.AccessKeyCreated")[-1]
    store.set_state(added.id, one_digit_changed(bytes(added.state)))
    return ["modified", aggregate(added)]


def principal_event_deleted(store: Store, h: History) -> list[str]:
    created = store.events("Principal.Created")[-1]
    store.delete(created.id)
    return ["deleted", aggregate(created)]


def principal_event_inserted(store: Store, h: History) -> list[str]:
    added = store.events("Principal.AccessKeyCreated")[-1]
    last = store.rows("SELECT max(originator_version) FROM keyledger_events WHERE originator_id = :o",
                      o=added.originator_id)[0][0]
    store.insert_copy(added, last + 1)
    return ["inserted", aggregate(added)]


def checkpoint_row_modified(store: Store, h: History) -> list[str]:
    """The database's own copy of a checkpoint (verify judges the log against the data directory's file)."""
    signed = store.events("AuditCheckpoints.CheckpointSigned")[0]
    state = json.loads(bytes(signed.state))
    chain = state["checkpoint"]["chain"]
    state["checkpoint"]["chain"] = ("0" if chain[0] != "0" else "1") + chain[1:]
    store.set_state(signed.id, json.dumps(state).encode())
    return ["checkpoint #1", "in the database"]


def checkpoint_row_deleted(store: Store, h: History) -> list[str]:
    store.delete(store.events("AuditCheckpoints.CheckpointSigned")[0].id)
    return ["checkpoint #1", "in the database"]


def audit_record_modified(store: Store, h: History) -> list[str]:
    record = store.events("AuditLog.RecordAppended")[3]
    store.set_state(record.id, flipped(bytes(record.state), b'"eventName":"', b'"eventName":"X'))
    return ["modified"]


def audit_record_time_changed(store: Store, h: History) -> list[str]:
    """The audit row's one field outside its record: the stored time."""
    record = store.events("AuditLog.RecordAppended")[3]
    state = bytes(record.state)
    head, _, tail = state.partition(b',"record":')
    assert tail, state[:120]
    store.set_state(record.id, one_digit_changed(head) + b',"record":' + tail)
    return ["modified"]


def key_state_row_forged(store: Store, h: History) -> list[str]:
    assert store.run("UPDATE key_state SET policy = replace(policy, :a, '*') WHERE key_id = :k",
                     a=ROOT_ARN, k=h.key_id) == 1
    return ["key_state", h.key_id]


def access_key_row_forged(store: Store, h: History) -> list[str]:  # K4
    assert store.run("UPDATE access_keys SET principal_arn = :r WHERE access_key_id = :k", r=ROOT_ARN,
                     k=h.mallory_key) == 1
    return ["access_keys", h.mallory_key]


def grant_row_forged(store: Store, h: History) -> list[str]:
    assert store.run("UPDATE key_grants SET operations_json = :o", o='["Decrypt", "Encrypt"]') == 1
    return ["key_grants"]


def alias_row_forged(store: Store, h: History) -> list[str]:
    assert store.run("UPDATE key_aliases SET target_key_id = :k", k="00000000-0000-4000-8000-000000000000") == 1
    return ["key_aliases"]


def principal_row_forged(store: Store, h: History) -> list[str]:
    assert store.run("UPDATE principals SET policies_json = :p WHERE arn = :a",
                     p='{"all": "{\\"Version\\": \\"2012-10-17\\", \\"Statement\\": [{\\"Effect\\": \\"Allow\\", '
                       '\\"Action\\": \\"kms:*\\", \\"Resource\\": \\"*\\"}]}"}', a=MALLORY) == 1
    return ["principals"]


MATRIX: list[Tamper] = [
    key_event_modified, key_event_deleted, key_event_inserted, key_events_reordered, grant_event_deleted,
    grant_event_modified, alias_event_modified, alias_event_deleted, principal_event_modified, principal_event_deleted,
    principal_event_inserted, audit_record_modified, audit_record_time_changed, checkpoint_row_modified,
    checkpoint_row_deleted, key_state_row_forged, access_key_row_forged, grant_row_forged, alias_row_forged,
    principal_row_forged,
]


def test_every_tamper_of_every_stored_fact_is_reported(history: History) -> None:
    store = Store(history.server)
    try:
        saved = store.snapshot()
        for tamper in MATRIX:
            words = tamper(store, history)
            output = assert_verify_fails(history.server, *words)
            assert "Traceback" not in output, f"{tamper.__name__}: {output}"
            store.restore(saved)
            verdict = verify(history.server)
            assert verdict.ok, f"after undoing {tamper.__name__}: {verdict.output}"
    finally:
        store.close()


# -- forgeries that would grant access fail closed ----------------------------------------------------------

def _mallory(history: History) -> Any:
    return history.server.client(key_id=history.mallory_key, secret=history.mallory_secret)


def _code(call: Callable[[], Any]) -> str:
    with pytest.raises(ClientError) as info:
        call()
    return info.value.response["Error"]["Code"]


def _open_policy(state: bytes) -> bytes:
    """The key's policy, inside its stored Created event, opened to every principal."""
    assert ROOT_ARN.encode() in state
    return state.replace(ROOT_ARN.encode(), b"*")


def test_forged_key_event_is_never_believed(history: History) -> None:
    """K1: the policy inside Key.Created opened to everyone. The key-state row still says otherwise, so
    mallory is refused; the first write that would rebuild the row from the forged event fails closed."""
    store = Store(history.server)
    try:
        created = store.events("Key.Created")[0]
        forged = _open_policy(bytes(created.state))
        assert forged != bytes(created.state)
        store.set_state(created.id, forged)
    finally:
        store.close()
    server = history.server.start()
    assert _code(lambda: _mallory(history).encrypt(KeyId=history.key_id, Plaintext=b"x")) == "AccessDeniedException"
    admin = server.client()
    assert _code(lambda: admin.tag_resource(KeyId=history.key_id, Tags=[{"TagKey": "a", "TagValue": "b"}])) == \
        "KMSInternalException"
    assert _code(lambda: _mallory(history).encrypt(KeyId=history.key_id, Plaintext=b"x")) == "AccessDeniedException"
    admin.encrypt(KeyId=history.key_id, Plaintext=b"still serving what is proven")
    server.stop()
    assert_verify_fails(server, "modified", history.key_id)
    replayed = keyledger(server, "replay", expect=2)
    assert "integrity check" in replayed.stderr and history.key_id in replayed.stderr, replayed.stderr


def test_forged_event_and_key_state_row_fail_closed(history: History) -> None:
    """K3: the same forgery in the event and in the key-state row."""
    store = Store(history.server)
    try:
        created = store.events("Key.Created")[0]
        store.set_state(created.id, _open_policy(bytes(created.state)))
        key_state_row_forged(store, history)
    finally:
        store.close()
    server = history.server.start()
    assert _code(lambda: _mallory(history).encrypt(KeyId=history.key_id, Plaintext=b"x")) == "KMSInternalException"
    server.stop()
    output = assert_verify_fails(server, history.key_id)
    assert "key_state" in output or "modified" in output, output


def test_forged_access_key_owner_fails_closed(history: History) -> None:
    """K4: mallory's access key made the account root's."""
    store = Store(history.server)
    try:
        access_key_row_forged(store, history)
    finally:
        store.close()
    server = history.server.start()
    assert _code(lambda: _mallory(history).list_keys()) == "KMSInternalException"
    assert server.client().list_keys()["Keys"]  # the administrator's own key is untouched
    server.stop()
    assert_verify_fails(server, "access_keys", history.mallory_key)


# -- truncation and rollback ---------------------------------------------------------------------------------

def _drop_checkpoints(store: Store, server: Server, keep: int) -> None:
    rows = store.events("AuditCheckpoints.CheckpointSigned")
    for row in rows[keep:]:
        store.delete(row.id)
    path = server.data_dir / "audit-checkpoints.jsonl"
    lines = checkpoint_lines(server)[:keep]
    path.write_text("".join(line + "\n" for line in lines))


def test_truncated_tail_with_its_checkpoints_is_caught_by_the_shipped_copy(history: History, tmp_path) -> None:
    """T1: the last calls and every checkpoint after them removed, from the database and the file."""
    server = history.server
    store = Store(server)
    try:
        records = store.events("AuditLog.RecordAppended")
        checkpoints = store.events("AuditCheckpoints.CheckpointSigned")
        assert len(checkpoints) >= 2
        first_cp_seq = json.loads(bytes(checkpoints[0].state))["checkpoint"]["seq"]
        for row in store.rows("SELECT id FROM keyledger_events WHERE id > :p AND topic NOT LIKE :c",
                              p=records[first_cp_seq - 1].id, c="%AuditCheckpoints%"):
            store.delete(row.id)
        _drop_checkpoints(store, server, keep=1)
    finally:
        store.close()
    copy = tmp_path / "shipped.jsonl"
    copy.write_text(history.shipped)
    verdict = verify(server, "--checkpoints", str(copy))
    assert verdict.code == 1 and "truncated" in verdict.output, verdict.output


def test_log_without_any_checkpoint_fails(history: History) -> None:
    """T2: every checkpoint removed."""
    store = Store(history.server)
    try:
        _drop_checkpoints(store, history.server, keep=0)
    finally:
        store.close()
    assert_verify_fails(history.server, "no checkpoint")


def test_checkpoint_and_public_key_files_are_never_silently_replaced(history: History, tmp_path) -> None:
    server = history.server
    missing = verify(server, "--checkpoints", str(tmp_path / "nonexistent.jsonl"))
    assert missing.code == 2 and "does not exist" in missing.output and "Traceback" not in missing.output
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    assert verify(server, "--checkpoints", str(empty)).code == 2
    bad_key = verify(server, "--public-key", str(tmp_path / "missing.pem"))
    assert bad_key.code == 2 and "does not exist" in bad_key.output and "Traceback" not in bad_key.output
    assert len(bad_key.output.strip().splitlines()) == 1, bad_key.output
    not_pem = tmp_path / "not.pem"
    not_pem.write_text("hello")
    garbled = verify(server, "--public-key", str(not_pem))
    assert garbled.code == 2 and "Traceback" not in garbled.output


# -- start-up verifies the tail ------------------------------------------------------------------------------

def test_a_tail_that_does_not_verify_seals_the_server_until_accepted(servers) -> None:
    server = servers.start(KEYLEDGER_AUDIT_CHECKPOINT_SECONDS="3600", KEYLEDGER_AUDIT_CHECKPOINT_RECORDS="100000")
    kms = server.client()
    key_id = kms.create_key()["KeyMetadata"]["KeyId"]
    kms.tag_resource(KeyId=key_id, Tags=[{"TagKey": "a", "TagValue": "b"}])
    server.stop(signal.SIGKILL)  # a crash: no shutdown checkpoint
    store = Store(server)
    try:
        tagged = store.events("Key.Tagged")[0]
        store.delete(tagged.id)  # after the start-up checkpoint: in the tail
    finally:
        store.close()
    server.start()
    health = httpx.get(server.endpoint + "/healthz", timeout=10)
    assert health.status_code == 503 and health.json()["status"] == "sealed", health.text
    assert "does not verify" in health.text, health.text
    banner = [line for line in server.log().splitlines() if line.startswith("SEALED:")]
    assert banner and "does not verify" in banner[0], server.log()[-2000:]  # the start banner says so too
    assert _code(lambda: server.client().list_keys()) == "KMSInternalException"
    server.stop()

    server.env["KEYLEDGER_ACCEPT_UNVERIFIED_LEDGER"] = "ticket 42: restored from backup, reviewed"
    server.start()
    assert server.client().list_keys()["Keys"]
    server.stop()
    records = [json.loads(line) for line in audit(server, "export", "--format", "jsonl").stdout.splitlines()]
    accepted = [r for r in records if r["eventName"] == "AcceptUnverifiedLedger"]
    assert len(accepted) == 1 and "ticket 42" in json.dumps(accepted[0]["requestParameters"])
    assert_verify_fails(server, "deleted", key_id)


def test_checkpoints_follow_streams_each_new_checkpoint(history: History) -> None:
    """`audit checkpoints --follow` prints what is signed, as it is signed: the copy to ship elsewhere."""
    import subprocess
    import sys
    import threading

    from tests.e2e.test_audit_support import cli_env
    from tests.servers import ROOT

    server = history.server
    already = len(history.shipped.strip().splitlines())
    follower = subprocess.Popen([sys.executable, "-m", "api", "audit", "checkpoints", "--follow"], cwd=ROOT,
                                env=cli_env(server), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        lines = [follower.stdout.readline() for _ in range(already)]
        assert all(line.strip() for line in lines), lines
        server.start()
        server.client().create_key(Description="after the follower started")
        server.stop()  # the shutdown checkpoint (and the one at start) reach the follower
        got: list[str] = []
        reader = threading.Thread(target=lambda: got.append(follower.stdout.readline()), daemon=True)
        reader.start()
        reader.join(timeout=120)  # a hang guard, not a speed target
        assert got and got[0].strip(), "no new checkpoint reached the follower"
        new = got[0]
        assert json.loads(new)["seq"] >= json.loads(lines[-1])["seq"]
    finally:
        follower.kill()
        follower.wait(timeout=10)
