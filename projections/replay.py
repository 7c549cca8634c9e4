"""Rebuilding the projections from the event log and proving the rebuilt rows equal the live ones (or the
point-in-time answers for a past moment).

The rows are built by the live code itself (SqlKeyStateView.project), so a replay tests the events and
the projection code, not a second copy of it. That code writes to the tables of projections/tables.py by
name, so each page of replayed aggregates is projected into a private SQLite database with those tables (a
file when the target is SQLite, so that SQLite copies it itself; decision 262) and copied from there into the
target tables (``<prefix>key_state`` ...) at the end.

A command-line replay may use several processes (``workers``, decision 261): each replays a share of the
aggregates into its own staging file, and the parent copies them all.
"""
from __future__ import annotations

import bisect
import gc
import os
import pickle
import signal
import tempfile
import time
import urllib.parse
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable, Iterator, Optional

import sqlalchemy as sa
from eventsourcing.persistence import Notification
from sqlalchemy.orm import Session

from application.history.point_in_time import ALIAS_TOPICS, KEY_TOPICS, event_topics
from domain.audit.log import AUDIT_LOG_ID
from domain.keys.alias import Alias
from domain.keys.key import Key
from domain.keystores.store import CustomKeyStore
from domain.principals.principal import Principal
from projections import tables
from projections.key_state_view import SqlKeyStateView
from projections.ledger_events import ledger_event_rows, stored_uuid
from projections.principal_view import SqlPrincipalView
from projections.replay_compare import compare, differences_from_answers
from projections.replay_decode import ReplayDecoder
from projections.replay_staging import copy_staged, staging_database
from projections.replay_tables import DEFAULT_PREFIX, drop_tables

PAGE = 1000
PRINCIPAL_TOPICS = event_topics(Principal)
KEY_STORE_TOPICS = event_topics(CustomKeyStore)
Progress = Callable[[int, int], None]  # (last notification id read, highest notification id)


@dataclass
class ReplayStats:
    notifications: int = 0
    events: int = 0
    keys: int = 0
    aliases: int = 0
    principals: int = 0
    key_state_rows: int = 0
    alias_rows: int = 0
    index_rows: int = 0
    principal_rows: int = 0
    seconds: float = 0.0
    as_of: Optional[datetime] = None
    skipped_after: int = 0  # events later than as_of
    decoded_fast: int = 0  # events decoded without the mapper (projections/replay_decode.py)

    @property
    def events_per_second(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else float(self.events)


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


def _pages(ledger: Any, stats: ReplayStats, progress: Progress | None,
           read: Callable[[Any, int], list[Row]] = _by_index) -> Iterator[list[Row]]:
    top = ledger.recorder.max_notification_id() or 0 if progress else 0
    start = 1
    while True:
        page = read(ledger, start)
        if not page:
            break
        stats.notifications += len(page)
        yield page
        start = page[-1][0] + 1
        if progress:
            progress(page[-1][0], max(top, page[-1][0]))
    if progress:
        progress(top, top)


class _Share:
    """Which aggregates one of ``count`` processes replays (decision 261). Every process reads every page in the
    same order and hands each aggregate, when its first event is seen, to the process with the fewest events so
    far; so they all agree without talking, and each aggregate's events (and the rows they project to: every
    projection row belongs to one aggregate) are replayed by one process, in order."""

    def __init__(self, index: int, count: int) -> None:
        self.index = index
        self._owner: dict[Any, int] = {}
        self._load = [0] * count

    def mine(self, page: list[Row]) -> list[Row]:
        owner, load, index, out = self._owner, self._load, self.index, []
        for row in page:
            worker = owner.get(row[1])
            if worker is None:
                worker = owner[row[1]] = load.index(min(load))
            load[worker] += 1
            if worker == index:
                out.append(row)
        return out


class _Recorded:
    """What the projection code reads of a recording: the event, and its notification's position
    (``.notification.id``); one object per event, not a Recording and a Notification."""

    __slots__ = ("domain_event", "id")

    def __init__(self, domain_event: Any, position: int) -> None:
        self.domain_event = domain_event
        self.id = position

    @property
    def notification(self) -> _Recorded:
        return self


def _replay(ledger: Any, staging: sa.Engine, until: datetime | None, stats: ReplayStats,
            progress: Progress | None, read: Callable[[Any, int], list[Row]] = _by_index,
            share: _Share | None = None) -> None:
    """Decodes, applies and projects into ``staging`` the events of the log, or with ``share`` those of this
    process's aggregates (only without ``until``: which events a moment skips is known only once decoded)."""
    assert share is None or until is None
    # The rows are tagged as the live service tags them, so a live row whose tag differs is reported.
    view = SqlKeyStateView(None, cache_seconds=0, seal=ledger.row_seal)
    principal_view = SqlPrincipalView(None, ledger.row_seal)  # type: ignore[arg-type]  # writes only, into the staging tx
    decoder = ReplayDecoder(ledger.mapper)
    decoded, to_event = decoder.decoded, decoder.event
    ids: dict[Any, uuid.UUID] = {}  # aggregate id as stored -> one UUID for all its events
    aggregates: dict[Any, Any] = {}  # by the id as stored: hashing bytes is C, a UUID's hash is Python
    frozen: set[Any] = set()  # aggregates whose history passed ``until``: nothing later applies
    for page in _pages(ledger, stats, progress, read):
        own = share.mine(page) if share is not None else page
        touched: dict[Any, Any] = {}
        recordings: list[_Recorded] = []
        for row in own:
            position, aggregate, version, topic, state = row
            event = decoded(aggregate, version, topic, state)
            if event is None:  # the mapper decodes it, or raises, as before
                oid = ids.get(aggregate)
                if oid is None:
                    oid = ids[aggregate] = stored_uuid(aggregate)
                event = to_event(Notification(id=position, originator_id=oid, originator_version=version,
                                              topic=topic, state=bytes(state)))
            if until is not None and (aggregate in frozen or event.timestamp > until):
                frozen.add(aggregate)
                stats.skipped_after += 1
                continue
            aggregates[aggregate] = touched[aggregate] = event.mutate(aggregates.get(aggregate))
            recordings.append(_Recorded(event, position))
        stats.events += len(recordings)
        # Each change's record is found from the positions of every event of the page (decision 247), also those
        # another process replays: the runs of consecutive positions are the same in every process.
        applied = [r.id for r in recordings]
        seqs = _record_seqs(ledger, [row[0] for row in page] if share is not None else applied, applied)
        if not recordings:
            continue
        principals = [a for a in touched.values() if isinstance(a, Principal)]
        with Session(staging) as tx, tx.begin():
            view.project(tx, [a for a in touched.values() if not isinstance(a, Principal)],
                         recordings, seqs)  # type: ignore[arg-type]
            for principal in principals:
                principal_view.project(tx, principal, [r.domain_event for r in recordings
                                                       if r.domain_event.originator_id == principal.id])
    stats.decoded_fast = decoder.fast
    stats.keys = sum(isinstance(a, Key) for a in aggregates.values())
    stats.principals = sum(isinstance(a, Principal) for a in aggregates.values())
    stats.aliases = sum(isinstance(a, Alias) for a in aggregates.values())


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


# A smaller log replays in less time than forking and starting the other processes' reading takes.
PROCESSES_FROM_POSITIONS = 20_000


_SUMMED = ("events", "keys", "aliases", "principals", "decoded_fast")


def _replay_in_processes(ledger: Any, directory: str, stats: ReplayStats, progress: Progress | None,
                         read: Callable[[Any, int], list[Row]], workers: int) -> list[sa.Engine] | None:
    """Replays with ``workers`` processes: this one and ``workers - 1`` forked children, each the aggregates
    ``_Share`` gives it (decision 261), each into its own staging file in ``directory``. A child hands back only
    its counts; its rows stay in its file, which the parent copies from (not a record at a time through a pipe:
    decision 242). Returns the staging databases, or None when any process failed: the caller then replays in
    this process alone, which raises the first error in store order exactly as before (a share may meet a later
    damaged row first).

    Fork is only for a command-line process: the event store's engine is disposed first, so no pooled connection
    is shared, and each child opens its own."""
    engine = ledger.recorder.datastore.engine
    engine.dispose()
    # Every object so far out of the collector's reach until the children are done: a collection would write into
    # each object's header and so copy every page the fork shares (about 7 % of each process's CPU, measured).
    gc.freeze()
    try:
        return _fork_and_replay(ledger, engine, directory, stats, progress, read, workers)
    finally:
        gc.unfreeze()


def _fork_and_replay(ledger: Any, engine: sa.Engine, directory: str, stats: ReplayStats, progress: Progress | None,
                     read: Callable[[Any, int], list[Row]], workers: int) -> list[sa.Engine] | None:
    children: list[tuple[int, int]] = []
    for index in range(1, workers):
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: replay its share, say what it did, leave without running the parent's exits
            status = 1
            try:
                os.close(read_end)
                engine.dispose(close=False)  # nothing pooled should be here; if it is, it stays the parent's
                own = staging_database(os.path.join(directory, f"staging-{index}.db"))
                mine = ReplayStats()
                _replay(ledger, own, None, mine, None, read, _Share(index, workers))
                own.dispose()
                with os.fdopen(write_end, "wb") as out:
                    out.write(pickle.dumps({name: getattr(mine, name) for name in _SUMMED}))
                status = 0
            finally:
                os._exit(status)
        os.close(write_end)
        children.append((pid, read_end))
    stagings = [staging_database(os.path.join(directory, "staging-0.db"))]
    failed = False
    try:
        _replay(ledger, stagings[0], None, stats, progress, read, _Share(0, workers))
    except Exception:
        failed = True
    except BaseException:  # interrupted: the children are stopped and reaped, not left running
        for pid, read_end in children:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            os.close(read_end)
        raise
    for index, (pid, read_end) in enumerate(children, start=1):
        with os.fdopen(read_end, "rb") as source:
            payload = source.read()
        _, status = os.waitpid(pid, 0)
        if status != 0 or not payload:
            failed = True
            continue
        for name, value in pickle.loads(payload).items():  # our own child's counts, through our own pipe
            setattr(stats, name, getattr(stats, name) + value)
        stagings.append(staging_database(os.path.join(directory, f"staging-{index}.db")))
    if failed:
        for staging in stagings:
            staging.dispose()
        return None
    return stagings


def rebuild(ledger: Any, engine: sa.Engine, target_prefix: str = DEFAULT_PREFIX, *, until: datetime | None = None,
            progress: Progress | None = None, reader: str = "index", workers: int = 1) -> ReplayStats:
    """Replays every Key and Alias event of the log into fresh ``<target_prefix>...`` tables on ``engine``
    (dropped first). With ``until``, only events at or before that moment count. ``workers`` > 1 forks that many
    processes less one (only from a command-line process, never a server's: decision 261); with ``until`` the
    replay stays in this process."""
    started = time.perf_counter()
    stats = ReplayStats(as_of=until)
    stagings: list[sa.Engine] | None = None
    with tempfile.TemporaryDirectory(prefix="keyledger-replay-") as directory:
        try:
            if workers > 1 and until is None and hasattr(os, "fork"):
                stagings = _replay_in_processes(ledger, directory, stats, progress, READERS[reader], workers)
                if stagings is None:  # a process failed: again in this one, which raises what it met first
                    stats = ReplayStats(as_of=until)
            if stagings is None:
                # A file when the target is SQLite, so that the copy is SQLite's own (decision 262).
                into_file = engine.dialect.name == "sqlite"
                stagings = [staging_database(os.path.join(directory, "staging.db") if into_file else None)]
                _replay(ledger, stagings[0], until, stats, progress, READERS[reader])
            copy_staged(stagings, engine, target_prefix, stats)
        finally:
            for staging in stagings or ():
                staging.dispose()
    stats.seconds = time.perf_counter() - started
    return stats


def ensure_schema(url: str) -> None:
    """A PostgreSQL URL naming its schema by search_path (options=-csearch_path=NAME) gets the schema
    created if it is missing, so an auditor's copy can go into a schema of its own."""
    options = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query).get("options", [""])[0]
    found = [p.split("=", 1)[1].split(",")[0].strip() for p in options.split() if p.startswith("-csearch_path=")]
    if not url.startswith("postgresql") or not found:
        return
    schema = found[0]
    if not schema.replace("_", "").isalnum():
        raise ValueError(f"schema name {schema!r} must be letters, digits and underscores")
    engine = sa.create_engine(url.split("?")[0])
    try:
        with engine.begin() as conn:
            conn.execute(sa.text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
    finally:
        engine.dispose()


def rebuild_until(ledger: Any, at: datetime, target_url: str, progress: Progress | None = None) -> ReplayStats:
    """The world as it was at ``at`` (key_state, key_aliases, key_event_index under their own names) in a
    separate database for an auditor, with a ``replay_info`` row saying what it is."""
    ensure_schema(target_url)
    engine = sa.create_engine(target_url)
    try:
        stats = rebuild(ledger, engine, "", until=at, progress=progress)
        info = sa.Table("replay_info", sa.MetaData(), sa.Column("as_of", sa.Float, nullable=False),
                        sa.Column("as_of_text", sa.String(40), nullable=False),
                        sa.Column("built_at", sa.Float, nullable=False), sa.Column("events", sa.Integer, nullable=False))
        info.drop(engine, checkfirst=True)
        info.create(engine)
        with engine.begin() as conn:
            conn.execute(info.insert().values(as_of=at.timestamp(), as_of_text=at.isoformat(),
                                              built_at=datetime.now(timezone.utc).timestamp(), events=stats.events))
    finally:
        engine.dispose()
    return stats


class SqlProjectionRebuilder:
    """application.history.replay.ProjectionRebuilder over the live database."""

    def __init__(self, ledger: Any) -> None:
        self._ledger = ledger

    def events_written(self) -> int:
        return self._ledger.recorder.max_notification_id() or 0

    def rebuild_and_compare(self, into: str | None, keep: bool, progress: Progress | None,
                            workers: int = 1) -> tuple[ReplayStats, list[str]]:
        live = self._ledger.recorder.datastore.engine
        if into:
            ensure_schema(into)
        target, prefix = (sa.create_engine(into), "") if into else (live, DEFAULT_PREFIX)
        try:
            if self.events_written() < PROCESSES_FROM_POSITIONS:  # forking would cost more than it saves
                workers = 1
            stats = rebuild(self._ledger, target, prefix, progress=progress, workers=workers)
            differences = compare(live, "", prefix, rebuilt_engine=target)
            if not differences and not keep and not into:
                drop_tables(live, prefix)
        finally:
            if into:
                target.dispose()
        return stats, differences

    def rebuild_until(self, moment: datetime, url: str, progress: Progress | None) -> ReplayStats:
        return rebuild_until(self._ledger, moment, url, progress)

    def differences_from_answers(self, url: str, answers: list[dict[str, Any]]) -> list[str]:
        target = sa.create_engine(url)
        try:
            return differences_from_answers(target, answers)
        finally:
            target.dispose()
