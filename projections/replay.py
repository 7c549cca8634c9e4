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

import os
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

from domain.keys.alias import Alias
from domain.keys.key import Key
from domain.principals.principal import Principal
from projections.key_state_view import SqlKeyStateView
from projections.ledger_events import stored_uuid
from projections.principal_view import SqlPrincipalView
from projections.replay_compare import compare, differences_from_answers
from projections.replay_decode import ReplayDecoder
from projections.replay_processes import PROCESSES_FROM_POSITIONS, replay_in_processes
from projections.replay_reading import READERS, Row, _by_index, _record_seqs
from projections.replay_staging import copy_staged, staging_database
from projections.replay_tables import DEFAULT_PREFIX, drop_tables

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
                read = READERS[reader]

                def share(staging: sa.Engine, into: ReplayStats, shown: Progress | None, index: int) -> None:
                    _replay(ledger, staging, None, into, shown, read, _Share(index, workers))

                stagings = replay_in_processes(ledger, directory, stats, progress, workers, share, ReplayStats)
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
