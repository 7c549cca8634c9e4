"""Replay in several processes (projections/replay.py, decisions 261-262) rebuilds exactly what one process
rebuilds: for random histories of keys, aliases, grants, principals and audit records, on a real SQLite file and on
PostgreSQL, the tables rebuilt by one, two and three processes have no difference from each other or from the
live projections, and the counts agree. A damaged row in any process's share fails the replay with the error the
one process raises. The tag function replay uses (``event_tagger``) gives ``event_tag``'s tag."""
from __future__ import annotations

import os
import tempfile
import uuid
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from domain.audit.seals import event_tag, event_tagger
from projections.ledger_events import ledger_event_rows, stored_uuid
from projections.replay import _Share, rebuild
from projections.replay_compare import compare
from projections.replay_reading import _by_index
from projections.replay_tables import PRIMARY_KEYS, TABLES, drop_tables
from tests.scale_support import Ledger, ledger, ledger_backend  # noqa: F401  (fixtures)
from tests.unit.test_ledger_property import OPERATIONS, _apply

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="replay forks its processes")

STEPS = OPERATIONS + ("principal", "policy", "record")


def _operator() -> Any:
    from application.calls import Operator

    return Operator(user="test", host="test")


def _history(instance: Ledger, steps: list[str]) -> None:
    keys = [instance.create_key() for _ in range(3)]
    for n, step in enumerate(steps):
        try:
            if step == "principal":
                instance.rt.services.principals.create_principal(f"arn:aws:iam::111122223333:user/u{n}", _operator())
            elif step == "policy":
                instance.rt.services.principals.put_policy(
                    "arn:aws:iam::111122223333:user/u0", f"p{n}",
                    '{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "kms:Encrypt", '
                    '"Resource": "*"}]}', _operator())
            else:
                _apply(instance, keys[n % 3], step, n)  # type: ignore[arg-type]  # Ledger drives services as World does
        except Exception:  # a refused change is still a history
            pass


def _strict_differences(engine: sa.Engine, prefix: str) -> list[str]:
    """Rows of ``<prefix>`` tables not equal column for column (floats bit for bit, NULL as a value) to the live
    ones, or missing: ``compare`` allows floats a microsecond apart; a copy (ATTACH, COPY) must change nothing."""
    out = []
    with engine.connect() as conn:
        for name, pk in PRIMARY_KEYS.items():
            columns = [c.name for c in TABLES[name].c]
            same = " AND ".join(f"a.{c} IS NOT DISTINCT FROM b.{c}" if engine.dialect.name == "postgresql"
                                else f"a.{c} IS b.{c}" for c in columns)
            for a, b in ((name, prefix + name), (prefix + name, name)):
                missing = conn.exec_driver_sql(
                    f"SELECT count(*) FROM {a} a WHERE NOT EXISTS (SELECT 1 FROM {b} b WHERE {same})").scalar()
                if missing:
                    out.append(f"{missing} rows of {a} have no equal row in {b}")
    return out


def _same_rebuilds(instance: Ledger) -> None:
    engine = instance.rt.ledger.recorder.datastore.engine
    counts = {}
    for workers in (1, 2, 3):
        stats = rebuild(instance.rt.ledger, engine, f"w{workers}_", workers=workers)
        counts[workers] = (stats.events, stats.keys, stats.aliases, stats.principals, stats.key_state_rows,
                           stats.alias_rows, stats.index_rows, stats.principal_rows, stats.decoded_fast)
        assert compare(engine, "", f"w{workers}_") == []  # the live projections, row for row
        assert _strict_differences(engine, f"w{workers}_") == []  # and value for value
    assert compare(engine, "w1_", "w2_") == [] and compare(engine, "w1_", "w3_") == []
    assert counts[1] == counts[2] == counts[3]
    for workers in (1, 2, 3):
        drop_tables(engine, f"w{workers}_")


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=st.lists(st.sampled_from(STEPS), min_size=1, max_size=14))
def test_processes_rebuild_what_one_process_rebuilds(steps: list[str]) -> None:
    with tempfile.TemporaryDirectory() as directory:
        instance = Ledger(Path(directory) / "data", None)
        try:
            _history(instance, steps)
            _same_rebuilds(instance)
        finally:
            instance.close()


def test_processes_rebuild_what_one_process_rebuilds_on_both_backends(ledger: Ledger) -> None:  # noqa: F811
    _history(ledger, ["alias", "grant", "principal", "policy", "describe", "record", "tag", "grant", "disable",
                      "alias", "schedule", "enable", "describe", "record"] * 3)
    _same_rebuilds(ledger)


def _owned_by(instance: Ledger, worker: int, workers: int) -> uuid.UUID:
    """An aggregate that process ``worker`` of ``workers`` replays (as _Share gives them out)."""
    share, start = _Share(worker, workers), 1
    while page := _by_index(instance.rt.ledger, start):
        mine = share.mine(page)
        if mine:
            return stored_uuid(mine[-1][1])
        start = page[-1][0] + 1
    raise AssertionError("no aggregate in that share")


@pytest.mark.parametrize("worker", [0, 1])
def test_a_damaged_row_in_any_share_fails_as_in_one_process(ledger: Ledger, worker: int) -> None:  # noqa: F811
    _history(ledger, ["describe", "alias", "grant", "describe", "tag"] * 2)
    aggregate = _owned_by(ledger, worker, 2)
    events = ledger.rt.ledger.recorder.events_record_cls.__table__
    engine = ledger.rt.ledger.recorder.datastore.engine
    row = [r for r in ledger_event_rows(ledger.rt.ledger, 1, 10_000) if stored_uuid(r[1]) == aggregate][-1]
    state = bytearray(row[4])
    state[-10] ^= 1  # a bit of its tag
    with engine.begin() as conn:
        conn.execute(events.update().where(events.c.id == row[0]).values(state=bytes(state)))
    outcomes = []
    for workers in (1, 2):
        with pytest.raises(Exception) as raised:
            rebuild(ledger.rt.ledger, engine, f"bad{workers}_", workers=workers)
        outcomes.append((type(raised.value), str(raised.value)))
        drop_tables(engine, f"bad{workers}_")
    assert outcomes[0] == outcomes[1]
    assert "LedgerTagError" in outcomes[0][0].__name__


def test_the_staging_files_are_removed(ledger: Ledger, tmp_path: Path,  # noqa: F811
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    _history(ledger, ["describe", "alias"])
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # this test's own temporary directory
    engine = ledger.rt.ledger.recorder.datastore.engine
    rebuild(ledger.rt.ledger, engine, "files_", workers=2)
    drop_tables(engine, "files_")
    assert not list(tmp_path.glob("keyledger-replay-*"))
    with engine.connect() as conn:  # the target connection keeps nothing attached
        if engine.dialect.name == "sqlite":
            assert "replay_staging" not in [r[1] for r in conn.exec_driver_sql("PRAGMA database_list")]
        else:
            assert conn.execute(sa.text("SELECT 1")).scalar() == 1


@settings(max_examples=50, deadline=None)
@given(key=st.binary(min_size=32, max_size=32), aggregate=st.uuids(), topic=st.text(max_size=40),
       versions=st.lists(st.integers(min_value=0, max_value=2**63), min_size=1, max_size=4),
       payload=st.binary(max_size=300))
def test_event_tagger_gives_event_tags_tag(key: bytes, aggregate: uuid.UUID, topic: str, versions: list[int],
                                          payload: bytes) -> None:
    tag = event_tagger(key, aggregate, topic)
    for version in versions:  # one tagger, several events: nothing of one event's carries into the next
        assert tag(version, payload) == event_tag(key, aggregate, version, topic, payload)


def test_each_process_finds_the_seqs_one_process_finds(ledger: Ledger) -> None:  # noqa: F811
    """A process asks only for its own events' records, from the runs of every event of the page: the same seqs as
    the one process's, for any subset of the page (each process's share is one)."""
    from projections.replay_reading import _record_seqs

    _history(ledger, ["describe", "alias", "grant", "record", "tag", "principal", "describe"] * 2)
    positions = [row[0] for row in _by_index(ledger.rt.ledger, 1)]
    every = _record_seqs(ledger.rt.ledger, positions)
    assert every  # the records were found: the subsets below are not all empty answers

    @settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(wanted=st.lists(st.sampled_from(positions), unique=True))
    def check(wanted: list[int]) -> None:
        assert _record_seqs(ledger.rt.ledger, positions, wanted) == {p: every[p] for p in wanted if p in every}

    check()


def test_after_an_archive_every_process_finds_the_archived_records_seqs(ledger: Ledger,  # noqa: F811
                                                                       tmp_path: Path) -> None:
    """Records archived since their changes (decision 214): a replay finds their seqs in audit_archived_claims,
    in one process and in two, and rebuilds the live tables exactly."""
    from datetime import datetime, timezone

    from tests.scale_support import grow_history

    keys = [ledger.create_key() for _ in range(3)]
    for n, key_id in enumerate(keys * 2):
        grow_history(ledger, key_id, 20, f"old {n}")
        ledger.do("aliases.create_alias", f"alias/a{n}", key_id)
    ledger.advance(2 * 86_400)
    services = ledger.rt.services
    archived = services.archive.archive(
        _operator(), datetime.fromtimestamp(ledger.now().timestamp() - 86_400, tz=timezone.utc), tmp_path / "seg")
    assert archived is not None
    engine = ledger.rt.ledger.recorder.datastore.engine
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM audit_archived_claims").scalar()
    _same_rebuilds(ledger)
    with engine.connect() as conn:  # the rebuilt rows name the archived records, as the live ones do
        assert conn.exec_driver_sql("SELECT count(*) FROM key_event_index WHERE audit_seq IS NOT NULL").scalar()
