"""Audit queries through the audit index return exactly what reading every record returned (issue 13): a
Hypothesis property over random records (group-committed calls and key changes, several principals, event names,
error codes, keys and times), for random filters read in pages of random size, on SQLite and PostgreSQL; and a
database from before the index is indexed once at start."""
from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Iterator

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from api.query_api import record_matches
from application.audit.checkpoints import audit_records
from application.audit.records import cloudtrail_record
from projections.audit_index import AuditFilter
from tests.calls import api_call
from tests.scale_support import ROOT, SCOPE, Ledger, ledger_backend  # noqa: F401 (a fixture)

PRINCIPALS = (ROOT, f"arn:aws:iam::{SCOPE.account_id}:user/alice", "arn:aws:iam::444455556666:user/mallory")
EVENTS = ("Encrypt", "Decrypt", "DescribeKey")
ERRORS = (None, "AccessDeniedException", "NotFoundException")
RECORDS = st.lists(st.tuples(st.integers(0, 2), st.integers(0, 2), st.integers(0, 2), st.integers(0, 3),
                             st.sampled_from([0, 0, 1, 5])), min_size=1, max_size=12)
FILTERS = st.tuples(st.one_of(st.none(), st.integers(0, 3)), st.one_of(st.none(), st.integers(0, 2)),
                    st.one_of(st.none(), st.integers(0, 2)), st.one_of(st.none(), st.integers(0, 2)),
                    st.one_of(st.none(), st.integers(0, 60)), st.one_of(st.none(), st.integers(0, 60)))


@pytest.fixture
def ledger(ledger_backend: tuple[Path, str | None]) -> Iterator[Ledger]:  # noqa: F811
    data_dir, url = ledger_backend
    instance = Ledger(data_dir, url)
    instance.keys = [instance.create_key() for _ in range(3)]  # type: ignore[attr-defined]
    instance.start = instance.now()  # type: ignore[attr-defined]
    try:
        yield instance
    finally:
        instance.close()


def _write(ledger: Any, principal: int, event: int, error: int, key: int, wait: int) -> None:
    if key == 3:  # a key change: its record is written in the change's transaction
        ledger.do("keys.tag_resource", ledger.keys[event], {"n": str(error)}, principal=ROOT)
    else:
        call = api_call(EVENTS[event], PRINCIPALS[principal], SCOPE, at=ledger.now())
        call.add_resource(SCOPE.key_arn(ledger.keys[key]))
        if ERRORS[error]:
            call.error_code, call.error_message = ERRORS[error], "refused"
        ledger.rt.audit.record(cloudtrail_record(call))
    if wait:
        ledger.advance(wait)


def _paged(ledger: Any, where: AuditFilter, page: int) -> list[int]:
    index, out, marker = ledger.rt.audit_index, [], 0
    while True:
        seqs = index.seqs(where, marker, page + 1)
        truncated, seqs = len(seqs) > page, seqs[:page]
        out += [r["seq"] for r in index.records(ledger.rt.ledger, seqs) if record_matches(
            r, where.account_id, where.key_id, where.principal, where.event_name, where.error_code, where.low, where.high)]
        if not truncated:
            return out
        marker = seqs[-1]


@settings(max_examples=10, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(records=RECORDS, filters=st.lists(FILTERS, min_size=1, max_size=4), page=st.integers(1, 5))
def test_index_backed_pages_equal_reading_every_record(ledger: Any, records: list[tuple[int, ...]],
                                                      filters: list[tuple[Any, ...]], page: int) -> None:
    for record in records:
        _write(ledger, *record)
    for key, principal, event, error, low, high in filters:
        where = AuditFilter(
            SCOPE.account_id, ledger.keys[key] if key is not None and key < 3 else None,
            PRINCIPALS[principal] if principal is not None else None, EVENTS[event] if event is not None else None,
            ERRORS[error] if error is not None else None,
            ledger.start + timedelta(seconds=low, microseconds=500_000 if low and low % 2 else 0) if low is not None else None,
            ledger.start + timedelta(seconds=high) if high is not None else None)
        brute = [r["seq"] for r in audit_records(ledger.rt.ledger) if record_matches(
            r, where.account_id, where.key_id, where.principal, where.event_name, where.error_code, where.low, where.high)]
        assert _paged(ledger, where, page) == brute, where


def test_a_database_from_before_the_index_is_indexed_once_at_start(ledger: Any) -> None:
    for n in range(5):
        _write(ledger, n % 3, n % 3, n % 3, n % 3, 1)
    engine = ledger.rt.ledger.recorder.datastore.engine
    with engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM audit_index"))
    ledger.restart()
    where = AuditFilter(SCOPE.account_id)
    assert _paged(ledger, where, 3) == [r["seq"] for r in audit_records(ledger.rt.ledger)
                                        if record_matches(r, SCOPE.account_id, None, None, None, None, None, None)]
    assert isinstance(ledger.start, datetime)
