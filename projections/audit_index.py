"""The audit index (projections/tables.py audit_index): written with the records, read by /v1/audit and
`audit export` to find the records of a page without reading the others (issue 13)."""
from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Iterator, Sequence

import sqlalchemy as sa
from eventsourcing.persistence import IntegrityError as PersistenceIntegrityError

from application.ports import UnitOfWork
from domain.audit.log import stored_at
from projections.tables import audit_index

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_KEY_MARK = ":key/"
BACKFILL_PAGE = 1000
_COLUMNS = ("seq", "slot", "at", "account_id", "caller_account", "principal", "event_name", "error_code", "key_id")
_SQLITE_INSERT = f"INSERT INTO {audit_index.name} ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' for _ in _COLUMNS)})"


def index_rows(records: Sequence[dict[str, Any]], first_seq: int) -> list[tuple[Any, ...]]:
    """The index rows of ``records``, the first of which is (or was sealed as) ``first_seq``: tuples in the order of
    ``_COLUMNS`` (the committer inserts them as they are: a dict per row cost as much again)."""
    rows: list[tuple[Any, ...]] = []
    seconds: dict[Any, int] = {}  # a batch's records share a few eventTimes: one parse each
    short = _short
    for offset, record in enumerate(records):
        get = record.get
        identity = get("userIdentity") or {}
        when = get("eventTime")
        at = seconds.get(when)
        if at is None:
            at = seconds[when] = int(stored_at(record, _EPOCH).timestamp())
        seq = first_seq + offset
        fields = (at, short(get("recipientAccountId"), 12), short(identity.get("accountId"), 12),
                  short(identity.get("arn"), 256), short(get("eventName"), 128), short(get("errorCode"), 128))
        keys: list[str] = []
        for resource in get("resources") or ():
            arn = resource.get("ARN") if isinstance(resource, dict) else None
            if isinstance(arn, str) and _KEY_MARK in arn:
                key_id = arn.rpartition("/")[2][:36]
                if key_id not in keys:
                    keys.append(key_id)
        if not keys:
            rows.append((seq, 0, *fields, None))
        for slot, key_id in enumerate(keys):
            rows.append((seq, slot, *fields, key_id))
    return rows


def _short(value: Any, size: int) -> str | None:
    if not isinstance(value, str):
        return None
    # PostgreSQL's text refuses NUL, which a record may hold (it is stored as JSON, escaped): the index, a lookup aid,
    # holds U+FFFD in its place rather than failing the batch, and every record in it, over one character.
    return value[:size] if "\x00" not in value else value[:size].replace("\x00", "\ufffd")


@dataclass(frozen=True)
class AuditFilter:
    account_id: str | None = None  # the caller's account: records it made or that were about it
    key_id: str | None = None
    principal: str | None = None
    event_name: str | None = None
    error_code: str | None = None
    low: datetime | None = None
    high: datetime | None = None


class SqlAuditIndex:
    def __init__(self, uow: UnitOfWork) -> None:
        self._uow = uow

    def add(self, tx: Any, records: Sequence[dict[str, Any]], first_seq: int) -> None:
        """Inside the records' transaction. This runs on the group committer, which shares the GIL with every
        request: on SQLite the rows go in through the driver's executemany (as the records do, decision 51),
        without SQLAlchemy's per-row parameter processing (about half the cost; docs/performance.md)."""
        rows = index_rows(records, first_seq)
        if not rows:
            return
        if not hasattr(tx, "connection"):  # the audit committer's own transaction (decision 269)
            tx.insert(audit_index.name, _COLUMNS, rows)
            return
        connection = tx.connection()
        if connection.dialect.name == "sqlite":
            connection.connection.dbapi_connection.executemany(_SQLITE_INSERT, rows)
        else:
            tx.execute(audit_index.insert(), [dict(zip(_COLUMNS, row)) for row in rows])

    def backfill(self, ledger: Any) -> int:
        """Indexes the records stored after the highest indexed seq (a database from before the index: once, at
        start; afterwards every record is indexed in its own transaction and this finds nothing). Returns how many."""
        from application.audit.checkpoints import audit_records

        done, batch, first = 0, [], None
        for record in audit_records(ledger, after_seq=self.indexed_up_to()):
            if not isinstance(record.get("seq"), int) or record.get("undecodable"):
                continue  # `verify` names it; the index has nothing to say about it
            if first is None or record["seq"] != first + len(batch):
                self._write(batch, first)
                done, batch, first = done + len(batch), [], record["seq"]
            batch.append(record)
            if len(batch) == BACKFILL_PAGE:
                self._write(batch, first)
                done, batch, first = done + len(batch), [], None
        self._write(batch, first)
        return done + len(batch)

    def _write(self, records: list[dict[str, Any]], first_seq: int | None) -> None:
        if records and first_seq is not None:
            try:
                with self._uow.transaction() as tx:
                    self.add(tx, records, first_seq)
            except (sa.exc.IntegrityError, PersistenceIntegrityError, sqlite3.IntegrityError):  # as each path raises it
                pass  # another process indexed them first (a running server's committer, while this one starts)

    def refresh_statistics(self) -> bool:
        """PostgreSQL plans a filtered page from the table's statistics. Right after many rows arrive (a bulk
        load, a backfill, a busy hour before autovacuum's next pass) they still say the table is small, and the
        planner reads every row of the key and sorts them instead of walking the (key, seq) index for one page:
        measured at 1M records, 1.6 pages/s instead of ~10. So when more than a tenth of the rows (and at least
        10,000) changed since the last ANALYZE, run it: it samples, so it costs the same at any size. Returns
        whether it ran. SQLite needs none: its planner takes an equality-and-range index without statistics."""
        with self._uow.read() as session:
            if session.get_bind().dialect.name != "postgresql":
                return False
            row = session.execute(sa.text(
                "SELECT n_mod_since_analyze, n_live_tup FROM pg_stat_user_tables "
                "WHERE relname = 'audit_index' AND schemaname = current_schema()")).first()
        if row is None or row[0] < max(10_000, row[1] // 10):
            return False
        with self._uow.transaction() as tx:
            tx.execute(sa.text("ANALYZE audit_index"))
        return True

    def indexed_up_to(self) -> int:
        with self._uow.read() as session:
            return session.execute(sa.select(sa.func.max(audit_index.c.seq))).scalar() or 0

    def records(self, ledger: Any, seqs: Sequence[int]) -> list[dict[str, Any]]:
        """The records ``seqs`` (ascending) in one query on the event store's (aggregate, version) index."""
        if not seqs:
            return []
        from eventsourcing.persistence import StoredEvent

        from domain.audit.log import AUDIT_LOG_ID, AuditLog

        events = ledger.recorder.events_record_cls.__table__
        c = events.c
        with self._uow.read() as session:
            rows = session.execute(sa.select(c.originator_id, c.originator_version, c.topic, c.state).where(
                c.originator_id == AUDIT_LOG_ID, c.originator_version.in_([seq + 1 for seq in seqs]),
            ).order_by(c.originator_version)).all()
        out = []
        for row in rows:
            try:
                event = ledger.mapper.to_domain_event(StoredEvent(row[0], row[1], row[2], bytes(row[3])))
            except Exception:
                continue  # undecodable: `verify` names it
            if isinstance(event, AuditLog.RecordAppended):
                out.append(event.record)
        return out

    def seqs(self, where: AuditFilter, after_seq: int, limit: int) -> list[int]:
        """The seqs of the records that match, after ``after_seq``, at most ``limit``, in order."""
        c = audit_index.c
        query = sa.select(c.seq).where(c.seq > after_seq)
        if where.account_id is not None:
            query = query.where(sa.or_(c.account_id == where.account_id, c.caller_account == where.account_id))
        for column, value in ((c.key_id, where.key_id), (c.principal, where.principal),
                              (c.event_name, where.event_name), (c.error_code, where.error_code)):
            if value is not None:
                query = query.where(column == value)
        if where.low is not None:
            query = query.where(c.at >= int(where.low.timestamp()) if where.low.microsecond == 0
                                else c.at > int(where.low.timestamp()))
        if where.high is not None:
            query = query.where(c.at <= int(where.high.timestamp()))
        query = query.group_by(c.seq).order_by(c.seq).limit(limit)
        with self._uow.read() as session:
            return [row[0] for row in session.execute(query)]

    def matching(self, where: AuditFilter, after_seq: int = 0, page: int = BACKFILL_PAGE) -> Iterator[int]:
        """Every matching seq after ``after_seq``, a page of the index at a time."""
        while True:
            found = self.seqs(where, after_seq, page)
            yield from found
            if len(found) < page:
                return
            after_seq = found[-1]
