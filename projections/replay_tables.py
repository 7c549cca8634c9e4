"""The projection tables a replay writes and compares: every projection table by name with its primary key,
and copies of them under a prefix (``replay_key_state`` ...) beside the live ones."""
from __future__ import annotations

import sqlalchemy as sa

from projections import principal_tables, tables

DEFAULT_PREFIX = "replay_"
PRIMARY_KEYS = {"key_state": ("storage_id",), "key_aliases": ("account_id", "region", "alias_name"),
                "key_event_index": ("key_id", "version"), "alias_event_index": ("alias_id", "version"),
                "key_grants": ("grant_id",),
                "principals": ("principal_id",), "principal_event_index": ("principal_id", "version"),
                "custom_key_stores": ("store_id",)}
# Every projection table by name: the key projections' and the principals read model's.
TABLES = {**tables.metadata.tables, **principal_tables.metadata.tables}


def prefixed_tables(prefix: str) -> tuple[sa.MetaData, dict[str, sa.Table]]:
    """Copies of the projection tables named ``<prefix><name>``. Index names are global in a SQLite
    database and a PostgreSQL schema, so the named indexes get the prefix too."""
    md = sa.MetaData()
    out = {}
    for name in PRIMARY_KEYS:
        table = TABLES[name].to_metadata(md, name=prefix + name)
        for index in table.indexes:
            if index.name and table.name not in str(index.name):
                index.name = prefix + index.name
        out[name] = table
    return md, out


def drop_tables(engine: sa.Engine, prefix: str) -> None:
    prefixed_tables(prefix)[0].drop_all(engine)
