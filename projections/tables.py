"""Tables of the read models. They are written in the same transaction as the events they reflect."""
from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

key_state = sa.Table(
    "key_state", metadata,
    # The key's aggregate id (domain.identifiers.key_storage_id): its own id, or for a multi-Region key the id of
    # its aggregate in this Region, since related keys in several Regions share one key_id (decision 155).
    sa.Column("storage_id", sa.String(36), primary_key=True),
    sa.Column("key_id", sa.String(36), nullable=False),
    sa.Column("account_id", sa.String(12), nullable=False),
    sa.Column("region", sa.String(32), nullable=False),
    sa.Column("arn", sa.String(256), nullable=False),
    sa.Column("key_state", sa.String(32), nullable=False),
    sa.Column("key_spec", sa.String(32), nullable=False),
    sa.Column("key_usage", sa.String(32), nullable=False),
    sa.Column("current_material_id", sa.String(32)),
    sa.Column("creation_date", sa.Float, nullable=False),
    # When the service must act on its own: the maintenance run selects keys by these.
    sa.Column("next_rotation_date", sa.Float, index=True),
    sa.Column("deletion_date", sa.Float, index=True),
    sa.Column("material_valid_to", sa.Float, index=True),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("metadata_json", sa.Text, nullable=False),
    sa.Column("policy", sa.Text, nullable=False),
    sa.Column("grants_json", sa.Text, nullable=False),
    # HMAC of the row under the ledger's row key (domain/audit/seals.py: RowSeal): authorization reads it.
    sa.Column("row_tag", sa.String(64)),
    sa.Index("key_state_scope_idx", "account_id", "region", "key_id"),
)

aliases = sa.Table(
    "key_aliases", metadata,
    sa.Column("account_id", sa.String(12), primary_key=True),
    sa.Column("region", sa.String(32), primary_key=True),
    sa.Column("alias_name", sa.String(256), primary_key=True),
    sa.Column("alias_arn", sa.String(512), nullable=False),
    sa.Column("target_key_id", sa.String(36), nullable=False, index=True),
    sa.Column("creation_date", sa.Float, nullable=False),
    sa.Column("last_updated_date", sa.Float, nullable=False),
    # The alias aggregate and its version when the row was written: a read compares them with the newest stored
    # event of that aggregate, so an older (validly tagged) copy of the row put back fails closed (decision 190).
    sa.Column("alias_id", sa.String(36), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("row_tag", sa.String(64)),
)

key_event_index = sa.Table(
    "key_event_index", metadata,
    sa.Column("key_id", sa.String(36), primary_key=True),
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("event_type", sa.String(64), nullable=False),
    sa.Column("timestamp", sa.Float, nullable=False),
    sa.Column("notification_id", sa.BigInteger, nullable=False),
    # The seq of the audit record that names this event (the record its change committed with, stored right
    # after its events): the timeline's actor in one index lookup, not a read of the log.
    sa.Column("audit_seq", sa.BigInteger),
    sa.Index("key_event_index_time_idx", "timestamp"),
)

# Every alias event, one row each, written in the events' transaction: "what did alias/app name at T" and "which
# aliases named key K at T" by index, not by reading the event store (issue 13). target_key_id is None once the
# alias was deleted. Not tagged: what it points at is a key loaded (and checked) from the event store.
alias_event_index = sa.Table(
    "alias_event_index", metadata,
    sa.Column("alias_id", sa.String(36), primary_key=True),
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("account_id", sa.String(12), nullable=False),
    sa.Column("region", sa.String(32), nullable=False),
    sa.Column("alias_name", sa.String(256), nullable=False),
    sa.Column("target_key_id", sa.String(36)),
    sa.Column("timestamp", sa.Float, nullable=False),
    sa.Column("notification_id", sa.BigInteger, nullable=False),
    sa.Index("alias_event_index_name_idx", "account_id", "region", "alias_name", "timestamp"),
    sa.Index("alias_event_index_target_idx", "target_key_id", "timestamp"),
    sa.Index("alias_event_index_time_idx", "timestamp"),
)

# Grants in force, one row each: ListGrants reads them by key, ListRetirableGrants by retiring principal
# across every key of a region. Written from the grant events in the events' transaction.
key_grants = sa.Table(
    "key_grants", metadata,
    sa.Column("grant_id", sa.String(64), primary_key=True),
    sa.Column("key_id", sa.String(36), nullable=False),  # the key's storage id (domain.identifiers.key_storage_id)
    sa.Column("account_id", sa.String(12), nullable=False),
    sa.Column("region", sa.String(32), nullable=False),
    sa.Column("key_arn", sa.String(256), nullable=False),
    sa.Column("name", sa.String(256)),
    sa.Column("grantee_principal", sa.String(256), nullable=False),
    sa.Column("retiring_principal", sa.String(256)),
    sa.Column("operations_json", sa.Text, nullable=False),
    sa.Column("constraints_json", sa.Text),
    sa.Column("issuing_account", sa.String(256), nullable=False),
    sa.Column("creation_date", sa.Float, nullable=False),
    sa.Column("row_tag", sa.String(64)),
    sa.Index("key_grants_key_idx", "key_id", "grant_id"),
    sa.Index("key_grants_retiring_idx", "region", "retiring_principal", "grant_id"),
)

# Custom key stores (docs/custom-key-stores.md): what DescribeCustomKeyStores answers, and whether each is
# connected, which every call on one of a store's keys reads. Tagged like key_state.
custom_key_stores = sa.Table(
    "custom_key_stores", metadata,
    sa.Column("store_id", sa.String(64), primary_key=True),
    sa.Column("account_id", sa.String(12), nullable=False),
    sa.Column("region", sa.String(32), nullable=False),
    sa.Column("name", sa.String(256), nullable=False),
    sa.Column("store_type", sa.String(32), nullable=False),
    sa.Column("connection_state", sa.String(16), nullable=False),
    sa.Column("cluster_id", sa.String(24), index=True),
    sa.Column("entry_json", sa.Text, nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("row_tag", sa.String(64)),
    sa.Index("custom_key_stores_scope_idx", "account_id", "region", "store_id"),
)

# One row per audit record and key it names (a record naming no key has one row, key_id None): /v1/audit and
# `audit export` find records by key, principal, event name, error code and time through these indexes and read
# only the records of the page (issue 13). Written in the records' own transaction; derived from the records,
# which the chain covers, so it is not tagged: a forged row can only point at a record, which is then read and
# filtered again.
audit_index = sa.Table(
    "audit_index", metadata,
    sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("slot", sa.SmallInteger, primary_key=True, autoincrement=False),
    sa.Column("at", sa.BigInteger, nullable=False),  # eventTime, epoch seconds
    sa.Column("account_id", sa.String(12)),  # recipientAccountId
    sa.Column("caller_account", sa.String(12)),  # userIdentity.accountId
    sa.Column("principal", sa.String(256)),  # userIdentity.arn
    sa.Column("event_name", sa.String(128)),
    sa.Column("error_code", sa.String(128)),
    sa.Column("key_id", sa.String(36)),
    sa.Index("audit_index_key_idx", "key_id", "seq"),
    sa.Index("audit_index_principal_idx", "principal", "seq"),
    sa.Index("audit_index_event_idx", "event_name", "seq"),
    # Only records that failed: nearly every record has none, and a search by error code names one (decision 225).
    sa.Index("audit_index_error_idx", "error_code", "seq", sqlite_where=sa.text("error_code IS NOT NULL"),
             postgresql_where=sa.text("error_code IS NOT NULL")),
    sa.Index("audit_index_time_idx", "at", "seq"),
    sqlite_with_rowid=False,  # the primary key is the table's order: no rowid and no second copy of (seq, slot)
)

# Where the archived records that named events were (`keyledger audit archive`, docs/audit.md "Retention"): the
# store position each had and its seq. Key events stay when their records are archived; replay finds the seq of
# the record that committed them (key_event_index.audit_seq) here, since the record's row is gone. Written in the
# archive's transaction; one row per archived key change, not per record.
archived_claims = sa.Table(
    "audit_archived_claims", metadata,
    sa.Column("position", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("seq", sa.BigInteger, nullable=False),
)
