"""How the service reads a read-model row it can trust: its tag proves the service wrote it (``checked``), and
its version that it is the newest, not an older copy put back (``at_head``, ``rows_at_head``; decision 190)."""
from __future__ import annotations

from typing import Any, Callable, Sequence

import sqlalchemy as sa

from domain.audit.seals import RowSeal
from domain.errors import TamperedStateError

HeadVersion = Callable[[Any, Any], "int | None"]  # (session, aggregate id) -> its newest stored event's version
HeadVersions = Callable[[Any, Sequence[Any]], "dict[Any, int]"]  # the same for several aggregates, in one query

_READS = 3  # of the rows; a fourth would be needed only if each read found rows of aggregates not seen before


def at_head(session: Any, query: Any, head_version: HeadVersion | None, aggregate_of: Callable[[Any], Any],
            what: Callable[[Any], str]) -> Any:
    """The one row ``query`` finds (or None), if it is as new as its aggregate's newest stored event. A row's tag
    proves the service wrote it, not that it is the newest: an older copy put back (a key re-enabled, a deleted
    grant or alias or access key brought back) still matches its tag, so it fails closed here (decision 190)."""
    if head_version is None:
        return session.execute(query).first()

    def read() -> list[Any]:
        row = session.execute(query).first()
        return [] if row is None else [row]

    def heads_of(aggregates: Sequence[Any]) -> dict[Any, int]:
        (aggregate,) = aggregates
        head = head_version(session, aggregate)
        return {} if head is None else {aggregate: head}

    rows = _as_new_as_their_heads(read, heads_of, aggregate_of, what)
    return rows[0] if rows else None


def rows_at_head(session: Any, query: Any, head_versions: HeadVersions | None, aggregate_of: Callable[[Any], Any],
                 what: Callable[[Any], str]) -> list[Any]:
    """Every row ``query`` finds, if each is as new as its aggregate's newest stored event (``at_head`` for a list:
    one query for the heads of them all). A list an older copy was put back into fails closed; so does a row
    whose aggregate has no events."""
    if head_versions is None:
        return list(session.execute(query))
    return _as_new_as_their_heads(lambda: list(session.execute(query)),
                                  lambda aggregates: head_versions(session, aggregates), aggregate_of, what)


def _as_new_as_their_heads(read: Callable[[], list[Any]], heads_of: Callable[[Sequence[Any]], dict[Any, int]],
                           aggregate_of: Callable[[Any], Any], what: Callable[[Any], str]) -> list[Any]:
    """The rows ``read`` finds, each compared with its aggregate's newest event version.

    The reads are separate statements, not one snapshot, so the order carries the proof. A change commits its
    events and its rows together, and versions only grow: a row the service wrote is at least as new as any head
    read *before* the row was. A head read after the row may be newer only because a change committed in between,
    so a row older than such a head is read once more and compared with that same head, which now precedes it.
    Still older is an older copy put back. (Reading the heads again each time would let two changes committed
    during the reads refuse a row that is current, as the earlier version did under a storm of changes.)"""
    heads: dict[Any, int | None] = {}  # aggregate -> its newest version (None: it had no events), read earlier
    rows = read()
    for _ in range(_READS):
        unseen = list(dict.fromkeys(aggregate for aggregate in map(aggregate_of, rows) if aggregate not in heads))
        if unseen:  # read after these rows: a row older than one of these heads may be current; read it again
            found = heads_of(unseen)
            heads.update((aggregate, found.get(aggregate)) for aggregate in unseen)
        stale = [row for row in rows if not _as_new_as(row, heads[aggregate_of(row)])]
        if not stale:
            return rows
        rows = read()
        older = [row for row in rows if aggregate_of(row) in heads and not _as_new_as(row, heads[aggregate_of(row)])]
        if older:  # older than a head read before it
            raise TamperedStateError(what(older[0]))
    raise TamperedStateError(what(stale[0]))


def _as_new_as(row: Any, head: int | None) -> bool:
    return head is not None and isinstance(row.version, int) and row.version >= head


def aggregate_uuid(text: str) -> Any:
    import uuid

    return uuid.UUID(text)


def checked(seal: RowSeal | None, table: sa.Table, row: Any, what: Callable[[], str]) -> Any:
    """``row`` if its tag proves the service wrote it as it is (rows are only checked with the row key)."""
    if seal is not None and not seal.matches(table.name, row._mapping):
        raise TamperedStateError(what())
    return row
