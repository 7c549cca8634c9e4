"""What the application needs from the outside, as protocols. ``infrastructure/`` and ``projections/``
implement them; the composition root (``infrastructure/bootstrap.py``) wires them together."""
from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable, Protocol, Sequence

from eventsourcing.application import Recording
from eventsourcing.domain import Aggregate


class Clock(Protocol):
    def now(self) -> datetime: ...


class BatchCommitter(Protocol):
    """Where a server process hands its batches of audit records to be sealed and committed by another
    process (infrastructure/audit_committer.py). Returns once the batch is durable."""

    def commit(self, records: list[dict[str, Any]]) -> None:
        """Raises CommitterRefused (application/audit/trail.py) if the batch could not be made durable, and
        CommitterGone if the committer cannot be reached: whether the batch was committed is then unknown."""

    def close(self) -> None: ...


class BatchChannel(Protocol):
    """The audit committer process as a server's event loop reaches it (decision 267): one batch at a time goes out
    in one write, and its answer comes back on ``loop`` through ``answered``: None once the batch is durable,
    CommitterRefused or CommitterGone as ``BatchCommitter.commit`` raises them. ``send`` never answers before it
    returns, so the caller's bookkeeping is done first."""

    loop: Any  # the asyncio event loop it belongs to: only coroutines on that loop may send
    thread_id: int  # the thread that loop runs in (threading.get_ident())
    max_records: int  # the most records in one batch
    lost: str | None  # why the committer is gone, once it is known to be (nothing sent since)

    def send(self, records: list[dict[str, Any]], answered: Callable[[BaseException | None], None]) -> None: ...

    def close(self) -> None: ...


class UnitOfWork(Protocol):
    """One database transaction shared by the event store and every table written with it."""

    def transaction(self) -> AbstractContextManager[Any]: ...

    def lock_writers(self, tx: Any) -> None:
        """Inside ``tx``: wait for, and hold until it ends, the lock every writer of the event store takes
        (in any process), so what is read next is not changed underneath before commit."""

    def last_version(self, tx: Any, originator_id: Any) -> int | None:
        """The highest stored version of one aggregate, read in ``tx``."""


class AppendTransaction(Protocol):
    """One transaction of ``RecordAppends``, holding the writers' lock from its start."""

    def last_version(self, originator_id: Any) -> int | None: ...

    def stored_state(self, originator_id: Any, version: int) -> tuple[str, bytes] | None:
        """(topic, state) of one stored event, as stored."""

    def insert_rows(self, rows: Sequence[tuple[Any, int, str, bytes]]) -> None:
        """Event-store rows in stored form: originator id, version, topic, state."""

    def insert(self, table: str, columns: Sequence[str], values: Sequence[tuple[Any, ...]]) -> None:
        """Rows of another table (the audit index's) in the same transaction."""


class RecordAppends(Protocol):
    """The audit committer's own transactions (decision 269): the writers' lock, the log's head, the records' rows
    and their index rows (``AuditIndex.add`` takes such a transaction too), and nothing else."""

    def transaction(self) -> AbstractContextManager[AppendTransaction]: ...


@dataclass(frozen=True)
class KeyRow:
    """One row of the key-state view: what crypto operations and DescribeKey read."""

    key_id: str
    arn: str
    account_id: str
    region: str
    key_state: str
    key_spec: str
    key_usage: str
    current_material_id: str | None
    metadata: dict[str, Any]
    policy: str = ""  # the key policy in force (authorization reads it on every call)
    grants: tuple[Any, ...] = ()  # domain.policy.evaluation.Grant of the grants in force
    absent_material_ids: frozenset[str] = frozenset()  # materials deleted or expired (their ciphertexts fail)
    # The aggregate's id, which backing keys are stored under: key_id itself, except for a multi-Region key, whose
    # related keys share key_id (domain.identifiers.key_storage_id). Filled from key_id when not given.
    storage_id: str = ""

    def __post_init__(self) -> None:
        if not self.storage_id:
            object.__setattr__(self, "storage_id", self.key_id)


@dataclass(frozen=True)
class AliasRow:
    alias_name: str
    alias_arn: str
    target_key_id: str
    creation_date: datetime
    last_updated_date: datetime


class KeyStateView(Protocol):
    def project(self, tx: Any, aggregates: Sequence[Aggregate], recordings: Sequence[Recording],
                audit_seq: int | None = None) -> None: ...

    def forget(self, aggregates: Sequence[Aggregate]) -> None: ...

    def get_key(self, storage_id: str) -> KeyRow | None:
        """The row of the key stored as ``storage_id`` (domain.identifiers.key_storage_id)."""

    def list_keys(self, account_id: str, region: str, limit: int, after: str | None) -> list[KeyRow]: ...

    def get_alias(self, account_id: str, region: str, alias_name: str) -> AliasRow | None: ...

    def list_aliases(self, account_id: str, region: str, key_id: str | None, limit: int,
                     after: str | None) -> list[AliasRow]: ...

    def aliases_of(self, account_id: str, region: str, key_id: str) -> list[str]: ...

    def due_key_ids(self, now: datetime) -> list[str]:
        """The storage ids of the keys with a rotation, deletion or expiry due."""


class ImportKeyStore(Protocol):
    """Root-wrapped private keys of outstanding import parameters, destroyed after use or expiry."""

    def put(self, tx: Any, import_id: str, key_id: str, wrapped: bytes, expires_at: datetime) -> None: ...

    def get(self, import_id: str) -> bytes | None: ...

    def delete(self, tx: Any, import_id: str) -> None: ...

    def delete_expired(self, tx: Any, now: datetime) -> int: ...


class BackingKeyStore(Protocol):
    """Root-wrapped key material by (key id, material id). Rows are mutable: deletion shreds them."""

    def put(self, tx: Any, key_id: str, material_id: str, wrapped: bytes) -> None: ...

    def get(self, key_id: str, material_id: str) -> bytes | None: ...

    def delete_key(self, tx: Any, key_id: str) -> None: ...

    def delete_material(self, tx: Any, key_id: str, material_id: str) -> None: ...

    def compact(self) -> None:
        """Removes what deleted rows leave behind in the database files (WAL frames, dead tuples)."""


class RootKeyProvider(Protocol):
    """Where the root key versions live (infrastructure/root_keys.py: file, environment, PKCS#11 token).
    A version is a domain.crypto.wrapping.RootKeyVersion: for a token, a handle that never yields key bytes."""

    name: str

    def load(self, first_start: bool) -> tuple[dict[int, Any], int]:
        """The versions held now and the one the provider calls current; raises when none is usable."""

    def locate(self, version: int) -> Any | None:
        """A version this process does not hold yet (made by another process's rotation), or None."""

    def held_versions(self) -> list[int]: ...

    def add_version(self, version: int) -> Any:
        """Makes ``version`` (or finds it, when a crashed rotation made it already) and returns it."""

    def destroy_version(self, version: int) -> None:
        """Destroys the version in the provider: nothing wrapped only under it can be unwrapped afterwards."""

    def close(self) -> None: ...


class RootWrappedRows(Protocol):
    """Every stored value wrapped under the root key, across the tables that hold them (one registry:
    infrastructure/root_wrapped.py), for root-key rotation and retirement."""

    def count_by_version(self) -> dict[int, int]:
        """How many wrapped values name each root version."""

    def rewrap(self, keyring: Any, version: int, batch: int) -> int:
        """Re-wraps up to ``batch`` values not under ``version`` (each row unwrapped with its own version and
        wrapped under ``version`` with the same AAD, each batch one transaction, each row compare-and-set so a
        concurrent change wins); returns how many it re-wrapped (0: none left)."""

    def replace_check(self, tx: Any, version: int, check_value: bytes) -> None:
        """In ``tx``: the value that proves a root key is version ``version`` of this database's root key."""

    def drop_check(self, tx: Any, version: int) -> None: ...


class AuditIndex(Protocol):
    """Rows that find audit records by key, principal, event name, error code and time (projections/audit_index.py),
    written in the records' own transaction."""

    def add(self, tx: Any, records: Sequence[dict[str, Any]], first_seq: int) -> None: ...
