"""The SQL side of the unit of work and the stores that live beside the event store."""
from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from datetime import datetime

from infrastructure.tables import backing_keys, import_keys


class SqlUnitOfWork:
    """A transaction of eventsourcing_sqlalchemy's datastore. The library's own writes join it (its
    transactions nest through a context variable), so events, snapshots and our rows commit as one."""

    def __init__(self, datastore: Any) -> None:
        self._datastore = datastore

    def transaction(self) -> AbstractContextManager[Session]:
        return self._datastore.transaction(commit=True)

    def read(self) -> AbstractContextManager[Session]:
        return self._datastore.transaction(commit=False)


class SqlBackingKeyStore:
    def __init__(self, uow: SqlUnitOfWork) -> None:
        self._uow = uow

    def put(self, tx: Session, key_id: str, material_id: str, wrapped: bytes) -> None:
        tx.execute(backing_keys.insert().values(key_id=key_id, material_id=material_id, wrapped=wrapped))

    def get(self, key_id: str, material_id: str) -> bytes | None:
        with self._uow.read() as session:
            row = session.execute(sa.select(backing_keys.c.wrapped).where(
                backing_keys.c.key_id == key_id, backing_keys.c.material_id == material_id)).first()
        return bytes(row[0]) if row else None

    def delete_key(self, tx: Session, key_id: str) -> None:
        tx.execute(backing_keys.delete().where(backing_keys.c.key_id == key_id))

    def delete_material(self, tx: Session, key_id: str, material_id: str) -> None:
        tx.execute(backing_keys.delete().where(backing_keys.c.key_id == key_id,
                                               backing_keys.c.material_id == material_id))


class SqlImportKeyStore:
    def __init__(self, uow: SqlUnitOfWork) -> None:
        self._uow = uow

    def put(self, tx: Session, import_id: str, key_id: str, wrapped: bytes, expires_at: datetime) -> None:
        tx.execute(import_keys.insert().values(import_id=import_id, key_id=key_id, wrapped=wrapped,
                                               expires_at=expires_at.timestamp()))

    def get(self, import_id: str) -> bytes | None:
        with self._uow.read() as session:
            row = session.execute(sa.select(import_keys.c.wrapped).where(import_keys.c.import_id == import_id)).first()
        return bytes(row[0]) if row else None

    def delete(self, tx: Session, import_id: str) -> None:
        tx.execute(import_keys.delete().where(import_keys.c.import_id == import_id))

    def delete_expired(self, tx: Session, now: datetime) -> int:
        return tx.execute(import_keys.delete().where(import_keys.c.expires_at <= now.timestamp())).rowcount
