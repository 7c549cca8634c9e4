"""The key-usage index: every successful cryptographic use of a key, taken from the audit log by a follower that
tracks its position in the same transaction as the rows it writes (exactly once, restartable, several processes).
GetKeyLastUsage reads it, now or as of an instant (docs/decisions.md 90). Not a table authorization reads."""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Sequence

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from application.history.last_usage import KeyUse
from application.ports import UnitOfWork

metadata = sa.MetaData()

key_usage = sa.Table(
    "key_usage", metadata,
    sa.Column("seq", sa.BigInteger, primary_key=True),  # the audit record's
    sa.Column("key_id", sa.String(36), primary_key=True),  # ReEncrypt uses two keys in one record
    sa.Column("at", sa.Float, nullable=False),
    sa.Column("operation", sa.String(64), nullable=False),
    sa.Column("event_id", sa.String(64), nullable=False),
    sa.Column("request_id", sa.String(64), nullable=False),
    sa.Index("key_usage_key_at_idx", "key_id", "at"),
)

follower_positions = sa.Table(
    "follower_positions", metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("position", sa.BigInteger, nullable=False),
)

_NAME = "key_usage"


class SqlKeyUsageIndex:
    """application.history.last_usage.KeyUsageIndex over the key_usage table."""

    def __init__(self, uow: UnitOfWork) -> None:
        self._uow = uow

    def position(self) -> int:
        with self._uow.read() as session:  # type: ignore[attr-defined]
            found = session.execute(sa.select(follower_positions.c.position).where(
                follower_positions.c.name == _NAME)).scalar()
        return int(found or 0)

    def add(self, after: int, upto: int, uses: Sequence[tuple[int, KeyUse]]) -> bool:
        """Records the uses of audit records ``after`` < seq <= ``upto`` and moves the position, if no other
        process moved it first (then nothing is written and False says to read the position again)."""
        c = follower_positions.c
        try:
            with self._uow.transaction() as tx:
                if after == 0 and tx.execute(sa.select(c.position).where(c.name == _NAME)).first() is None:
                    tx.execute(follower_positions.insert().values(name=_NAME, position=0))
                moved = tx.execute(follower_positions.update().where(c.name == _NAME, c.position == after)
                                   .values(position=upto)).rowcount
                if moved != 1:
                    raise _Moved
                if uses:
                    tx.execute(key_usage.insert(), [
                        {"seq": seq, "key_id": u.key_id, "at": u.at.timestamp(), "operation": u.operation,
                         "event_id": u.event_id, "request_id": u.request_id} for seq, u in uses])
        except (_Moved, IntegrityError):
            return False
        return True

    def last_use(self, key_id: str, at: datetime | None) -> KeyUse | None:
        c = key_usage.c
        query = sa.select(key_usage).where(c.key_id == key_id)
        if at is not None:
            query = query.where(c.at <= at.timestamp())
        with self._uow.read() as session:  # type: ignore[attr-defined]
            row: Any = session.execute(query.order_by(c.at.desc(), c.seq.desc()).limit(1)).first()
        if row is None:
            return None
        return KeyUse(row.key_id, datetime.fromtimestamp(row.at, timezone.utc), row.operation, row.event_id,
                      row.request_id)


class _Moved(Exception):
    """Another process advanced the follower first."""
