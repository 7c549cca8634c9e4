"""Replay reads only the events it replays, through the index of every event but the audit aggregates'
(projections/ledger_events.py, issue 13), and rebuilds exactly what the event library's topic filter rebuilt: for
random histories with audit records among the changes, on a real SQLite file, the two rebuilds have no difference.
The index is used (the query plan names it), and a page of records holds no replayed event to skip past."""
from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from projections.ledger_events import INDEX, _condition, ledger_events_page
from projections.replay import rebuild
from projections.replay_compare import compare
from projections.replay_tables import drop_tables
from tests.unit.test_ledger_property import OPERATIONS, _apply
from tests.unit.test_point_in_time import World


@settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(operations=st.lists(st.sampled_from(OPERATIONS + ("record", "record")), min_size=1, max_size=10))
def test_replay_by_index_rebuilds_what_replay_by_topic_rebuilt(operations: list[str]) -> None:
    with tempfile.TemporaryDirectory() as directory, World(Path(directory)) as w:
        keys = [w.create_key(), w.create_key()]
        for n, operation in enumerate(operations):
            try:
                _apply(w, keys[n % 2], operation, n)
            except Exception:  # a refused change is still a history
                pass
        by_topic = rebuild(w.rt.ledger, w.engine, "topic_", reader="topic")
        by_index = rebuild(w.rt.ledger, w.engine, "index_", reader="index")
        assert by_index.events == by_topic.events
        assert compare(w.engine, "topic_", "index_") == []
        assert compare(w.engine, "", "index_") == []  # and both are the live projections
        drop_tables(w.engine, "topic_")
        drop_tables(w.engine, "index_")


def test_the_index_is_used_and_holds_no_audit_record(tmp_path: Path) -> None:
    with World(tmp_path) as w:
        w.create_key()
        with w.engine.connect() as conn:
            plan = conn.exec_driver_sql(
                f"EXPLAIN QUERY PLAN SELECT id FROM keyledger_events WHERE {_condition('sqlite')} AND id >= ? "
                "ORDER BY id LIMIT 10", (1,)).all()
            audit = conn.exec_driver_sql("SELECT count(*) FROM keyledger_events WHERE topic LIKE '%AuditLog%'").scalar()
        assert INDEX in str(plan), plan
        page = ledger_events_page(w.rt.ledger, 1, 1000)
        assert audit and page and not any("Audit" in n.topic for n in page)
        assert [n.id for n in page] == sorted(n.id for n in page)


def test_no_query_of_a_replay_reads_the_audit_log_by_aggregate(tmp_path: Path) -> None:
    """Each query a replay sends to the event table walks positions (or the partial index), never the index on
    (aggregate, version): through it, finding the record after a page read every audit record of the log, on
    every page (docs/performance.md, "Session 8")."""
    import sqlalchemy as sa

    with World(tmp_path) as w:
        keys = [w.create_key(), w.create_key()]
        for n in range(4):
            _apply(w, keys[n % 2], "describe", n)
        sent: list[tuple[str, object]] = []

        def capture(conn, cursor, statement, parameters, context, executemany):  # noqa: ANN001
            if statement.lstrip().upper().startswith("SELECT") and "keyledger_events" in statement:
                sent.append((statement, parameters))

        sa.event.listen(w.engine, "before_cursor_execute", capture)
        try:
            rebuild(w.rt.ledger, w.engine, "plan_")
        finally:
            sa.event.remove(w.engine, "before_cursor_execute", capture)
        drop_tables(w.engine, "plan_")
        assert any("IN (" in s for s, _ in sent)  # the seqs by position were asked
        with w.engine.connect() as conn:
            for statement, parameters in sent:
                plan = conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters).all()
                assert "keyledger_events_aggregate_idx" not in str(plan), (statement, plan)
