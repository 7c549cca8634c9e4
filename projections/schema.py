"""Keeping the read-model tables in step with the code: they are derived data, so a table written by an
older version (a column missing) is rebuilt from the event log at start instead of migrated by hand."""
from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from projections import tables
from projections.ledger_events import ensure_index
from projections.replay import rebuild
from projections.replay_tables import PRIMARY_KEYS, TABLES


def stale_tables(engine: sa.Engine) -> list[str]:
    """Projection tables written by an older version: a column missing, or (in a database that has projections
    already) the whole table, which a release added and which must be filled from the events, not left empty."""
    inspector = sa.inspect(engine)
    existing = inspector.has_table("key_state")
    stale = []
    for name in PRIMARY_KEYS:
        if not inspector.has_table(name):
            if existing:
                stale.append(name)
            continue
        present = {column["name"] for column in inspector.get_columns(name)}
        if set(TABLES[name].columns.keys()) - present:
            stale.append(name)
    return stale


def create_missing(engine: sa.Engine) -> None:
    """The projection tables that do not exist yet (empty); out-of-date ones are left for ensure_current."""
    inspector = sa.inspect(engine)
    existing = inspector.has_table("key_state")
    for name, table in tables.metadata.tables.items():
        if not inspector.has_table(name) and not (existing and name in PRIMARY_KEYS):
            table.create(engine)


def ensure_current(ledger: Any, engine: sa.Engine) -> list[str]:
    """Creates missing projection tables; rebuilds them all from the events if any is out of date.
    Returns the names that were out of date."""
    ensure_index(engine, ledger.recorder.events_record_cls.__table__.name)
    stale = stale_tables(engine)
    if stale:
        rebuild(ledger, engine, target_prefix="")
    tables.metadata.create_all(engine)
    return stale
