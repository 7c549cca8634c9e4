"""XKS proxy credentials at rest: one row per credential, the secret wrapped under the root key (purpose
``xks-proxy-credential-secret``, AAD key id = the access key id), the row tagged (domain/audit/seals.py) so an
account, principal or successor changed in the database fails closed. Rows are written in the transaction of
the XksCredential change that records them. ``lookup`` caches for ``cache_seconds``: a credential deleted by
another process stops working within that time, at once in the process that deleted it."""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import sqlalchemy as sa
from eventsourcing.utils import get_topic

from application.ttl_cache import TtlCache
from application.xks.ports import XKS_SECRET_PURPOSE, XksCredentialRow, XksSigningCredential
from domain.audit.seals import RowSeal
from domain.crypto.wrapping import RootKeyring
from domain.errors import TamperedStateError
from domain.xks.credential import XksCredential, credential_uuid
from infrastructure.storage import SqlUnitOfWork
from infrastructure.tables import xks_credentials

_DELETED = get_topic(XksCredential.Deleted)


class SqlXksCredentialStore:
    """application/xks/ports.py: XksCredentialStore."""

    def __init__(self, uow: SqlUnitOfWork, keyring: RootKeyring, seal: RowSeal, cache_seconds: float = 1.0) -> None:
        self._uow = uow
        self._keyring = keyring
        self._seal = seal
        self._cache: TtlCache[XksSigningCredential | None] = TtlCache(cache_seconds)

    def put(self, tx: Any, row: XksCredentialRow, secret: str) -> None:
        wrapped = self._keyring.wrap(secret.encode("utf-8"), purpose=XKS_SECRET_PURPOSE, key_id=row.access_key_id)
        tx.execute(xks_credentials.insert().values(self._seal.sealed(xks_credentials.name, dict(
            access_key_id=row.access_key_id, account_id=row.account_id, principal_arn=row.principal_arn,
            wrapped_secret=wrapped, created_at=row.created.timestamp(), replaces=row.replaces, replaced_by=None))))

    def mark_replaced(self, tx: Any, access_key_id: str, replaced_by: str) -> None:
        found = tx.execute(sa.select(xks_credentials).where(xks_credentials.c.access_key_id == access_key_id)).first()
        if found is None:
            return
        self._checked(found)  # a forged row is not re-tagged with its forgery
        values = {**found._mapping, "replaced_by": replaced_by}
        tx.execute(xks_credentials.update().where(xks_credentials.c.access_key_id == access_key_id).values(
            replaced_by=replaced_by, row_tag=self._seal.tag(xks_credentials.name, values)))

    def delete(self, tx: Any, access_key_id: str) -> None:
        tx.execute(xks_credentials.delete().where(xks_credentials.c.access_key_id == access_key_id))

    def forget(self, access_key_id: str) -> None:
        self._cache.drop(access_key_id)

    def rows(self, account_id: str | None = None) -> list[XksCredentialRow]:
        c = xks_credentials.c
        query = sa.select(xks_credentials).order_by(c.account_id, c.created_at, c.access_key_id)
        if account_id is not None:
            query = query.where(c.account_id == account_id)
        with self._uow.read() as session:
            found = [self._checked(r) for r in session.execute(query).all()]
        return [XksCredentialRow(r.access_key_id, r.account_id, r.principal_arn,
                                 datetime.fromtimestamp(r.created_at, timezone.utc), r.replaces, r.replaced_by)
                for r in found]

    def lookup(self, access_key_id: str) -> XksSigningCredential | None:
        return self._cache.get(access_key_id, lambda: self._load(access_key_id))

    def _load(self, access_key_id: str) -> XksSigningCredential | None:
        with self._uow.read() as session:
            row = session.execute(sa.select(xks_credentials).where(
                xks_credentials.c.access_key_id == access_key_id)).first()
            if row is None:
                return None
            self._checked(row)
            # A deleted credential's row put back still matches its tag: its aggregate's newest event says it is
            # gone (decision 190). The row is deleted in the Deleted event's own transaction.
            if self._uow.last_topic(session, credential_uuid(access_key_id)) in (None, _DELETED):
                raise TamperedStateError(f"XKS proxy credential {access_key_id}")
        secret = self._keyring.unwrap(bytes(row.wrapped_secret), purpose=XKS_SECRET_PURPOSE,
                                      key_id=access_key_id).decode("utf-8")
        return XksSigningCredential(access_key_id, row.account_id, row.principal_arn, secret)

    def _checked(self, row: Any) -> Any:
        if not self._seal.matches(xks_credentials.name, row._mapping):
            raise TamperedStateError(f"XKS proxy credential {row.access_key_id}")
        return row
