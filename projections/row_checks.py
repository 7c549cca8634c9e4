"""How the service reads a read-model row it can trust: its tag proves the service wrote it (``checked``), and
its version that it is the newest, not an older copy put back (``at_head``, ``rows_at_head``; decision 190)."""
from __future__ import annotations

from typing import Any, Callable, Sequence

import sqlalchemy as sa

from domain.audit.seals import RowSeal
from domain.errors import TamperedStateError

HeadVersion = Callable[[Any, Any], "int | None"]  # (session, aggregate id) -> its newest stored event's version
HeadVersions = Callable[[Any, Sequence[Any]], "dict[Any, int]"]  # the same for several aggregates, in one query


def at_head(session: Any, query: Any, head_version: HeadVersion | None, aggregate_of: Callable[[Any], Any],
            what: Callable[[Any], str]) -> Any:
    """The one row ``query`` finds (or None), if it is as new as its aggregate's newest stored event. A row's tag
    proves the service wrote it, not that it is the newest: an older copy put back (a key re-enabled, a deleted
    grant or alias or access key brought back) still matches its tag, so it fails closed here (decision 190).
    A change commits its events and its rows together, so a row seen older than a head read after it is read once
    more: only a row still older is refused."""
    for _ in range(2):
        row = session.execute(query).first()
        if row is None or head_version is None:
            return row
        head = head_version(session, aggregate_of(row))
        if head is not None and isinstance(row.version, int) and row.version >= head:
            return row
    raise TamperedStateError(what(row))


def rows_at_head(session: Any, query: Any, head_versions: HeadVersions | None, aggregate_of: Callable[[Any], Any],
                 what: Callable[[Any], str]) -> list[Any]:
    """Every row ``query`` finds, if each is as new as its aggregate's newest stored event (``at_head`` for a list:
    one query for the heads of them all). A list an older copy was put back into fails closed; so does a row
    whose aggregate has no events. Read once more first, as ``at_head`` does, for a change that committed between."""
    for _ in range(2):
        rows = list(session.execute(query))
        if not rows or head_versions is None:
            return rows
        heads = head_versions(session, [aggregate_of(row) for row in rows])
        stale = [row for row in rows if not (isinstance(row.version, int)
                                             and row.version >= heads.get(aggregate_of(row), row.version + 1))]
        if not stale:
            return rows
    raise TamperedStateError(what(stale[0]))


def aggregate_uuid(text: str) -> Any:
    import uuid

    return uuid.UUID(text)


def checked(seal: RowSeal | None, table: sa.Table, row: Any, what: Callable[[], str]) -> Any:
    """``row`` if its tag proves the service wrote it as it is (rows are only checked with the row key)."""
    if seal is not None and not seal.matches(table.name, row._mapping):
        raise TamperedStateError(what())
    return row
