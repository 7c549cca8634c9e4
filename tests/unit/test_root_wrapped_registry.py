"""Every binary column of keyledger's own tables is either in the root-wrapped registry (so root-key rotation
re-wraps it and retirement waits for it) or declared free of root-wrapped values. A new table that stores a
wrapped secret and is not registered fails here, before a rotation could leave it under a retired version."""
from __future__ import annotations

import importlib
import pkgutil

import sqlalchemy as sa

import projections
from infrastructure import tables
from infrastructure.root_wrapped import NOT_ROOT_WRAPPED, REGISTRY
from projections import principal_tables


def _binary_columns() -> set[tuple[str, str]]:
    modules = [tables, principal_tables] + [importlib.import_module(f"projections.{m.name}")
                                            for m in pkgutil.iter_modules(projections.__path__)]
    found = set()
    for module in modules:
        metadata = getattr(module, "metadata", None)
        if isinstance(metadata, sa.MetaData):
            for table in metadata.tables.values():
                found |= {(table.name, c.name) for c in table.c if isinstance(c.type, sa.LargeBinary)}
    return found


def test_every_binary_column_is_registered_or_declared_free():
    registered = {(entry.table.name, entry.column) for entry in REGISTRY}
    assert _binary_columns() - registered - NOT_ROOT_WRAPPED == set()
    assert {("backing_keys", "wrapped"), ("access_keys", "wrapped_secret"), ("service_secrets", "wrapped"),
            ("import_keys", "wrapped")} <= registered


def test_registered_columns_name_their_whole_aad():
    for entry in REGISTRY:
        assert entry.column in entry.table.c and entry.table.primary_key.columns
