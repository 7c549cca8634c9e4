"""On PostgreSQL the events table's EXCLUSIVE lock is what keeps the audit chain dense across server processes
(decision 24). Since issue #18 the event store's insert skips taking it when the transaction's own
``lock_writers`` already did (one round trip less per audit batch). These tests look at PostgreSQL's lock table
from a second connection: the lock is held by every transaction that inserts events, marked or not, and the
mark does not outlive its transaction."""
from __future__ import annotations

from typing import Iterator

import pytest
import sqlalchemy as sa

from application.audit.group_commit import PendingRecord
from infrastructure.bootstrap import Runtime, build_runtime
from infrastructure.settings import Settings
from infrastructure.storage import EVENTS_TABLE, events_locked
from tests.conftest import require_postgres
from tests.servers import drop_postgres_schema, new_postgres_schema
from tests.unit.test_audit_rows import encrypt_record


@pytest.fixture(scope="module")
def pg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Runtime, sa.Engine]]:
    base = require_postgres()
    url, schema = new_postgres_schema(base)
    runtime = build_runtime(Settings.load(environ={}, data_dir=tmp_path_factory.mktemp("pg"), database_url=url))
    observer = sa.create_engine(url)
    try:
        yield runtime, observer
    finally:
        observer.dispose()
        runtime.close()
        drop_postgres_schema(base, schema)


def exclusive_holders(observer: sa.Engine) -> int:
    """How many other sessions hold the EXCLUSIVE lock on the events table right now."""
    with observer.connect() as connection:
        return connection.execute(sa.text(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'relation' AND mode = 'ExclusiveLock' AND granted "
            "AND relation = CAST(:table AS regclass) AND pid <> pg_backend_pid()"), {"table": EVENTS_TABLE}).scalar()


class Undo(Exception):
    pass


def test_an_insert_without_lock_writers_still_takes_the_lock(pg: tuple[Runtime, sa.Engine]) -> None:
    runtime, observer = pg
    head = runtime.audit._load_head()
    rows, _ = runtime.audit._rows.rows([encrypt_record(1)], head, runtime.now())  # type: ignore[union-attr]
    with pytest.raises(Undo):
        with runtime.uow.transaction() as tx:
            assert not events_locked(tx)
            assert exclusive_holders(observer) == 0
            runtime.ledger.recorder.insert_rows(rows)
            assert exclusive_holders(observer) == 1  # the event store's own LOCK TABLE
            raise Undo


def test_lock_writers_holds_the_lock_and_the_mark_ends_with_its_transaction(pg: tuple[Runtime, sa.Engine]) -> None:
    runtime, observer = pg
    with pytest.raises(Undo):
        with runtime.uow.transaction() as tx:
            runtime.uow.lock_writers(tx)
            assert events_locked(tx) and exclusive_holders(observer) == 1
            raise Undo
    assert exclusive_holders(observer) == 0
    with runtime.uow.transaction() as tx:  # a later transaction is not taken for locked by an earlier one's mark
        assert not events_locked(tx)
        tx.execute(sa.text("SELECT 1"))
        assert not events_locked(tx)


def test_committed_batches_hold_the_lock_until_their_commit(pg: tuple[Runtime, sa.Engine]) -> None:
    """The committer's batch: lock_writers, then the insert that no longer locks again; the lock is still held
    at the insert and released by the commit."""
    runtime, observer = pg
    recorder = runtime.ledger.recorder
    seen: list[int] = []
    insert = recorder.insert_rows

    def observed(rows):  # type: ignore[no-untyped-def]
        ids = insert(rows)
        seen.append(exclusive_holders(observer))
        return ids

    recorder.insert_rows = observed  # type: ignore[method-assign]
    outcomes: list = []
    runtime.audit._commit([PendingRecord(encrypt_record(i), outcomes.append) for i in range(3)])
    assert outcomes == [None, None, None] and seen == [1]
    assert exclusive_holders(observer) == 0
