"""Who a caller is, as authorization asks it: does a principal exist, and which identity policies apply
to it, now or at a past moment.

Account roots exist for every 12-digit account and have no identity policies. A role session
(``arn:aws:sts::<acct>:assumed-role/<role>/<session>``, what a role's access key acts as) exists while its
role does and is governed by the role's policies. Current answers are cached for ``cache_seconds`` (a change
made by another process shows within that time; one made here shows at once, see ``forget``).
"""
from __future__ import annotations

import uuid
from datetime import datetime
from functools import lru_cache
from typing import Any

from eventsourcing.application import AggregateNotFoundError

from application.ledger import KeyLedger
from application.principals.ports import PrincipalReadModel, PrincipalRow
from application.ttl_cache import TtlCache
from domain.errors import IamValidationError
from domain.policy.document import PolicyDocument
from domain.principals.arns import ROOT, SESSION, PrincipalName, parse_principal_arn
from domain.principals.principal import Principal, parse_identity_policy


@lru_cache(maxsize=4096)  # asked on every call with the caller's ARN
def _name(principal_arn: str) -> PrincipalName | None:
    try:
        return parse_principal_arn(principal_arn)
    except IamValidationError:
        return None  # "*", a service principal, an account id: not a principal with identity policies


def _is(name: PrincipalName, arn: str, kind: str, role_name: str) -> bool:
    """Whether the principal called ``name`` is the one stored (``arn``, ``kind``, ``role_name``): a user or
    role by its exact ARN, a session by its role's name (a session ARN carries no path)."""
    if name.kind == SESSION:
        return kind == "role" and role_name == name.name
    return arn == name.arn


class PrincipalDirectory:
    def __init__(self, ledger: KeyLedger, view: PrincipalReadModel, cache_seconds: float = 1.0) -> None:
        self._ledger = ledger
        self._view = view
        self._current: TtlCache[tuple[PrincipalRow | None, list[PolicyDocument]]] = TtlCache(cache_seconds)

    def forget(self, principal_id: uuid.UUID | str) -> None:
        self._current.drop(str(principal_id))

    # -- now -------------------------------------------------------------------------------------

    def _load(self, principal_id: str) -> tuple[PrincipalRow | None, list[PolicyDocument]]:
        row = self._view.row(principal_id)
        if row is None:
            return None, []
        # Stored policies were checked when attached. If one stopped parsing (a stricter parser), this
        # raises rather than drop it: a dropped Deny would widen access.
        return row, [parse_identity_policy(text, name) for name, text in sorted(row.policies.items())]

    def _current_of(self, name: PrincipalName) -> tuple[PrincipalRow | None, list[PolicyDocument]]:
        principal_id = name.aggregate_key
        row, documents = self._current.get(principal_id, lambda: self._load(principal_id))
        if row is None or not _is(name, row.arn, row.kind, row.name):
            return None, []
        return row, documents

    def get(self, principal_arn: str) -> PrincipalRow | None:
        """The stored principal (for a session, its role); None for a root that never had a key."""
        name = _name(principal_arn)
        return self._current_of(name)[0] if name else None

    def exists(self, principal_arn: str) -> bool:
        name = _name(principal_arn)
        if name is None:
            return False
        return name.kind == ROOT or self._current_of(name)[0] is not None

    def identity_policies(self, principal_arn: str) -> list[PolicyDocument]:
        """The principal's identity policies now; [] for an account root or a principal that does not exist."""
        name = _name(principal_arn)
        if name is None or name.kind == ROOT:
            return []
        return list(self._current_of(name)[1])

    def rows(self, account_id: str | None = None) -> list[PrincipalRow]:
        return self._view.rows(account_id)

    # -- at a past moment --------------------------------------------------------------------------

    def _at(self, name: PrincipalName, at: datetime) -> Principal | None:
        version = self._view.version_at(str(name.aggregate_id), at)
        if version is None:
            return None
        try:
            principal: Any = self._ledger.repository.get(name.aggregate_id, version=version)
        except AggregateNotFoundError:
            return None
        if not isinstance(principal, Principal) or principal.deleted:
            return None
        return principal if _is(name, principal.arn, principal.kind, principal.name) else None

    def identity_policies_at(self, principal_arn: str, at: datetime) -> list[PolicyDocument]:
        """The identity policies that applied to the principal at ``at`` (the aggregate as it was then)."""
        name = _name(principal_arn)
        if name is None or name.kind == ROOT:
            return []
        principal = self._at(name, at)
        return principal.policy_documents() if principal is not None else []

    def principals_at(self, account_id: str, at: datetime, partition: str = "aws") -> list[str]:
        """ARNs of the account's principals that existed at ``at``: its root (always) and the users and roles
        created by then and not yet deleted."""
        root = f"arn:{partition}:iam::{account_id}:root"
        return [root] + [arn for arn in self._view.existing_at(account_id, at) if arn != root]
