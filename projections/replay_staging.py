"""Where a replay's rows wait before they reach the target (decision 262): private SQLite databases with the
projection tables, one per process of a replay (a file when the target is SQLite, so that SQLite copies it
itself), and the copy into the target's ``<prefix>...`` tables at the end."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterator, Sequence

import sqlalchemy as sa
from sqlalchemy.pool import StaticPool

from projections import principal_tables, tables
from projections.replay_tables import TABLES, prefixed_tables
from projections.row_inserts import insert_tuples, plain

if TYPE_CHECKING:
    from projections.replay import ReplayStats

COPY_PAGE = 1000  # staged rows read back and inserted per driver call


def staging_database(path: str | None = None) -> sa.Engine:
    """A private SQLite database with the projection tables: in memory, or a file (a SQLite target attaches it;
    each process of a replay in several writes its own). Nothing in it needs to survive a crash: no journal, no
    sync."""
    staging = sa.create_engine(f"sqlite:///{path}" if path else "sqlite://", poolclass=StaticPool)
    if path:
        sa.event.listen(staging, "connect", lambda dbapi, _record: (dbapi.execute("PRAGMA journal_mode=OFF"),
                                                                    dbapi.execute("PRAGMA synchronous=OFF")))
    tables.metadata.create_all(staging)
    principal_tables.metadata.create_all(staging)
    return staging


def _staged_rows(staging: sa.Engine, name: str) -> Iterator[list[tuple[Any, ...]]]:
    """A staging table's rows as tuples in its columns' order, a page at a time."""
    quote = staging.dialect.identifier_preparer.quote
    with staging.connect() as source:
        cursor = source.connection.dbapi_connection.execute(
            f"SELECT {', '.join(quote(c.name) for c in TABLES[name].c)} FROM {quote(name)}")
        while chunk := cursor.fetchmany(COPY_PAGE):
            yield chunk


def copy_staged(stagings: Sequence[sa.Engine], engine: sa.Engine, prefix: str, stats: ReplayStats) -> None:
    """Copies the staging tables into the target. Every column is a string, an integer or a float
    (projections/tables.py), which both drivers take as they are, so SQLAlchemy's per-row parameter processing
    adds nothing (decision 246). A staging file copied into a SQLite target is attached to it and copied by one
    ``INSERT ... SELECT`` per table: SQLite moves the same values itself, without a Python tuple per row; a
    PostgreSQL target takes psycopg's ``COPY`` (decision 262); anything else a page of plain tuples per driver
    ``executemany``."""
    md, targets = prefixed_tables(prefix)
    md.drop_all(engine)
    md.create_all(engine)
    counts = dict.fromkeys(targets, 0)
    with engine.connect() as target:
        for staging in stagings:
            attached = engine.dialect.name == "sqlite" and staging.url.database not in (None, "", ":memory:")
            if attached:  # ATTACH is refused inside a transaction: before the first INSERT begins one
                target.exec_driver_sql("ATTACH DATABASE ? AS replay_staging", (staging.url.database,))
                target.commit()  # SQLAlchemy's autobegun transaction; the driver began none for ATTACH
            try:
                with target.begin():
                    for name, table in targets.items():
                        columns = [c.name for c in TABLES[name].c]
                        if attached and plain(table):
                            quote = target.dialect.identifier_preparer.quote
                            listed = ", ".join(quote(c) for c in columns)
                            counts[name] += target.exec_driver_sql(
                                f"INSERT INTO {quote(table.name)} ({listed}) "
                                f"SELECT {listed} FROM replay_staging.{quote(name)}").rowcount
                            continue
                        if plain(table) and _copied_in(target, table.name, columns, staging, name, counts):
                            continue
                        for chunk in _staged_rows(staging, name):
                            if plain(table):
                                insert_tuples(target, table.name, columns, chunk)
                            else:  # a column the driver may not take as SQLite returned it: SQLAlchemy converts it
                                target.execute(table.insert(), [dict(zip(columns, row)) for row in chunk])
                            counts[name] += len(chunk)
            finally:
                if attached:
                    target.exec_driver_sql("DETACH DATABASE replay_staging")
                    target.commit()
    stats.key_state_rows, stats.alias_rows = counts["key_state"], counts["key_aliases"]
    stats.index_rows = counts["key_event_index"]
    stats.principal_rows = counts["principals"]


def _copied_in(target: sa.Connection, table_name: str, columns: list[str], staging: sa.Engine, name: str,
               counts: dict[str, int]) -> bool:
    """A staging table into a PostgreSQL target through psycopg's ``COPY ... FROM STDIN`` (decision 262): the same
    values as the driver's INSERT takes them (strings, integers, floats, NULL; every projection column is one of
    these), without a statement round per row. False for any other target or driver: the caller inserts."""
    dbapi = target.connection.dbapi_connection
    if target.dialect.name != "postgresql" or not hasattr(dbapi, "cursor"):
        return False
    quote = target.dialect.identifier_preparer.quote
    with dbapi.cursor() as cursor:
        if not hasattr(cursor, "copy"):  # psycopg 2 and others
            return False
        with cursor.copy(f"COPY {quote(table_name)} ({', '.join(quote(c) for c in columns)}) FROM STDIN") as copy:
            for chunk in _staged_rows(staging, name):
                for row in chunk:
                    copy.write_row(row)
                counts[name] += len(chunk)
    return True
