"""The audit committer's own transactions (infrastructure/audit_appends.py, decision 269), on a real SQLite file and
the real PostgreSQL: the rows they store are the library's rows, the chain stays dense and verifies when other writers append in
between, a conflict or a failure writes nothing and leaves the connection usable, and a log that has not started is
started by the library's path."""
from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any, Iterator

import pytest
import sqlalchemy as sa
from eventsourcing.persistence import IntegrityError, OperationalError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from application.audit.checkpoints import audit_records
from application.audit.group_commit import PendingRecord
from application.audit.trail import AuditTrail
from domain.audit.chain import verify_log
from domain.audit.log import AUDIT_LOG_ID
from infrastructure.audit_appends import DriverRecordAppends
from infrastructure.audit_committer import build_committer_trail
from infrastructure.bootstrap import Runtime, build_runtime
from infrastructure.settings import Settings
from tests.unit.test_audit_rows import encrypt_record, runtime  # noqa: F401 - the fixture, on both backends


@pytest.fixture
def sqlite_runtime(tmp_path: Path) -> Iterator[Runtime]:
    rt = build_runtime(Settings.load(environ={}, data_dir=tmp_path))
    try:
        yield rt
    finally:
        rt.close()


@pytest.fixture
def committer_trail(runtime: Runtime) -> Iterator[AuditTrail]:  # noqa: F811
    trail, close = build_committer_trail(runtime.settings, runtime.ledger.mapper.row_key)
    try:
        yield trail
    finally:
        close()


def commit(trail: AuditTrail, records: list[dict[str, Any]]) -> None:
    outcomes: list = []
    trail._commit([PendingRecord(record, outcomes.append) for record in records])
    assert outcomes == [None] * len(records)


def stored_rows(runtime: Runtime) -> list[tuple]:
    return [(e.originator_version, e.topic, e.state) for e in runtime.ledger.recorder.select_events(AUDIT_LOG_ID)]


def test_the_committer_uses_its_own_transactions(committer_trail: AuditTrail) -> None:
    assert isinstance(committer_trail._appends, DriverRecordAppends)


class _Undo(Exception):
    pass


def _written_then_undone(trail: AuditTrail, batch: list[dict[str, Any]], own: bool) -> tuple[list, list]:
    """The event rows and index rows one path writes for ``batch``, read inside its transaction, then rolled back."""
    seen: list = []
    try:
        if own:
            with trail._appends.transaction() as tx:  # type: ignore[union-attr]
                head = trail._begin_own_append(tx)
                assert head is not None
                trail._append(tx, head, batch, own=tx)
                mark = committer_trail_placeholder(trail)
                seen = [[(v, *tx.stored_state(AUDIT_LOG_ID, v)) for v in range(head[0] + 2, head[0] + 2 + len(batch))],
                        tx._driver.execute(f"SELECT * FROM audit_index WHERE seq > {mark} ORDER BY seq, slot",
                                           (head[0],)).fetchall()]
                raise _Undo
        with trail._uow.transaction() as tx:
            head = trail._begin_append(tx)
            trail._append(tx, head, batch)
            rows = tx.execute(sa.text("SELECT originator_version, topic, state FROM keyledger_events "
                                      "WHERE originator_version > :v AND topic LIKE '%RecordAppended' "
                                      "ORDER BY originator_version"), {"v": head[0] + 1}).all()
            seen = [[(v, t, bytes(st_)) for v, t, st_ in rows],
                    tx.execute(sa.text("SELECT * FROM audit_index WHERE seq > :s ORDER BY seq, slot"),
                               {"s": head[0]}).all()]
            raise _Undo
    except _Undo:
        pass
    finally:
        trail._head = None
    return seen[0], [tuple(row) for row in seen[1]]


def committer_trail_placeholder(trail: AuditTrail) -> str:
    return trail._appends.placeholder  # type: ignore[union-attr]


def test_own_and_library_transactions_store_the_same_rows(runtime: Runtime, committer_trail: AuditTrail) -> None:
    commit(committer_trail, [encrypt_record(0)])
    committer_trail._clock = _Fixed()
    before = stored_rows(runtime)
    batch = [encrypt_record(i) for i in range(20)]
    own = _written_then_undone(committer_trail, batch, own=True)
    library = _written_then_undone(committer_trail, batch, own=False)
    assert len(own[0]) == 20 and len(own[1]) == 20
    assert own == library
    assert stored_rows(runtime) == before  # both rolled back


class _Fixed:
    def now(self) -> Any:
        from datetime import datetime, timezone
        return datetime(2026, 12, 7, 12, 0, 0, 123456, tzinfo=timezone.utc)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(plan=st.lists(st.tuples(st.sampled_from(["committer", "server"]), st.integers(1, 9)), min_size=1, max_size=8))
def test_other_writers_between_batches_keep_the_chain_dense(runtime: Runtime, committer_trail: AuditTrail,
                                                             plan: list[tuple[str, int]]) -> None:
    """The server process appends too (key changes, a fallback): the committer's head is then stale, read again on
    its own connection under the lock, and the log stays one dense verified chain."""
    for who, size in plan:
        commit(committer_trail if who == "committer" else runtime.audit, [encrypt_record(i) for i in range(size)])
    records = list(audit_records(runtime.ledger))
    assert verify_log(records).ok
    assert [r["seq"] for r in records] == list(range(1, len(records) + 1))


def _started(runtime: Runtime, trail: AuditTrail) -> tuple[DriverRecordAppends, list[tuple]]:  # noqa: F811
    """The committer's own transactions after its first batch, and the log's rows then."""
    commit(trail, [encrypt_record(0)])
    appends = trail._appends
    assert isinstance(appends, DriverRecordAppends)
    return appends, stored_rows(runtime)


def test_a_taken_version_writes_nothing_and_the_next_batch_goes_on(runtime: Runtime,  # noqa: F811
                                                                   committer_trail: AuditTrail) -> None:
    appends, before = _started(runtime, committer_trail)
    head = committer_trail._head
    rows, _ = committer_trail._rows.rows([encrypt_record(1), encrypt_record(2)], head, _Fixed().now())  # type: ignore[union-attr]
    taken = rows[:1] + [(rows[1][0], before[-1][0], rows[1][2], rows[1][3])]  # the second row takes a stored version
    with pytest.raises(IntegrityError):
        with appends.transaction() as tx:
            tx.insert_rows(taken)
    assert stored_rows(runtime) == before  # the first row went with the transaction
    commit(committer_trail, [encrypt_record(3)])
    assert verify_log(list(audit_records(runtime.ledger))).ok


def test_a_failing_statement_rolls_back_and_lets_the_gate_go(runtime: Runtime,  # noqa: F811
                                                             committer_trail: AuditTrail) -> None:
    appends, before = _started(runtime, committer_trail)
    with pytest.raises(OperationalError):
        with appends.transaction() as tx:
            tx.insert_rows([(AUDIT_LOG_ID, 10_000, "t", b"x")])
            tx.insert("no_such_table", ("a",), [(1,)])
    assert stored_rows(runtime) == before
    assert appends._gate is None or appends._gate.acquire(timeout=1)  # the gate was let go
    if appends._gate is not None:
        appends._gate.release()
    commit(runtime.audit, [encrypt_record(1)])  # another writer is not locked out
    commit(committer_trail, [encrypt_record(2)])
    assert verify_log(list(audit_records(runtime.ledger))).ok


def test_a_locked_database_fails_the_batch_closed(tmp_path: Path) -> None:
    """Another connection holds SQLite's write lock past the busy timeout: the batch fails, nothing is written, and
    once the lock is free the committer appends again."""
    rt = build_runtime(Settings.load(environ={"KEYLEDGER_SQLITE_BUSY_TIMEOUT_MS": "200"}, data_dir=tmp_path))
    trail, close = build_committer_trail(rt.settings, rt.ledger.mapper.row_key)
    try:
        trail._appends._gate = None  # type: ignore[union-attr] - only SQLite's own lock is in the way
        commit(trail, [encrypt_record(0)])
        before = stored_rows(rt)
        holder = sqlite3.connect(rt.settings.resolved_database_url.removeprefix("sqlite:///"))
        holder.execute("BEGIN IMMEDIATE")
        try:
            outcomes: list = []
            trail._commit([PendingRecord(encrypt_record(1), outcomes.append)])
            assert isinstance(outcomes[0], OperationalError)
        finally:
            holder.rollback()
            holder.close()
        assert stored_rows(rt) == before
        commit(trail, [encrypt_record(2)])
        assert verify_log(list(audit_records(rt.ledger))).ok
    finally:
        close()
        rt.close()


def test_a_log_not_yet_started_is_started_by_the_library(tmp_path: Path) -> None:
    """A store whose audit log has no event (its Started event removed, as a fresh store's log before the first
    record): the committer's first batch goes through the library's path, which starts the log."""
    rt = build_runtime(Settings.load(environ={}, data_dir=tmp_path))
    try:
        with sqlite3.connect(rt.settings.resolved_database_url.removeprefix("sqlite:///")) as db:
            db.execute("DELETE FROM keyledger_events WHERE topic LIKE 'domain.audit.log:%'")
            db.execute("DELETE FROM audit_index")
        assert stored_rows(rt) == []
        trail, close = build_committer_trail(rt.settings, rt.ledger.mapper.row_key)
        try:
            commit(trail, [encrypt_record(0), encrypt_record(1)])
            assert [version for version, _, _ in stored_rows(rt)] == [1, 2, 3]  # Started, then the two records
            commit(trail, [encrypt_record(2)])  # from then on in its own transactions
            assert verify_log(list(audit_records(rt.ledger))).ok
        finally:
            close()
    finally:
        rt.close()


@pytest.mark.parametrize("own", [True, False], ids=["own transactions", "the library's"])
def test_a_nul_in_an_indexed_field_does_not_fail_the_batch(runtime: Runtime, committer_trail: AuditTrail,  # noqa: F811
                                                            own: bool) -> None:
    """PostgreSQL's text columns refuse NUL: a record holding one (stored escaped in its JSON) is indexed with U+FFFD
    in its place, and the records committed with it are not failed with it."""
    if not own:
        committer_trail._appends = None
    odd = encrypt_record(1)
    odd["eventName"] = "Encrypt\x00x"
    odd["userIdentity"] = {**odd["userIdentity"], "arn": "arn:aws:iam::111122223333:user/a\x00b"}
    commit(committer_trail, [encrypt_record(0), odd, encrypt_record(2)])
    records = list(audit_records(runtime.ledger))
    assert verify_log(records).ok
    assert records[-2]["eventName"] == "Encrypt\x00x"  # the record itself keeps what it held
    from projections.audit_index import AuditFilter
    seqs = list(committer_trail._index.matching(AuditFilter(event_name="Encrypt\ufffdx")))  # type: ignore[union-attr]
    assert seqs == [records[-2]["seq"]]


def test_a_lost_connection_fails_one_batch_closed_and_the_next_takes_another(runtime: Runtime,  # noqa: F811
                                                                              committer_trail: AuditTrail) -> None:
    """The committer's driver connection is lost under it (PostgreSQL: its backend terminated; SQLite: closed): the
    batch in hand fails closed, nothing of it is stored, and the next batch goes on a new connection."""
    commit(committer_trail, [encrypt_record(0)])
    appends = committer_trail._appends
    assert appends is not None
    driver = appends._connection.dbapi_connection  # type: ignore[union-attr]
    if isinstance(driver, sqlite3.Connection):
        driver.close()
    else:
        with runtime.uow.transaction() as tx:
            tx.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": driver.info.backend_pid})
    before = stored_rows(runtime)
    outcomes: list = []
    committer_trail._commit([PendingRecord(encrypt_record(1), outcomes.append)])
    assert isinstance(outcomes[0], OperationalError)
    assert stored_rows(runtime) == before
    commit(committer_trail, [encrypt_record(2)])
    assert appends._connection.dbapi_connection is not driver  # type: ignore[union-attr]
    assert verify_log(list(audit_records(runtime.ledger))).ok
