"""Tables of the principals read model, written in the same transaction as the Principal events they reflect.

Their own MetaData: the key projections' replay (projections/replay.py) copies and compares the tables of
projections/tables.py by name, and these are not part of it.
"""
from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

# One row per principal that exists now (a deleted principal's row is removed).
principals = sa.Table(
    "principals", metadata,
    sa.Column("principal_id", sa.String(36), primary_key=True),
    sa.Column("arn", sa.String(2048), nullable=False),
    sa.Column("account_id", sa.String(12), nullable=False, index=True),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("name", sa.String(64), nullable=False),
    sa.Column("path", sa.String(512), nullable=False),
    sa.Column("unique_id", sa.String(32), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("policies_json", sa.Text, nullable=False),  # {policy name: document}: identity policies are not secret
    sa.Column("access_keys_json", sa.Text, nullable=False),  # {access key id: status}; the secrets are elsewhere
    sa.Column("row_tag", sa.String(64)),  # domain/audit/seals.py: RowSeal
)

# Every Principal event: which version of a principal was current at a moment, and who existed then.
principal_event_index = sa.Table(
    "principal_event_index", metadata,
    sa.Column("principal_id", sa.String(36), primary_key=True),
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("account_id", sa.String(12), nullable=False),
    sa.Column("arn", sa.String(2048), nullable=False),
    sa.Column("event_type", sa.String(64), nullable=False),
    sa.Column("timestamp", sa.Float, nullable=False),
    sa.Index("principal_event_index_account_idx", "account_id", "timestamp"),
)
