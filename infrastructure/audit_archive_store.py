"""The database side of `keyledger audit archive` (application/audit/archive.py, ``ArchiveStore``): which records
are archived already, which to archive, their rows as stored, and the one transaction that removes them."""
from __future__ import annotations

import json
import time
from datetime import datetime
from typing import Any, Iterator

import sqlalchemy as sa

from domain.audit.log import AUDIT_LOG_ID
from domain.errors import ValidationError
from infrastructure.storage import SqlUnitOfWork
from infrastructure.tables import audit_archive
from projections.tables import archived_claims, audit_index

PAGE = 5000


class ArchiveRaced(ValidationError):
    """Another archive run removed records first."""


class SqlArchiveStore:
    def __init__(self, uow: SqlUnitOfWork, events: sa.Table) -> None:
        self._uow, self._events = uow, events

    def archived(self) -> list[dict[str, Any]]:
        """The manifests of the archived segments, oldest first."""
        with self._uow.read() as session:
            return [json.loads(m) for m in session.execute(
                sa.select(audit_archive.c.manifest).order_by(audit_archive.c.first_seq)).scalars()]

    def first_seq_at_or_after(self, before: datetime) -> int | None:
        """The lowest seq whose record's eventTime is at or after ``before`` (the audit index's time index)."""
        with self._uow.read() as session:
            return session.execute(sa.select(sa.func.min(audit_index.c.seq)).where(
                audit_index.c.at >= _ceil_seconds(before))).scalar()

    def head_seq(self) -> int:
        """The newest record's seq (the audit log's version is seq + 1)."""
        with self._uow.read() as session:
            return (session.execute(sa.select(sa.func.max(self._events.c.originator_version)).where(
                self._events.c.originator_id == AUDIT_LOG_ID)).scalar() or 1) - 1

    def audit_rows(self, first_seq: int, last_seq: int) -> Iterator[tuple[int, int, str, bytes]]:
        """(position, version, topic, state) of records ``first_seq``..``last_seq`` as stored, a page at a time."""
        c = self._events.c
        version = first_seq + 1
        while version <= last_seq + 1:
            with self._uow.read() as session:
                page = session.execute(sa.select(c.id, c.originator_version, c.topic, c.state).where(
                    c.originator_id == AUDIT_LOG_ID, c.originator_version >= version,
                    c.originator_version <= min(last_seq + 1, version + PAGE - 1)).order_by(c.originator_version)).all()
            yield from ((row[0], row[1], row[2], bytes(row[3])) for row in page)
            version += PAGE

    def remove(self, tx: Any, manifest: dict[str, Any], name: str, claims: list[tuple[int, int]]) -> None:
        """Inside the transaction that records the archive call (it holds the writers' lock): delete the records
        the segment holds and their index rows, and register the segment. Refuses if another run got there first
        or the rows are not all there (nothing is then deleted: the transaction rolls back)."""
        first, last = manifest["first_seq"], manifest["last_seq"]
        newest = tx.execute(sa.select(sa.func.max(audit_archive.c.last_seq))).scalar() or 0
        if newest != first - 1:
            raise ArchiveRaced(f"records up to seq {newest} are archived now, not {first - 1}: another archive ran")
        c = self._events.c
        deleted = tx.execute(sa.delete(self._events).where(
            c.originator_id == AUDIT_LOG_ID, c.originator_version >= first + 1,
            c.originator_version <= last + 1)).rowcount
        if deleted != manifest["records"]:
            raise ArchiveRaced(f"{deleted} of the {manifest['records']} records {first}-{last} were stored")
        if claims:
            tx.execute(archived_claims.insert(), [{"position": p, "seq": seq} for p, seq in claims])
        tx.execute(sa.delete(audit_index).where(audit_index.c.seq >= first, audit_index.c.seq <= last))
        tx.execute(audit_archive.insert().values(
            first_seq=first, last_seq=last, last_position=manifest["last_position"], name=name,
            manifest=json.dumps(manifest, sort_keys=True, separators=(",", ":")), archived_at=time.time()))


def _ceil_seconds(moment: datetime) -> int:
    seconds = moment.timestamp()
    return int(seconds) if seconds == int(seconds) else int(seconds) + 1
