"""Access keys: an id, a root-wrapped secret and the principal they act for."""
from __future__ import annotations

import secrets
import string
import threading
import time
from dataclasses import dataclass, field

import sqlalchemy as sa

from domain.wrapping import RootKeyring
from infrastructure.storage import SqlUnitOfWork
from infrastructure.tables import access_keys

_SECRET_PURPOSE = "access-key-secret"
_ID_ALPHABET = string.ascii_uppercase + "234567"


@dataclass(frozen=True)
class Credential:
    access_key_id: str
    principal_arn: str
    account_id: str
    secret: str = field(repr=False)


def new_access_key() -> tuple[str, str]:
    key_id = "AKIA" + "".join(secrets.choice(_ID_ALPHABET) for _ in range(16))
    return key_id, secrets.token_urlsafe(30)[:40]


class CredentialStore:
    def __init__(self, uow: SqlUnitOfWork, keyring: RootKeyring) -> None:
        self._uow = uow
        self._keyring = keyring
        self._cache: dict[str, Credential] = {}
        self._lock = threading.Lock()

    def create(self, access_key_id: str, secret: str, principal_arn: str, account_id: str) -> None:
        wrapped = self._keyring.wrap(secret.encode(), purpose=_SECRET_PURPOSE, key_id=access_key_id)
        with self._uow.transaction() as tx:
            tx.execute(access_keys.insert().values(
                access_key_id=access_key_id, principal_arn=principal_arn, account_id=account_id,
                wrapped_secret=wrapped, status="Active", created_at=time.time()))

    def exists(self, access_key_id: str) -> bool:
        with self._uow.read() as session:
            return session.execute(sa.select(access_keys.c.access_key_id).where(
                access_keys.c.access_key_id == access_key_id)).first() is not None

    def count(self) -> int:
        with self._uow.read() as session:
            return session.execute(sa.select(sa.func.count()).select_from(access_keys)).scalar_one()

    def lookup(self, access_key_id: str) -> Credential | None:
        with self._lock:
            cached = self._cache.get(access_key_id)
        if cached is not None:
            return cached
        with self._uow.read() as session:
            row = session.execute(sa.select(access_keys).where(
                access_keys.c.access_key_id == access_key_id, access_keys.c.status == "Active")).first()
        if row is None:
            return None
        secret = self._keyring.unwrap(bytes(row.wrapped_secret), purpose=_SECRET_PURPOSE, key_id=access_key_id).decode()
        credential = Credential(access_key_id, row.principal_arn, row.account_id, secret)
        with self._lock:
            self._cache[access_key_id] = credential
        return credential
