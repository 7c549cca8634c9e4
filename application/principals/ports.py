"""What the principal services need from the outside: the principals read model (a projection written
with each principal change) and the access-key secret store (root-wrapped rows beside the event store)."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from domain.principals.principal import Principal


@dataclass(frozen=True)
class PrincipalRow:
    """A principal as it is now: one row of the principals read model."""

    principal_id: str
    arn: str
    account_id: str
    kind: str  # root | user | role
    name: str
    path: str
    unique_id: str
    created: datetime | None  # None: an account root that was never recorded
    policies: dict[str, str] = field(default_factory=dict)  # policy name -> document
    access_keys: dict[str, str] = field(default_factory=dict)  # access key id -> Active | Inactive


@dataclass(frozen=True)
class AccessKeyRow:
    """An access key without its secret."""

    access_key_id: str
    principal_arn: str  # the owner: a user, a role or an account root
    account_id: str
    status: str
    created: datetime


class PrincipalReadModel(Protocol):
    def project(self, tx: Any, principal: Principal) -> None:
        """Inside the change's transaction, before its events are saved: rows for its pending events."""

    def row(self, principal_id: str) -> PrincipalRow | None: ...

    def rows(self, account_id: str | None = None) -> list[PrincipalRow]: ...

    def version_at(self, principal_id: str, at: datetime) -> int | None: ...

    def existing_at(self, account_id: str, at: datetime) -> list[str]:
        """ARNs of the principals of the account that existed at ``at`` (created, not yet deleted)."""


class AccessKeyStore(Protocol):
    """Secrets are root-wrapped at rest and never leave this store except to the request's signature check."""

    def put(self, tx: Any, access_key_id: str, secret: str, principal_arn: str, account_id: str,
            created: datetime) -> None: ...

    def set_status(self, tx: Any, access_key_id: str, status: str) -> None: ...

    def delete(self, tx: Any, access_key_id: str) -> None: ...

    def forget(self, access_key_id: str) -> None:
        """After a change commits: this process stops using what it cached at once."""

    def get(self, access_key_id: str) -> AccessKeyRow | None: ...

    def rows(self, principal_arn: str | None = None, account_id: str | None = None) -> list[AccessKeyRow]: ...
