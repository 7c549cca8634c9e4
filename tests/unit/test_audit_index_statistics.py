"""The audit index keeps PostgreSQL's planner statistics fresh (projections/audit_index.py refresh_statistics):
with stale statistics a filtered page read every record of the key and sorted them (measured: 1.6 pages/s at 1M
records), so the index analyzes itself once a tenth of it is new. SQLite plans without statistics."""
from __future__ import annotations

import time

import sqlalchemy as sa

from projections.tables import audit_index
from tests.scale_support import Ledger, ledger, ledger_backend  # noqa: F401 (fixtures)

ROWS = 20_000


def test_statistics_are_refreshed_once_a_tenth_of_the_index_is_new(ledger: Ledger) -> None:  # noqa: F811
    index = ledger.rt.audit_index
    assert index is not None
    postgres = ledger.database_url is not None
    index.refresh_statistics()  # whatever the start left
    rows = [{"seq": 10_000_000 + i, "slot": 0, "at": 1_700_000_000 + i, "account_id": "111122223333",
             "caller_account": "111122223333", "principal": None, "event_name": "Encrypt", "error_code": None,
             "key_id": f"k{i % 10}"} for i in range(ROWS)]
    with ledger.rt.uow.transaction() as tx:
        tx.execute(audit_index.insert(), rows)
    if not postgres:
        assert index.refresh_statistics() is False
        return
    # PostgreSQL publishes a transaction's row counts to pg_stat_user_tables shortly after it ends.
    refreshed = False
    for _ in range(100):
        if index.refresh_statistics():
            refreshed = True
            break
        time.sleep(0.1)
    assert refreshed, "20,000 new rows in a small index did not trigger ANALYZE"
    assert index.refresh_statistics() is False, "analyzed again with nothing new"
    with ledger.rt.uow.read() as session:
        analyzed = session.execute(sa.text(
            "SELECT last_analyze FROM pg_stat_user_tables WHERE relname = 'audit_index' "
            "AND schemaname = current_schema()")).scalar()
    assert analyzed is not None
