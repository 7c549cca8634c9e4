"""`projections/row_checks.py`: a row is read, then its aggregate's newest event version, in separate statements.
Changes that commit between those reads (a change commits its events and its row together) must never make a
current row look like an older copy put back, however many there are and wherever they fall; an older copy put back
must always be refused. On a real SQLite file; the concurrent changes commit on their own connection."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator, Sequence

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.orm import Session

from domain.errors import TamperedStateError
from projections.row_checks import at_head, rows_at_head

meta = sa.MetaData()
rows = sa.Table("rows", meta, sa.Column("aggregate", sa.String, primary_key=True), sa.Column("version", sa.Integer))
events = sa.Table("events", meta, sa.Column("aggregate", sa.String, primary_key=True),
                  sa.Column("version", sa.Integer, primary_key=True))
AGGREGATES = ["a", "b", "c"]


class Store:
    def __init__(self, path: Path) -> None:
        self.engine = sa.create_engine(f"sqlite:///{path}")
        meta.create_all(self.engine)
        for aggregate in AGGREGATES:
            self.change(aggregate)

    def change(self, aggregate: str) -> None:
        """What the service's changes do: the next event and the row that shows it, in one transaction."""
        with self.engine.begin() as conn:
            version = (conn.execute(sa.select(sa.func.max(events.c.version)).where(events.c.aggregate == aggregate))
                       .scalar() or 0) + 1
            conn.execute(events.insert().values(aggregate=aggregate, version=version))
            conn.execute(rows.delete().where(rows.c.aggregate == aggregate))
            conn.execute(rows.insert().values(aggregate=aggregate, version=version))

    def put_back(self, aggregate: str) -> None:
        """A database administrator puts back the row as it was one change ago."""
        with self.engine.begin() as conn:
            conn.execute(rows.update().where(rows.c.aggregate == aggregate).values(version=rows.c.version - 1))


@pytest.fixture
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    s = Store(tmp_path_factory.mktemp("row-checks") / "store.db")
    yield s
    s.engine.dispose()


def heads(store: Store, around: list[tuple[list[str], list[str]]]) -> Any:
    """The heads of several aggregates, with the changes ``around`` names committed just before and just after."""
    def read(session: Session, aggregates: Sequence[str]) -> dict[str, int]:
        before, after = around.pop(0) if around else ([], [])
        for aggregate in before:
            store.change(aggregate)
        found = dict(session.execute(sa.select(events.c.aggregate, sa.func.max(events.c.version))
                                     .where(events.c.aggregate.in_(list(aggregates))).group_by(events.c.aggregate)).all())
        for aggregate in after:
            store.change(aggregate)
        return found
    return read


changes = st.lists(st.sampled_from(AGGREGATES), max_size=3)
interleavings = st.lists(st.tuples(changes, changes), max_size=4)
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@SETTINGS
@given(around=interleavings)
def test_changes_committed_between_the_reads_never_refuse_a_current_list(store: Store, around: Any) -> None:
    with Session(store.engine) as session:
        found = rows_at_head(session, sa.select(rows).order_by(rows.c.aggregate), heads(store, list(around)),
                             lambda r: r.aggregate, lambda r: f"row {r.aggregate}")
    assert [r.aggregate for r in found] == AGGREGATES


@SETTINGS
@given(around=interleavings, aggregate=st.sampled_from(AGGREGATES))
def test_changes_committed_between_the_reads_never_refuse_a_current_row(store: Store, around: Any,
                                                                         aggregate: str) -> None:
    read = heads(store, list(around))
    with Session(store.engine) as session:
        found = at_head(session, sa.select(rows).where(rows.c.aggregate == aggregate),
                        lambda s, a: read(s, [a]).get(a), lambda r: r.aggregate, lambda r: f"row {r.aggregate}")
    assert found.aggregate == aggregate


@SETTINGS
@given(around=interleavings, tampered=st.sampled_from(AGGREGATES))
def test_an_older_copy_put_back_is_refused_whatever_else_commits(store: Store, around: Any, tampered: str) -> None:
    """Changes to other aggregates commit during the reads; the tampered one is not changed again (a change would
    replace the copy with a current row, and then there is nothing to refuse)."""
    store.put_back(tampered)
    others = [([a for a in before if a != tampered], [a for a in after if a != tampered]) for before, after in around]
    with Session(store.engine) as session:
        with pytest.raises(TamperedStateError, match=f"row {tampered}"):
            rows_at_head(session, sa.select(rows).order_by(rows.c.aggregate), heads(store, list(others)),
                         lambda r: r.aggregate, lambda r: f"row {r.aggregate}")
        with pytest.raises(TamperedStateError, match=f"row {tampered}"):
            read = heads(store, list(others))
            at_head(session, sa.select(rows).where(rows.c.aggregate == tampered), lambda s, a: read(s, [a]).get(a),
                    lambda r: r.aggregate, lambda r: f"row {r.aggregate}")
    store.change(tampered)  # current again for the next example


def test_a_row_whose_aggregate_has_no_events_is_refused(store: Store) -> None:
    with store.engine.begin() as conn:
        conn.execute(rows.insert().values(aggregate="forged", version=1))
    with Session(store.engine) as session:
        with pytest.raises(TamperedStateError, match="row forged"):
            rows_at_head(session, sa.select(rows), heads(store, []), lambda r: r.aggregate, lambda r: f"row {r.aggregate}")
