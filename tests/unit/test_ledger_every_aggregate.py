"""One ledger, for every kind of aggregate the service stores (issue 12), on a real runtime in process, on SQLite
and on PostgreSQL: keys (a multi-Region primary and its replica among them), aliases, principals with their access
keys, grants, an external (XKS) custom key store, XKS proxy credentials and the root-key history.

A database administrator with write access:
* modifies, deletes, inserts or reorders any aggregate's stored events: `verify` fails and names the aggregate;
* truncates the store behind a checkpoint, or changes a checkpoint the database keeps: `verify` fails;
* forges a tagged row in place, or puts back an older, validly tagged copy of one (a disabled key's Enabled row, a
  retargeted alias, a revoked grant, a deleted policy, an Inactive access key, a connected store's earlier row, a
  deleted XKS credential): the service refuses the row when it reads it and `verify` names it (decision 190)."""
from __future__ import annotations

import json
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
import sqlalchemy as sa

from application.audit.checkpoints import stored_checkpoints, stored_copy_problems
from application.audit.ledger_verify import LedgerVerifyResult, verify_ledger
from application.calls import Operator
from domain.audit.chain import checkpoint_from_json
from domain.errors import TamperedStateError
from domain.keystores.store import store_uuid
from infrastructure.bootstrap import Runtime, build_runtime
from infrastructure.event_rows import SqlEventRows
from infrastructure.row_audit import forged_rows
from infrastructure.row_freshness import stale_rows
from infrastructure.settings import Settings
from tests.calls import api_call
from tests.conftest import BACKENDS, require_postgres
from tests.servers import ACCOUNT_ID, ADMIN_KEY_ID, ADMIN_SECRET, drop_postgres_schema, new_postgres_schema
from tests.stored_states import plain, stored
from tests.unit.test_external_key_stores import Proxy, call, new_store
from tests.unit.test_point_in_time import SCOPE

OPERATOR = Operator("dba-test", "host")
MALLORY = f"arn:aws:iam::{ACCOUNT_ID}:user/mallory"
ROOT = f"arn:aws:iam::{ACCOUNT_ID}:root"
OPEN = json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "kms:*", "Resource": "*"}]})
EU = "eu-west-1"


class World:
    """A runtime with a history of every aggregate kind, and rows copied before they changed."""

    def __init__(self, rt: Runtime, proxy: Proxy) -> None:
        self.rt, self.proxy = rt, proxy
        self.engine: sa.Engine = rt.ledger.recorder.datastore.engine
        self.events = rt.ledger.recorder.events_record_cls.__table__  # type: ignore[attr-defined]
        self.older: dict[str, dict[str, Any]] = {}  # table -> a row as it was before a later change

    def do(self, method: str, *args: Any, **kwargs: Any) -> Any:
        service, operation = method.split(".")
        fn = getattr(getattr(self.rt.services, service), operation)
        return fn(api_call("".join(p.title() for p in operation.split("_")), ROOT, SCOPE, at=self.rt.now()),
                  *args, **kwargs)

    def row(self, table: str, where: str, **params: Any) -> dict[str, Any]:
        with self.engine.connect() as conn:
            return dict(conn.execute(sa.text(f"SELECT * FROM {table} WHERE {where}"), params).one()._mapping)

    def keep(self, table: str, where: str, **params: Any) -> None:
        self.older[table] = self.row(table, where, **params)

    def build(self) -> None:
        s = self.rt.services
        assert s is not None
        key = self.do("keys.create_key", description="payroll")["KeyMetadata"]["KeyId"]
        other = self.do("keys.create_key", description="other")["KeyMetadata"]["KeyId"]
        primary = self.do("keys.create_key", multi_region=True)["KeyMetadata"]["KeyId"]
        self.do("multi_region.replicate_key", primary, EU)
        self.do("aliases.create_alias", "alias/payroll", key)
        grant = self.do("grants.create_grant", key, operations=["Encrypt"], grantee_principal=MALLORY)["GrantId"]
        s.principal_admin.create_principal(MALLORY, OPERATOR)
        s.principal_admin.put_policy(MALLORY, "all", OPEN, OPERATOR)
        mallory = s.principal_admin.create_access_key(MALLORY, OPERATOR).access_key_id
        store = new_store(self.rt, "every")
        assert s.xks_credential_admin is not None
        gone = s.xks_credential_admin.create(ROOT, OPERATOR).row.access_key_id
        s.root_key.rotate(OPERATOR)
        for table, where, params in (
                ("key_state", "key_id = :k", {"k": key}), ("key_aliases", "alias_name = :a", {"a": "alias/payroll"}),
                ("key_grants", "grant_id = :g", {"g": grant}), ("principals", "arn = :a", {"a": MALLORY}),
                ("access_keys", "access_key_id = :k", {"k": mallory}),
                ("custom_key_stores", "store_id = :s", {"s": store}), ("xks_credentials", "access_key_id = :k", {"k": gone})):
            self.keep(table, where, **params)
        self.do("keys.disable_key", key)
        self.do("aliases.update_alias", "alias/payroll", other)
        self.do("grants.revoke_grant", key, grant)
        s.principal_admin.delete_policy(MALLORY, "all", OPERATOR)
        s.principal_admin.set_access_key_status(mallory, "Inactive", OPERATOR)
        s.key_stores.connect(call("ConnectCustomKeyStore"), store)
        s.xks_credential_admin.delete(gone, OPERATOR)
        self.key, self.grant, self.mallory, self.store, self.gone = key, grant, mallory, store, gone
        self.other = other
        s.checkpointer.checkpoint_if_due(force=True)

    def verify(self) -> LedgerVerifyResult:
        return verify_ledger(self.rt.ledger, stored_checkpoints(self.rt.ledger), self.rt.services.audit_public_key,
                             rows=SqlEventRows(self.rt.uow))

    def sql(self, statement: str, **params: Any) -> Any:
        with self.engine.begin() as conn:
            return conn.execute(sa.text(statement), params)

    def stored(self, where: str = "1 = 1", aggregate: Any = None) -> list[Any]:
        query = sa.select(self.events).where(sa.text(where))
        if aggregate is not None:
            query = query.where(self.events.c.originator_id == aggregate)
        with self.engine.connect() as conn:
            return conn.execute(query.order_by(self.events.c.id)).all()

    def insert_copy(self, row: Any) -> None:
        with self.engine.begin() as conn:
            conn.execute(self.events.insert().values(originator_id=row.originator_id, topic=row.topic,
                                                      originator_version=row.originator_version + 1, state=row.state))

    def drop_copy(self, row: Any) -> None:
        e = self.events
        with self.engine.begin() as conn:
            conn.execute(e.delete().where(e.c.originator_id == row.originator_id,
                                          e.c.originator_version == row.originator_version + 1))

    def put(self, rows: list[Any]) -> None:
        """Rows of the event table back as they were (the same ids, versions and states)."""
        with self.engine.begin() as conn:
            for row in rows:
                conn.execute(self.events.delete().where(self.events.c.id == row.id))
                conn.execute(self.events.insert().values(**row._mapping))


@pytest.fixture(scope="module", params=BACKENDS)
def world(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    environ = {"KEYLEDGER_ADMIN_ACCESS_KEY_ID": ADMIN_KEY_ID, "KEYLEDGER_ADMIN_SECRET_ACCESS_KEY": ADMIN_SECRET,
               "KEYLEDGER_KEY_CACHE_SECONDS": "0"}
    base, schema = None, None
    if request.param == "postgres":
        base = require_postgres()
        environ["KEYLEDGER_DATABASE_URL"], schema = new_postgres_schema(base)
    rt = build_runtime(Settings.load(environ=environ, data_dir=tmp_path_factory.mktemp(f"every-{request.param}")))
    proxy = Proxy()
    assert rt.services is not None
    rt.services.key_stores._external._client = proxy  # type: ignore[union-attr]
    rt.audit.start()
    try:
        w = World(rt, proxy)
        w.build()
        assert w.verify().ok, w.verify().problem
        yield w
    finally:
        rt.close()
        if schema is not None and base is not None:
            drop_postgres_schema(base, schema)


def _kinds(w: World) -> dict[str, Any]:
    """One aggregate id per kind of aggregate: the topic of its first event names it."""
    kinds: dict[str, Any] = {}
    for row in w.stored("topic NOT LIKE '%AuditLog%' AND topic NOT LIKE '%AuditCheckpoints%'"):
        kind = row.topic.rpartition(":")[2].rpartition(".")[0]
        if row.originator_version == 1:
            kinds.setdefault(kind + (".replica" if "Replica" in row.topic else ""), row.originator_id)
    return kinds


def test_every_kind_of_aggregate_is_stored(world: World) -> None:
    assert {"Key", "Key.replica", "Alias", "Principal", "CustomKeyStore", "XksCredential"} <= set(_kinds(world)), \
        _kinds(world)
    assert any("RootKey" in kind for kind in _kinds(world)), _kinds(world)


def _flip(state: bytes) -> bytes:
    at = len(state) // 3
    return state[:at] + bytes([state[at] ^ 0x04]) + state[at + 1:]


TAMPERS: dict[str, Callable[[World, list[Any]], None]] = {
    "modified": lambda w, rows: w.sql("UPDATE keyledger_events SET state = :s WHERE id = :i",
                                      s=_flip(bytes(rows[-1].state)), i=rows[-1].id),
    "deleted": lambda w, rows: w.sql("DELETE FROM keyledger_events WHERE id = :i", i=rows[-1].id),
    "inserted": lambda w, rows: w.insert_copy(rows[-1]),
    "reordered": lambda w, rows: (
        w.sql("UPDATE keyledger_events SET state = :s WHERE id = :i", s=bytes(rows[-1].state), i=rows[-2].id),
        w.sql("UPDATE keyledger_events SET state = :s WHERE id = :i", s=bytes(rows[-2].state), i=rows[-1].id)),
}


@pytest.mark.parametrize("tamper", sorted(TAMPERS))
def test_every_tamper_of_every_aggregate_is_named(world: World, tamper: str) -> None:
    for kind, aggregate in sorted(_kinds(world).items()):
        rows = world.stored(aggregate=aggregate)
        if tamper == "reordered" and len(rows) < 2:
            continue
        TAMPERS[tamper](world, rows)
        try:
            result = world.verify()
            assert not result.ok, f"{tamper} {kind} went unnoticed"
            named = result.aggregate == str(aggregate) or str(aggregate) in (result.problem or "")
            assert named, f"{tamper} {kind}: {result.problem} (aggregate {result.aggregate})"
        finally:
            if tamper == "inserted":
                world.drop_copy(rows[-1])
            world.put(rows)
        assert world.verify().ok, f"after undoing {tamper} {kind}"


def test_truncation_behind_a_checkpoint_and_a_changed_stored_checkpoint_fail(world: World) -> None:
    every = world.stored()
    tail = every[len(every) * 2 // 3:]
    world.sql("DELETE FROM keyledger_events WHERE id >= :i AND topic NOT LIKE '%AuditCheckpoints%'", i=tail[0].id)
    try:
        result = world.verify()
        assert not result.ok and "truncat" in (result.problem or ""), result.problem
    finally:
        world.put([r for r in tail if "AuditCheckpoints" not in r.topic])
    assert world.verify().ok
    newest = world.stored("topic LIKE '%CheckpointSigned'")[-1]
    state = json.loads(plain(newest.state))  # checkpoint events are not tagged
    chain = state["checkpoint"]["chain"]
    state["checkpoint"]["chain"] = ("0" if chain[0] != "0" else "1") + chain[1:]
    world.sql("UPDATE keyledger_events SET state = :s WHERE id = :i", s=stored(json.dumps(state).encode()), i=newest.id)
    file = [checkpoint_from_json(line) for line in world.rt.settings.checkpoint_file.read_text().splitlines()]
    key = world.rt.services.audit_public_key
    try:
        assert not world.verify().ok
        # Judged against the checkpoint file, the database's changed copy is named too (decision 191).
        assert "in the database" in " ".join(stored_copy_problems(stored_checkpoints(world.rt.ledger), file, key))
        world.sql("UPDATE keyledger_events SET state = :s WHERE id = :i", s=b'{"checkpoint": {"seq', i=newest.id)
        assert not world.verify().ok  # a row that no longer decodes is named, never a traceback
        assert "in the database" in " ".join(stored_copy_problems(stored_checkpoints(world.rt.ledger), file, key))
        world.sql("DELETE FROM keyledger_events WHERE id = :i", i=newest.id)
        assert "deleted from the database" in " ".join(stored_copy_problems(stored_checkpoints(world.rt.ledger),
                                                                            file, key))
    finally:
        world.put([newest])
    assert world.verify().ok and not stored_copy_problems(stored_checkpoints(world.rt.ledger), file, key)


def _put_row(w: World, table: str, row: dict[str, Any], where: str, **params: Any) -> None:
    w.sql(f"DELETE FROM {table} WHERE {where}", **params)
    w.sql(f"INSERT INTO {table} ({', '.join(row)}) VALUES ({', '.join(':' + c for c in row)})", **row)


def test_an_older_copy_of_any_tagged_row_fails_closed_and_is_named(world: World) -> None:
    s = world.rt.services
    assert s is not None
    readers: dict[str, tuple[str, dict[str, Any], Callable[[], Any]]] = {
        "key_state": ("key_id = :k", {"k": world.key}, lambda: s.resolver.row(
            api_call("Encrypt", ROOT, SCOPE), world.key)),
        "key_aliases": ("alias_name = :a", {"a": "alias/payroll"},
                        lambda: s.resolver.row(api_call("Encrypt", ROOT, SCOPE), "alias/payroll")),
        "key_grants": ("grant_id = :g", {"g": world.grant}, None),  # authorization reads the key's row, not these
        "principals": ("arn = :a", {"a": MALLORY}, lambda: s.principals.identity_policies(MALLORY)),
        "access_keys": ("access_key_id = :k", {"k": world.mallory}, lambda: s.credentials.lookup(world.mallory)),
        "custom_key_stores": ("store_id = :s", {"s": world.store}, lambda: s.key_store_view.get(world.store)),
        "xks_credentials": ("access_key_id = :k", {"k": world.gone}, lambda: s.xks_credentials.lookup(world.gone)),
    }
    for table, (where, params, read) in readers.items():
        with world.engine.connect() as conn:
            now = [dict(r._mapping) for r in conn.execute(sa.text(f"SELECT * FROM {table} WHERE {where}"), params)]
        _put_row(world, table, world.older[table], where, **params)
        try:
            if read is not None:
                with pytest.raises(TamperedStateError):
                    read()
            assert not list(forged_rows(world.rt.ledger, world.rt.ledger.row_seal)), table  # its tag is genuine
            stale = list(stale_rows(world.rt.ledger, world.rt.ledger.row_seal))
            assert any(line.startswith(f"{table}[") for line in stale), (table, stale)
        finally:
            world.sql(f"DELETE FROM {table} WHERE {where}", **params)
            for row in now:
                _put_row(world, table, row, where, **params)
        assert not list(stale_rows(world.rt.ledger, world.rt.ledger.row_seal)), table


def test_an_older_copy_in_a_list_fails_closed(world: World) -> None:
    """ListKeys, ListAliases, kms:ResourceAliases (what authorization reads of a key's aliases) and
    DescribeCustomKeyStores read rows in lists: an older copy put back among them fails the list, as it fails the one-row reads above. Here the
    retargeted alias's earlier row names the key again, which a policy's kms:ResourceAliases condition would see."""
    s = world.rt.services
    assert s is not None
    view = s.resolver._view
    account, region = SCOPE.account_id, SCOPE.region
    assert "alias/payroll" not in view.aliases_of(account, region, world.key)  # it names another key now
    listed = {
        "key_aliases": ("alias_name = :a", {"a": "alias/payroll"}, [
            lambda: view.list_aliases(account, region, None, 100, None),
            lambda: view.list_aliases(account, region, world.key, 100, None),
            lambda: view.aliases_of(account, region, world.key)]),
        "key_state": ("key_id = :k", {"k": world.key}, [lambda: view.list_keys(account, region, 100, None)]),
        "custom_key_stores": ("store_id = :s", {"s": world.store}, [
            lambda: s.key_store_view.list(account, region, 100, None), s.key_store_view.all]),
    }
    for table, (where, params, reads) in listed.items():
        with world.engine.connect() as conn:
            now = [dict(r._mapping) for r in conn.execute(sa.text(f"SELECT * FROM {table} WHERE {where}"), params)]
        _put_row(world, table, world.older[table], where, **params)
        try:
            for read in reads:
                with pytest.raises(TamperedStateError):
                    read()
        finally:
            world.sql(f"DELETE FROM {table} WHERE {where}", **params)
            for row in now:
                _put_row(world, table, row, where, **params)
        for read in reads:
            read()  # the proven rows list again
    assert view.list_aliases(account, region, world.key, 100, None) == []
    # A page of ListKeys holds up to 1,000 keys: their heads are read in parts under SQLite's parameter bound.
    real = uuid.UUID(world.key)
    with world.rt.uow.transaction() as tx:
        heads = world.rt.uow.last_versions(tx, [uuid.uuid4() for _ in range(1200)] + [real])
    assert list(heads) == [real] and heads[real] >= 3


def test_a_deleted_row_of_any_living_aggregate_is_named(world: World) -> None:
    """A row deleted is a change too: a list cannot see what is missing (an alias row deleted hides the alias from
    kms:ResourceAliases, decision 265), so `verify` names every key, alias, principal and custom key store whose
    events say it exists and whose row is gone. A one-row read of a deleted row finds nothing and refuses."""
    s = world.rt.services
    assert s is not None
    deleted = {
        "key_state": ("key_id = :k AND region = :r", {"k": world.key, "r": SCOPE.region},
                      lambda: s.resolver.row(api_call("Encrypt", ROOT, SCOPE), world.key)),
        "key_aliases": ("alias_name = :a", {"a": "alias/payroll"},
                        lambda: s.resolver.row(api_call("Encrypt", ROOT, SCOPE), "alias/payroll")),
        "principals": ("arn = :a", {"a": MALLORY}, None),
        "custom_key_stores": ("store_id = :s", {"s": world.store}, None),
    }
    for table, (where, params, read) in deleted.items():
        with world.engine.connect() as conn:
            now = [dict(r._mapping) for r in conn.execute(sa.text(f"SELECT * FROM {table} WHERE {where}"), params)]
        assert len(now) == 1, table
        world.sql(f"DELETE FROM {table} WHERE {where}", **params)
        try:
            if read is not None:
                with pytest.raises(Exception) as refused:
                    read()
                assert type(refused.value).__name__ in ("NotFoundError", "TamperedStateError"), refused.value
            stale = list(stale_rows(world.rt.ledger, world.rt.ledger.row_seal))
            assert [line for line in stale if line.startswith(f"{table}[") and "is missing" in line], (table, stale)
        finally:
            _put_row(world, table, now[0], where, **params)
        assert not list(stale_rows(world.rt.ledger, world.rt.ledger.row_seal)), table
    # An alias deleted through the service leaves no row, and its events end in Alias.Deleted: nothing to name.
    world.do("aliases.create_alias", "alias/fleeting", world.other)
    world.do("aliases.delete_alias", "alias/fleeting")
    assert not list(stale_rows(world.rt.ledger, world.rt.ledger.row_seal))


def test_a_custom_key_store_row_changed_in_place_fails_closed_and_is_named(world: World) -> None:
    s = world.rt.services
    assert s is not None
    world.sql("UPDATE custom_key_stores SET name = 'renamed' WHERE store_id = :s", s=world.store)
    try:
        with pytest.raises(TamperedStateError):
            s.key_store_view.get(world.store)
        assert any(line.startswith("custom_key_stores[") for line in forged_rows(world.rt.ledger,
                                                                                 world.rt.ledger.row_seal))
    finally:
        world.sql("UPDATE custom_key_stores SET name = 'every' WHERE store_id = :s", s=world.store)
    assert s.key_store_view.get(world.store) is not None and str(store_uuid(world.store))


def test_the_world_still_serves(world: World, tmp_path: Path) -> None:
    """After every undo: the proven state reads as it is (no false refusal from the freshness checks)."""
    s = world.rt.services
    assert s is not None
    assert s.resolver.row(api_call("Encrypt", ROOT, SCOPE), "alias/payroll") is not None
    assert s.credentials.lookup(world.mallory) is None  # Inactive
    assert s.credentials.lookup(ADMIN_KEY_ID) is not None
    assert s.key_store_view.get(world.store) is not None
    assert s.xks_credentials.lookup(world.gone) is None
    assert world.verify().ok


def test_changes_committed_during_a_read_never_refuse_current_rows(world: World) -> None:
    """A list reads its rows, then their events' heads, in separate statements. A ListKeys in the hostile storm once
    answered 500 "failed its integrity check": two changes to one key had committed during its reads. Here real
    changes commit just before and just after each read of the heads, on another thread, as the server's would."""
    s = world.rt.services
    assert s is not None
    view = s.resolver._view
    account, region = SCOPE.account_id, SCOPE.region
    changes = iter(range(10**6))

    def change() -> None:
        world.do("keys.update_key_description", world.key, f"changed during a read {next(changes)}")
        world.do("aliases.update_alias", "alias/payroll", world.key if next(changes) % 2 else world.other)

    head, heads, reader = view._head, view._heads, threading.get_ident()
    assert head is not None and heads is not None
    with ThreadPoolExecutor(1) as writer:
        def around(read: Callable[..., Any]) -> Callable[..., Any]:
            def with_changes(*args: Any) -> Any:
                if threading.get_ident() != reader:  # the changes' own reads
                    return read(*args)
                writer.submit(change).result()
                found = read(*args)
                writer.submit(change).result()
                return found
            return with_changes

        view._head, view._heads = around(head), around(heads)
        try:
            assert any(k.key_id == world.key for k in view.list_keys(account, region, 100, None))
            assert view.get_key(world.key) is not None
            assert any(a.alias_name == "alias/payroll" for a in view.list_aliases(account, region, None, 100, None))
            view.aliases_of(account, region, world.key)
        finally:
            view._head, view._heads = head, heads


def test_verify_reads_the_rows_and_their_events_as_one_moment_saw_them(world: World) -> None:
    """`verify` reads every event's head, then each table of rows. Run against a serving database, a change that
    committed between would make a current row look like an older copy put back; it reads in one snapshot instead.
    Real changes commit (on another thread) as it reads the first row."""
    seal = world.rt.ledger.row_seal
    committed = []

    class ChangingWhileRead:
        def matches(self, table: str, row: Any) -> bool:
            if not committed:
                committed.append(table)
                with ThreadPoolExecutor(1) as writer:
                    writer.submit(lambda: (
                        world.do("keys.update_key_description", world.key, "changed during verify"),
                        world.do("aliases.update_alias", "alias/payroll", world.key),
                        world.do("aliases.update_alias", "alias/payroll", world.other))).result()
            return seal.matches(table, row)

    assert list(stale_rows(world.rt.ledger, ChangingWhileRead())) == []  # type: ignore[arg-type]
    assert committed and list(stale_rows(world.rt.ledger, seal)) == []
