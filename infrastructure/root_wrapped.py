"""The one registry of values wrapped under the root key, for root-key rotation and retirement.

A table that stores a root-wrapped value must be listed here with how its row names the AAD it was wrapped
with (purpose, key id, material id); tests/unit/test_root_wrapped_registry.py fails for a table with a
LargeBinary column that is neither listed nor declared free of root-wrapped values.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any, Callable

import sqlalchemy as sa

from application.keys.import_service import IMPORT_KEY_PURPOSE
from application.keystores.ports import KEY_STORE_PASSWORD_PURPOSE
from application.xks.ports import XKS_SECRET_PURPOSE
from domain.crypto.wrapping import RootKeyring, UnwrapError
from domain.keys.material import BACKING_KEY_PURPOSE
from infrastructure.credentials import SECRET_PURPOSE
from infrastructure.service_secrets import SERVICE_SECRET_PURPOSE
from infrastructure.storage import SqlUnitOfWork
from infrastructure.tables import (
    access_keys,
    backing_keys,
    custom_key_store_secrets,
    import_keys,
    root_key_checks,
    service_secrets,
    xks_credentials,
)


@dataclass(frozen=True)
class RootWrappedColumn:
    table: sa.Table
    column: str
    aad: Callable[[Any], tuple[str, str, str]]  # row -> (purpose, key id, material id)

    @property
    def keys(self) -> list[sa.Column]:
        return list(self.table.primary_key.columns)


REGISTRY: list[RootWrappedColumn] = [
    RootWrappedColumn(backing_keys, "wrapped", lambda r: (BACKING_KEY_PURPOSE, r.key_id, r.material_id)),
    RootWrappedColumn(access_keys, "wrapped_secret", lambda r: (SECRET_PURPOSE, r.access_key_id, "")),
    RootWrappedColumn(service_secrets, "wrapped", lambda r: (SERVICE_SECRET_PURPOSE, r.name, "")),
    RootWrappedColumn(import_keys, "wrapped", lambda r: (IMPORT_KEY_PURPOSE, r.key_id, r.import_id)),
    RootWrappedColumn(custom_key_store_secrets, "wrapped", lambda r: (KEY_STORE_PASSWORD_PURPOSE, r.store_id, "")),
    RootWrappedColumn(xks_credentials, "wrapped_secret", lambda r: (XKS_SECRET_PURPOSE, r.access_key_id, "")),
]
# Binary columns that hold no root-wrapped value, or one per version on purpose (the checks are never re-wrapped).
NOT_ROOT_WRAPPED = {("root_key_checks", "check_value")}


def register(column: RootWrappedColumn) -> None:
    """For tables defined elsewhere (custom key stores' passwords): listed once, at import."""
    if all((c.table.name, c.column) != (column.table.name, column.column) for c in REGISTRY):
        REGISTRY.append(column)


def _prefix(version: int) -> bytes:
    return struct.pack(">I", version)


class SqlRootWrappedRows:
    """application/ports.py: RootWrappedRows over the tables in REGISTRY."""

    def __init__(self, uow: SqlUnitOfWork) -> None:
        self._uow = uow

    def count_by_version(self) -> dict[int, int]:
        counts: dict[int, int] = {}
        with self._uow.read() as session:
            for entry in REGISTRY:
                column = entry.table.c[entry.column]
                prefix = sa.func.substr(column, 1, 4)
                for raw, n in session.execute(sa.select(prefix, sa.func.count()).group_by(prefix)):
                    if raw is not None and len(bytes(raw)) == 4:
                        version = struct.unpack(">I", bytes(raw))[0]
                        counts[version] = counts.get(version, 0) + n
        return counts

    def rewrap(self, keyring: RootKeyring, version: int, batch: int) -> int:
        done = 0
        for entry in REGISTRY:
            if done >= batch:
                break
            column = entry.table.c[entry.column]
            with self._uow.transaction() as tx:
                self._uow.lock_writers(tx)  # SQLite: take the write lock before reading, not halfway through
                rows = tx.execute(sa.select(*entry.keys, column, *[c for c in entry.table.c if c.name in _AAD_COLUMNS
                                                                   and c not in entry.keys])
                                  .where(sa.func.substr(column, 1, 4) != _prefix(version))
                                  .order_by(*entry.keys).limit(batch - done)).all()
                for row in rows:
                    old = bytes(getattr(row, entry.column))
                    purpose, key_id, material_id = entry.aad(row)
                    try:
                        secret = keyring.unwrap(old, purpose=purpose, key_id=key_id, material_id=material_id)
                    except UnwrapError:
                        # Not ours to fix here: a row that does not authenticate stays as it is, and retirement
                        # of its version is refused while it is there.
                        raise UnwrapError(f"a value in {entry.table.name} does not unwrap; rotation stopped") from None
                    new = keyring.wrap(secret, purpose=purpose, key_id=key_id, material_id=material_id, version=version)
                    where = [k == getattr(row, k.name) for k in entry.keys] + [column == old]
                    done += tx.execute(entry.table.update().where(*where).values({entry.column: new})).rowcount
        return done

    @staticmethod
    def replace_check(tx: Any, version: int, check_value: bytes) -> None:
        tx.execute(root_key_checks.delete().where(root_key_checks.c.version == version))
        tx.execute(root_key_checks.insert().values(version=version, check_value=check_value))

    @staticmethod
    def drop_check(tx: Any, version: int) -> None:
        tx.execute(root_key_checks.delete().where(root_key_checks.c.version == version))


_AAD_COLUMNS = {"key_id", "material_id", "access_key_id", "name", "import_id", "store_id"}
