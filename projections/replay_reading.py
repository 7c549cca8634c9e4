"""What a replay reads (projections/replay.py): the replayed events a page at a time, through the index of every
event but the audit aggregates' (or by topic, the old way, for the bench's before-and-after), and the audit record
that committed each change, found by position (decision 247)."""
from __future__ import annotations

import bisect
import uuid
from typing import Any

from application.history.point_in_time import ALIAS_TOPICS, KEY_TOPICS, event_topics
from domain.audit.log import AUDIT_LOG_ID
from domain.keystores.store import CustomKeyStore
from domain.principals.principal import Principal
from projections import tables
from projections.ledger_events import ledger_event_rows

PAGE = 1000
PRINCIPAL_TOPICS = event_topics(Principal)
KEY_STORE_TOPICS = event_topics(CustomKeyStore)
REPLAYED_TOPICS = frozenset(KEY_TOPICS | ALIAS_TOPICS | PRINCIPAL_TOPICS | KEY_STORE_TOPICS)
# The events a change stores before its record (what may lie between a page's last event and that record).
_CHANGE_TOPICS = sorted(KEY_TOPICS | ALIAS_TOPICS | PRINCIPAL_TOPICS)


Row = tuple  # (position, aggregate id as stored, version, topic, state): a stored event as the driver returns it


def _keyed(rows: list[Row]) -> list[Row]:
    """Rows whose aggregate id came as a UUID (PostgreSQL's driver makes a new one per row) carry its integer
    instead: replay keys its dictionaries by the id as stored, and an integer hashes and compares in C, a UUID in
    Python (about nine calls an event). SQLite's 16 bytes are already such a key. ``stored_uuid`` turns either back."""
    if not rows or not isinstance(rows[0][1], uuid.UUID):
        return rows
    return [(p, a.int if isinstance(a, uuid.UUID) else a, v, t, s) for p, a, v, t, s in rows]


def _by_topic(ledger: Any, start: int) -> list[Row]:
    """The replayed events from ``start`` on as the event library filters them: by topic, which no index covers, so
    every audit record on the way is read too. Kept for bench/history.py's before-and-after."""
    return _keyed([(n.id, n.originator_id, n.originator_version, n.topic, n.state)
                   for n in ledger.recorder.select_notifications(start, PAGE, topics=sorted(REPLAYED_TOPICS))])


def _by_index(ledger: Any, start: int) -> list[Row]:
    """The replayed events from ``start`` on, through the index of every event but the audit aggregates'
    (projections/ledger_events.py): the cost is the events replayed, not the log."""
    while True:
        page = ledger_event_rows(ledger, start, PAGE)
        if not page:
            return []
        wanted = [r for r in page if r[3] in REPLAYED_TOPICS]  # XKS credentials and the root-key history: no rows
        if wanted or len(page) < PAGE:
            return _keyed(wanted)
        start = page[-1][0] + 1


READERS = {"index": _by_index, "topic": _by_topic}


def _record_seqs(ledger: Any, positions: list[int], wanted: list[int] | None = None) -> dict[int, int]:
    """The seq of the audit record stored right after each change's events, by event position: what the write
    path put in key_event_index.audit_seq (a change's events and its record are stored together under the writers'
    lock, the record last, at consecutive positions). One query per page, for the last event of each run of
    consecutive ``positions``; a run followed by no record (a ledger from before records named their events, or
    the upgrade) gets none. Only the seqs of ``wanted`` (default: every position) are asked and returned."""
    if not positions:
        return {}
    ordered = sorted(positions)
    runs: list[tuple[int, int]] = []  # (first, last) position of each run of consecutive positions
    first = previous = ordered[0]
    for position in ordered:
        if position > previous + 1:
            runs.append((first, previous))
            first = position
        previous = position
    runs.append((first, previous))
    lasts = [last for _, last in runs]
    every = wanted is None or wanted is positions
    if not every and not wanted:
        return {}
    # The run each wanted position belongs to: the first run whose last position is at or after it.
    mine = range(len(runs)) if every else sorted({bisect.bisect_left(lasts, p) for p in wanted})  # type: ignore[union-attr]
    needed = [lasts[i] + 1 for i in mine]
    events = ledger.recorder.events_record_cls.__table__
    with ledger.recorder.datastore.transaction(commit=False) as session:
        connection = session.connection()
        marker = "?" if connection.dialect.name == "sqlite" else "%s"
        quote = connection.dialect.identifier_preparer.quote

        def rows(sql: str, parameters: list[Any]) -> Any:  # the driver's SQL: no statement to build per page
            return connection.exec_driver_sql(sql, tuple(parameters)).fetchall()

        def listed(values: list[Any]) -> str:
            return ", ".join([marker] * len(values))
        # By position only, the aggregate compared here: with the aggregate in the WHERE clause SQLite chose the
        # index on (aggregate, version) and read every audit record of the log, on every page.
        found = {position: version for position, aggregate, version in rows(
            f"SELECT id, originator_id, originator_version FROM {quote(events.name)} WHERE id IN ({listed(needed)})",
            needed) if _uuid(aggregate) == AUDIT_LOG_ID}
        missing = [position for position in needed if position not in found]
        if missing:  # records archived since (`keyledger audit archive`): their positions and seqs stay
            claims = tables.archived_claims
            found.update((p, seq + 1) for p, seq in rows(
                f"SELECT {quote('position')}, {quote('seq')} FROM {quote(claims.name)} "
                f"WHERE {quote('position')} IN ({listed(missing)})", missing))
        if lasts[-1] + 1 in missing and lasts[-1] + 1 not in found:
            # The page may end inside a change (its remaining events open the next page): its record is the
            # first row after it that is not a replayed event, if that row is the audit log's. Asked in store
            # order, so the database walks the change's remaining events, not every audit record (which it did
            # when asked for the audit log's first row after the page: an index on the aggregate, then a sort).
            after = rows(f"SELECT id, originator_id, originator_version FROM {quote(events.name)} WHERE id > {marker} "
                         f"AND topic NOT IN ({listed(_CHANGE_TOPICS)}) ORDER BY id LIMIT 1", [lasts[-1], *_CHANGE_TOPICS])
            if after and _uuid(after[0][1]) == AUDIT_LOG_ID:
                found[lasts[-1] + 1] = after[0][2]
    out: dict[int, int] = {}
    if every:  # each run's positions at once: a run is a range
        for (first, last) in runs:
            version = found.get(last + 1)
            if version is not None:
                out.update(dict.fromkeys(range(first, last + 1), version - 1))  # the audit log's version is seq + 1
        return out
    for position in wanted:  # type: ignore[union-attr]
        version = found.get(lasts[bisect.bisect_left(lasts, position)] + 1)
        if version is not None:
            out[position] = version - 1
    return out


def _uuid(stored: Any) -> uuid.UUID:
    if isinstance(stored, uuid.UUID):
        return stored
    return uuid.UUID(bytes=bytes(stored)) if isinstance(stored, (bytes, bytearray, memoryview)) else uuid.UUID(str(stored))
