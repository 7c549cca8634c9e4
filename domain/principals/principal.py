"""The Principal aggregate: an IAM user or role of an account, or the account's root, with its inline
identity policies and the ids of its access keys.

No secret is ever in an event or snapshot: events name access keys by id only; the secrets live
root-wrapped beside the event store. The id is derived from the principal's name (domain/principal_arns),
so creating the same user twice collides in the event store. A user deleted and created again is the same
aggregate in a new life (``Recreated``), with a new unique id and nothing of the old life's keys or policies,
as IAM treats a re-created user.
"""
from __future__ import annotations

from datetime import datetime
from typing import Any

from eventsourcing.domain import Aggregate

from domain.errors import (
    DeleteConflictError,
    EntityAlreadyExistsError,
    IamLimitExceededError,
    IamValidationError,
    MalformedIdentityPolicyError,
    MalformedPolicyDocumentError,
    NoSuchEntityError,
    shown,
)
from domain.policy.document import PolicyDocument, parse_policy, policy_size
from domain.principals.arns import ROLE, ROOT, USER, PrincipalName, new_unique_id, parse_principal_arn

ACTIVE, INACTIVE = "Active", "Inactive"
ACCESS_KEY_STATUSES = (ACTIVE, INACTIVE)
# IAM quotas: two access keys per user (not adjustable); the inline policies of one user together may
# hold 2,048 characters, of one role 10,240 (white space not counted).
MAX_ACCESS_KEYS = 2
INLINE_POLICY_QUOTA = {USER: 2048, ROLE: 10240}
_POLICY_NAME_MAX = 128
_POLICY_NAME_RESERVED = set("\\/*? ")


def check_policy_name(name: str) -> None:
    """IAM inline policy names: 1 to 128 ASCII characters, none of backslash, slash, *, ? or space."""
    if not 1 <= len(name) <= _POLICY_NAME_MAX or any(c in _POLICY_NAME_RESERVED or not 0x20 < ord(c) < 0x7f
                                                      for c in name):
        raise IamValidationError(f"Policy name '{shown(name)}' is not valid: use 1 to {_POLICY_NAME_MAX} printable ASCII "
                                 f"characters other than backslash, slash, '*', '?' and space.")


def parse_identity_policy(document: str, policy_name: str = "") -> PolicyDocument:
    try:
        return parse_policy(document, require_principal=False)
    except MalformedPolicyDocumentError as exc:
        where = f"Policy '{shown(policy_name)}': " if policy_name else ""
        raise MalformedIdentityPolicyError(where + exc.message) from None


class Principal(Aggregate):
    class Created(Aggregate.Created):
        arn: str
        partition: str
        account_id: str
        kind: str
        name: str
        path: str
        unique_id: str

    class Recreated(Aggregate.Event):
        arn: str
        name: str
        path: str
        unique_id: str

        def apply(self, principal: Principal) -> None:
            principal.arn, principal.name, principal.path = self.arn, self.name, self.path
            principal.unique_id = self.unique_id
            principal.deleted = False
            principal.created_date = self.timestamp

    class PolicyAttached(Aggregate.Event):
        policy_name: str
        document: str

        def apply(self, principal: Principal) -> None:
            principal.policies = {**principal.policies, self.policy_name: self.document}

    class PolicyReplaced(Aggregate.Event):
        policy_name: str
        document: str

        def apply(self, principal: Principal) -> None:
            principal.policies = {**principal.policies, self.policy_name: self.document}

    class PolicyDetached(Aggregate.Event):
        policy_name: str

        def apply(self, principal: Principal) -> None:
            principal.policies = {k: v for k, v in principal.policies.items() if k != self.policy_name}

    class AccessKeyCreated(Aggregate.Event):
        access_key_id: str

        def apply(self, principal: Principal) -> None:
            principal.access_keys = {**principal.access_keys, self.access_key_id: ACTIVE}

    class AccessKeyStatusChanged(Aggregate.Event):
        access_key_id: str
        status: str

        def apply(self, principal: Principal) -> None:
            principal.access_keys = {**principal.access_keys, self.access_key_id: self.status}

    class AccessKeyDeleted(Aggregate.Event):
        access_key_id: str

        def apply(self, principal: Principal) -> None:
            principal.access_keys = {k: v for k, v in principal.access_keys.items() if k != self.access_key_id}

    class Deleted(Aggregate.Event):
        def apply(self, principal: Principal) -> None:
            principal.deleted = True

    def __init__(self, *, arn: str, partition: str, account_id: str, kind: str, name: str, path: str,
                 unique_id: str) -> None:
        self.arn = arn
        self.partition = partition
        self.account_id = account_id
        self.kind = kind
        self.name = name
        self.path = path
        self.unique_id = unique_id
        self.policies: dict[str, str] = {}
        self.access_keys: dict[str, str] = {}  # access key id -> Active | Inactive
        self.deleted = False
        self.created_date: datetime | None = None  # of the current life, when it is not the first

    # -- creation --------------------------------------------------------------------------------

    @classmethod
    def create(cls, name: PrincipalName, at: datetime) -> Principal:
        """A user or role, or (implicitly, on its first access key) an account root."""
        if not (name.managed or name.kind == ROOT):
            raise IamValidationError(f"'{name.arn}' is a role session; create the role instead.")
        unique_id = new_unique_id(name.kind) if name.managed else name.account_id
        return cls._create(cls.Created, id=name.aggregate_id, timestamp=at, arn=name.arn, partition=name.partition,
                           account_id=name.account_id, kind=name.kind, name=name.name, path=name.path,
                           unique_id=unique_id)

    def recreate(self, name: PrincipalName, at: datetime) -> None:
        if not self.deleted:
            raise EntityAlreadyExistsError(f"{self.label.capitalize()} with name {self.name} already exists "
                                           f"({self.arn}).")
        self.trigger_event(self.Recreated, timestamp=at, arn=name.arn, name=name.name, path=name.path,
                           unique_id=new_unique_id(self.kind))

    @property
    def label(self) -> str:
        return f"account {self.account_id}" if self.kind == ROOT else f"{self.kind} {self.name}"

    @property
    def creation_date(self) -> datetime:
        return self.created_date or self.created_on

    def require_live(self, arn: str | None = None) -> None:
        """NoSuchEntity unless this principal exists now (and, given ``arn``, is called exactly that)."""
        if self.deleted or (arn is not None and arn != self.arn and self.kind != ROOT):
            hint = f" (the {self.kind} of that name is {self.arn})" if not self.deleted else ""
            raise NoSuchEntityError(f"The {self.kind} with name {parse_principal_arn(arn or self.arn).name} "
                                    f"cannot be found{hint}.")

    def _require_not_deleted(self) -> None:
        if self.deleted:
            raise NoSuchEntityError(f"The {self.kind} with name {self.name} cannot be found.")

    # -- identity policies -------------------------------------------------------------------------

    def put_policy(self, policy_name: str, document: str, at: datetime) -> bool:
        """PutUserPolicy / PutRolePolicy: adds the policy or replaces the one of that name. False when the
        same document is already attached (nothing changes)."""
        if self.kind == ROOT:
            raise IamValidationError("An account root has no identity policies: it may do everything in its "
                                     "account that key policies allow. Attach policies to users and roles.")
        self._require_not_deleted()
        check_policy_name(policy_name)
        parse_identity_policy(document, policy_name)
        if self.policies.get(policy_name) == document:
            return False
        quota = INLINE_POLICY_QUOTA[self.kind]
        total = sum(policy_size(text) for name, text in self.policies.items() if name != policy_name)
        if total + policy_size(document) > quota:
            raise IamLimitExceededError(f"Maximum policy size of {quota} bytes exceeded for {self.label} "
                                        f"(inline policies together: {total + policy_size(document)} "
                                        f"characters without white space).")
        event = self.PolicyReplaced if policy_name in self.policies else self.PolicyAttached
        self.trigger_event(event, timestamp=at, policy_name=policy_name, document=document)
        return True

    def delete_policy(self, policy_name: str, at: datetime) -> None:
        self._require_not_deleted()
        if policy_name not in self.policies:
            raise NoSuchEntityError(f"The {self.kind} policy with name {shown(policy_name)} cannot be found.")
        self.trigger_event(self.PolicyDetached, timestamp=at, policy_name=policy_name)

    def policy_documents(self) -> list[PolicyDocument]:
        return [parse_identity_policy(text, name) for name, text in sorted(self.policies.items())]

    # -- access keys -----------------------------------------------------------------------------

    def add_access_key(self, access_key_id: str, at: datetime, *, quota: bool = True) -> None:
        """``quota=False`` only for the administrator key the operator configured for first start."""
        self._require_not_deleted()
        if quota and len(self.access_keys) >= MAX_ACCESS_KEYS:
            raise IamLimitExceededError(f"Cannot exceed quota for AccessKeysPerUser: {MAX_ACCESS_KEYS} "
                                        f"({self.arn} has {', '.join(sorted(self.access_keys))}).")
        self.trigger_event(self.AccessKeyCreated, timestamp=at, access_key_id=access_key_id)

    def set_access_key_status(self, access_key_id: str, status: str, at: datetime) -> bool:
        """UpdateAccessKey. False when the key already has that status."""
        if status not in ACCESS_KEY_STATUSES:
            raise IamValidationError(f"Status must be Active or Inactive, not '{shown(status)}'.")
        self._require_key(access_key_id)
        if self.access_keys[access_key_id] == status:
            return False
        self.trigger_event(self.AccessKeyStatusChanged, timestamp=at, access_key_id=access_key_id, status=status)
        return True

    def delete_access_key(self, access_key_id: str, at: datetime) -> None:
        self._require_key(access_key_id)
        self.trigger_event(self.AccessKeyDeleted, timestamp=at, access_key_id=access_key_id)

    def _require_key(self, access_key_id: str) -> None:
        self._require_not_deleted()
        if access_key_id not in self.access_keys:
            raise NoSuchEntityError(f"The Access Key with id {shown(access_key_id)} cannot be found.")

    # -- deletion --------------------------------------------------------------------------------

    def delete(self, at: datetime, *, force: bool = False) -> dict[str, Any]:
        """DeleteUser / DeleteRole. IAM refuses while access keys or policies remain (DeleteConflict);
        ``force`` deletes them first, in the same change. Returns what was removed with it."""
        if self.kind == ROOT:
            raise IamValidationError("An account root cannot be deleted; delete its access keys instead.")
        self._require_not_deleted()
        keys, policies = sorted(self.access_keys), sorted(self.policies)
        if (keys or policies) and not force:
            what = " and ".join(filter(None, [f"access keys ({', '.join(keys)})" if keys else "",
                                              f"policies ({', '.join(policies)})" if policies else ""]))
            raise DeleteConflictError(f"Cannot delete entity, must delete {what} first (or use --force).")
        for access_key_id in keys:
            self.delete_access_key(access_key_id, at)
        for policy_name in policies:
            self.delete_policy(policy_name, at)
        self.trigger_event(self.Deleted, timestamp=at)
        return {"deletedAccessKeyIds": keys, "deletedPolicyNames": policies}
