"""Many rows into one table in one driver ``executemany``, with plain tuples.

The event indexes get a row per event, and a replay writes every event's row again (projections/replay.py): through
SQLAlchemy's ``insert()`` each row's parameters are processed one by one (about 5 µs a row, more than the insert
itself). Every column of the projection tables is a string, an integer or a float (projections/tables.py), which
SQLite's and PostgreSQL's drivers take as they are, so the driver can be handed the tuples directly: the same
statement, the same values. A table with a column of any other type (a boolean, a date, JSON) goes through
SQLAlchemy as before (``plain``)."""
from __future__ import annotations

from typing import Any, Iterable, Mapping, Sequence

import sqlalchemy as sa
from sqlalchemy.orm import Session

_PLAIN_TYPES = (sa.String, sa.Integer, sa.Float)  # Text and BigInteger included


def plain(table: sa.Table) -> bool:
    """Whether every column of ``table`` is one the drivers take as it is (no SQLAlchemy conversion on the way)."""
    return all(isinstance(c.type, _PLAIN_TYPES) and not getattr(c.type, "asdecimal", False) for c in table.c)


def insert_statement(connection: sa.Connection, table_name: str, columns: Sequence[str]) -> str:
    quote = connection.dialect.identifier_preparer.quote
    marker = "?" if connection.dialect.paramstyle == "qmark" else "%s"
    return (f"INSERT INTO {quote(table_name)} ({', '.join(quote(c) for c in columns)}) "
            f"VALUES ({', '.join([marker] * len(columns))})")


def insert_tuples(connection: sa.Connection, table_name: str, columns: Sequence[str],
                  rows: Sequence[Sequence[Any]]) -> None:
    if rows:
        connection.exec_driver_sql(insert_statement(connection, table_name, columns), list(rows))


def insert_rows(tx: Any, table: sa.Table, rows: Iterable[Mapping[str, Any]]) -> None:
    """``rows`` (dicts with the same keys, as ``tx.execute(table.insert(), rows)`` takes them) into ``table``, in
    the session's or connection's transaction."""
    rows = list(rows)
    if not rows:
        return
    columns = list(rows[0])
    unknown = [c for c in columns if c not in table.c]
    if unknown:
        raise ValueError(f"{table.name} has no column {unknown[0]!r}")
    if not plain(table):
        tx.execute(table.insert(), rows)
        return
    connection = tx.connection() if isinstance(tx, Session) else tx
    insert_tuples(connection, table.name, columns, [tuple(row[c] for c in columns) for row in rows])


def insert_tuple_rows(tx: Any, table: sa.Table, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """``insert_rows`` for rows already built as tuples in ``columns``' order (no dict per row on the way)."""
    if not rows:
        return
    unknown = [c for c in columns if c not in table.c]
    if unknown:
        raise ValueError(f"{table.name} has no column {unknown[0]!r}")
    if not plain(table):
        tx.execute(table.insert(), [dict(zip(columns, row)) for row in rows])
        return
    insert_tuples(tx.connection() if isinstance(tx, Session) else tx, table.name, columns, rows)
