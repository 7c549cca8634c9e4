"""Access keys: an id, a root-wrapped secret and the principal that owns them (a user, a role or an
account root). What a caller acts as follows from the owner (domain/principal_arns.acting_arn).

Rows are written in the transaction of the Principal change that records them (events carry the id
only). ``lookup`` caches for ``cache_seconds``, so a key disabled or deleted by another process stops
working within that time, and at once in the process that changed it (``forget``)."""
from __future__ import annotations

import json
import secrets
import string
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import sqlalchemy as sa

from application.principals.ports import AccessKeyRow
from application.ttl_cache import TtlCache
from domain.audit.seals import RowSeal
from domain.crypto.wrapping import RootKeyring
from domain.errors import IamValidationError, TamperedStateError
from domain.principals.arns import acting_arn, parse_principal_arn
from infrastructure.storage import SqlUnitOfWork
from infrastructure.tables import access_keys
from projections.principal_tables import principals
from projections.row_checks import at_head

SECRET_PURPOSE = "access-key-secret"
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
    def __init__(self, uow: SqlUnitOfWork, keyring: RootKeyring, seal: RowSeal, cache_seconds: float = 1.0) -> None:
        self._uow = uow
        self._keyring = keyring
        self._seal = seal  # owner, account and status are tagged: a row changed in place fails closed
        self._cache: TtlCache[Credential | None] = TtlCache(cache_seconds)

    def create(self, access_key_id: str, secret: str, principal_arn: str, account_id: str) -> None:
        with self._uow.transaction() as tx:
            self.put(tx, access_key_id, secret, principal_arn, account_id, datetime.now(timezone.utc))

    def put(self, tx: Any, access_key_id: str, secret: str, principal_arn: str, account_id: str,
            created: datetime) -> None:
        wrapped = self._keyring.wrap(secret.encode(), purpose=SECRET_PURPOSE, key_id=access_key_id)
        tx.execute(access_keys.insert().values(self._seal.sealed(access_keys.name, dict(
            access_key_id=access_key_id, principal_arn=principal_arn, account_id=account_id,
            wrapped_secret=wrapped, status="Active", created_at=created.timestamp()))))

    def set_status(self, tx: Any, access_key_id: str, status: str) -> None:
        row = tx.execute(sa.select(access_keys).where(access_keys.c.access_key_id == access_key_id)).first()
        if row is None:
            return
        self._checked(row)  # a forged row is not re-tagged with its forgery
        values = {**row._mapping, "status": status}
        tx.execute(access_keys.update().where(access_keys.c.access_key_id == access_key_id).values(
            status=status, row_tag=self._seal.tag(access_keys.name, values)))

    def seal_untagged(self) -> int:
        """Rows written before access keys were tagged get their tag (once, at the upgrade that added it)."""
        with self._uow.transaction() as tx:
            rows = tx.execute(sa.select(access_keys).where(access_keys.c.row_tag.is_(None))).all()
            for row in rows:
                tx.execute(access_keys.update().where(access_keys.c.access_key_id == row.access_key_id).values(
                    row_tag=self._seal.tag(access_keys.name, row._mapping)))
        return len(rows)

    def _checked(self, row: Any) -> Any:
        if not self._seal.matches(access_keys.name, row._mapping):
            raise TamperedStateError(f"access key {row.access_key_id}")
        return row

    def _owner_agrees(self, session: Any, row: Any) -> None:
        """The row's tag proves the service wrote it, not that it is still true: an older copy put back (a key
        made Inactive, or deleted, brought back Active) matches its tag too. So the owner's principal, as its
        newest stored event left it (projections/principal_view.py: at_head), must hold this key, Active
        (decision 190). Once per cache fill."""
        what = f"access key {row.access_key_id}"
        try:
            owner = parse_principal_arn(row.principal_arn).aggregate_id
        except IamValidationError:
            raise TamperedStateError(what) from None
        found = at_head(session, sa.select(principals).where(principals.c.principal_id == str(owner)),
                        self._uow.last_version, lambda r: owner, lambda r: what)
        if found is None or not self._seal.matches(principals.name, found._mapping) or \
                json.loads(found.access_keys_json).get(row.access_key_id) != "Active":
            raise TamperedStateError(what)

    def delete(self, tx: Any, access_key_id: str) -> None:
        tx.execute(access_keys.delete().where(access_keys.c.access_key_id == access_key_id))

    def forget(self, access_key_id: str) -> None:
        self._cache.drop(access_key_id)

    def exists(self, access_key_id: str) -> bool:
        with self._uow.read() as session:
            return session.execute(sa.select(access_keys.c.access_key_id).where(
                access_keys.c.access_key_id == access_key_id)).first() is not None

    def count(self) -> int:
        with self._uow.read() as session:
            return session.execute(sa.select(sa.func.count()).select_from(access_keys)).scalar_one()

    def get(self, access_key_id: str) -> AccessKeyRow | None:
        rows = self._rows(access_keys.c.access_key_id == access_key_id)
        return rows[0] if rows else None

    def rows(self, principal_arn: str | None = None, account_id: str | None = None) -> list[AccessKeyRow]:
        where = [c for c in (access_keys.c.principal_arn == principal_arn if principal_arn else None,
                             access_keys.c.account_id == account_id if account_id else None) if c is not None]
        return self._rows(*where)

    def _rows(self, *where: Any) -> list[AccessKeyRow]:
        c = access_keys.c
        query = sa.select(access_keys).where(*where)
        with self._uow.read() as session:
            found = [self._checked(r) for r in
                     session.execute(query.order_by(c.account_id, c.principal_arn, c.access_key_id)).all()]
        return [AccessKeyRow(r.access_key_id, r.principal_arn, r.account_id, r.status,
                             datetime.fromtimestamp(r.created_at, timezone.utc)) for r in found]

    def lookup(self, access_key_id: str) -> Credential | None:
        """The active credential for a request's signature check (None: unknown, inactive or deleted)."""
        return self._cache.get(access_key_id, lambda: self._load(access_key_id))

    def _load(self, access_key_id: str) -> Credential | None:
        with self._uow.read() as session:
            row = session.execute(sa.select(access_keys).where(
                access_keys.c.access_key_id == access_key_id, access_keys.c.status == "Active")).first()
            if row is None:
                return None
            self._checked(row)
            self._owner_agrees(session, row)
        secret = self._keyring.unwrap(bytes(row.wrapped_secret), purpose=SECRET_PURPOSE, key_id=access_key_id).decode()
        return Credential(access_key_id, acting_arn(row.principal_arn, access_key_id), row.account_id, secret)
