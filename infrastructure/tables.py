"""Infrastructure tables: secrets at rest (always root-wrapped) and the root-key check values."""
from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

# Mutable on purpose: deleting a key or its imported material deletes these rows (crypto-shredding).
backing_keys = sa.Table(
    "backing_keys", metadata,
    sa.Column("key_id", sa.String(36), primary_key=True),
    sa.Column("material_id", sa.String(32), primary_key=True),
    sa.Column("wrapped", sa.LargeBinary, nullable=False),
)

# Private halves of GetParametersForImport's wrapping keys, root-wrapped; deleted after use or expiry.
import_keys = sa.Table(
    "import_keys", metadata,
    sa.Column("import_id", sa.String(32), primary_key=True),
    sa.Column("key_id", sa.String(36), nullable=False),
    sa.Column("wrapped", sa.LargeBinary, nullable=False),
    sa.Column("expires_at", sa.Float, nullable=False, index=True),
)

# Service-wide secrets (the import-token MAC key), root-wrapped.
service_secrets = sa.Table(
    "service_secrets", metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("wrapped", sa.LargeBinary, nullable=False),
)

# Custom key store passwords (the token's user PIN of an AWS_CLOUDHSM store), root-wrapped; deleted with the store.
custom_key_store_secrets = sa.Table(
    "custom_key_store_secrets", metadata,
    sa.Column("store_id", sa.String(64), primary_key=True),
    sa.Column("wrapped", sa.LargeBinary, nullable=False),
)

# Forward-only offset of the service clock. Only tests and operator commands with direct database
# access write it (`keyledger clock advance`); no API can.
clock_offset = sa.Table(
    "clock_offset", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("offset_seconds", sa.Float, nullable=False),
)

access_keys = sa.Table(
    "access_keys", metadata,
    sa.Column("access_key_id", sa.String(128), primary_key=True),
    sa.Column("principal_arn", sa.String(2048), nullable=False),
    sa.Column("account_id", sa.String(12), nullable=False),
    sa.Column("wrapped_secret", sa.LargeBinary, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    # HMAC of the row (domain/audit/seals.py: RowSeal): owner, account and status cannot be changed in place.
    sa.Column("row_tag", sa.String(64)),
)

# XKS proxy credentials (keyledger serving the XKS proxy API): the secret root-wrapped, the row tagged like
# access_keys (account, principal and successor cannot be changed in place); deleted with the credential.
xks_credentials = sa.Table(
    "xks_credentials", metadata,
    sa.Column("access_key_id", sa.String(32), primary_key=True),
    sa.Column("account_id", sa.String(12), nullable=False),
    sa.Column("principal_arn", sa.String(2048), nullable=False),
    sa.Column("wrapped_secret", sa.LargeBinary, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("replaces", sa.String(32)),
    sa.Column("replaced_by", sa.String(32)),
    sa.Column("row_tag", sa.String(64), nullable=False),
)

# One row per root-key version: a known value wrapped under it. A root key that cannot unwrap its row
# is the wrong key for this database, and the service starts sealed instead of writing under it.
root_key_checks = sa.Table(
    "root_key_checks", metadata,
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("check_value", sa.LargeBinary, nullable=False),
)

# One row the readiness probe rewrites (infrastructure/health_probe.py): proof the database takes a write.
health_probe = sa.Table(
    "health_probe", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("checked_at", sa.Float, nullable=False),
)


def add_missing_columns(engine: sa.Engine, table: sa.Table) -> list[str]:
    """Adds the nullable columns a table written by an older version lacks (these tables hold secrets and
    credentials: they cannot be rebuilt from events the way read models are)."""
    inspector = sa.inspect(engine)
    if not inspector.has_table(table.name):
        return []
    present = {column["name"] for column in inspector.get_columns(table.name)}
    added = []
    with engine.begin() as conn:
        for column in table.columns:
            if column.name not in present and column.nullable:
                kind = column.type.compile(dialect=engine.dialect)
                conn.execute(sa.text(f'ALTER TABLE {table.name} ADD COLUMN {column.name} {kind}'))
                added.append(column.name)
    return added

# One row per archived audit segment (`keyledger audit archive`, docs/audit.md "Retention"): the records it holds
# were deleted from the event store in the transaction that wrote this row. The signed manifest says what the
# segment is; what vouches for it is the chain and the checkpoints, so this row only says where the database's own
# records begin and which segments an auditor needs.
audit_archive = sa.Table(
    "audit_archive", metadata,
    sa.Column("first_seq", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("last_seq", sa.BigInteger, nullable=False, unique=True),
    sa.Column("last_position", sa.BigInteger, nullable=False),
    sa.Column("name", sa.String(64), nullable=False),
    sa.Column("manifest", sa.Text, nullable=False),  # the signed manifest, as in the file
    sa.Column("archived_at", sa.Float, nullable=False),
)
