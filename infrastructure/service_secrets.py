"""Service-wide secrets (e.g. the import-token MAC key): random, root-wrapped, made on first use."""
from __future__ import annotations

import os

import sqlalchemy as sa
from eventsourcing.persistence import IntegrityError

from domain.crypto.wrapping import RootKeyring
from infrastructure.storage import SqlUnitOfWork
from infrastructure.tables import service_secrets

SERVICE_SECRET_PURPOSE = "service-secret"
ROW_KEY = "ledger-row-key"  # tags every stored event and read-model row (domain/audit/seals.py)


def has_service_secret(uow: SqlUnitOfWork, name: str) -> bool:
    with uow.read() as session:
        return session.execute(sa.select(service_secrets.c.name).where(service_secrets.c.name == name)).first() is not None


def service_secret(uow: SqlUnitOfWork, keyring: RootKeyring, name: str, size: int = 32) -> bytes:
    for _ in range(2):  # a concurrent first start may insert it first; then read theirs
        with uow.read() as session:
            row = session.execute(sa.select(service_secrets.c.wrapped).where(service_secrets.c.name == name)).first()
        if row is not None:
            return keyring.unwrap(bytes(row[0]), purpose=SERVICE_SECRET_PURPOSE, key_id=name)
        secret = os.urandom(size)
        try:
            with uow.transaction() as tx:
                tx.execute(service_secrets.insert().values(
                    name=name, wrapped=keyring.wrap(secret, purpose=SERVICE_SECRET_PURPOSE, key_id=name)))
            return secret
        except IntegrityError:
            continue
    raise RuntimeError(f"could not create service secret {name}")
