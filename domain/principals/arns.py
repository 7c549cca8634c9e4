"""Principal ARNs: what an IAM user, role, account root or role session is called, and the aggregate id
each maps to.

The id is derived from (partition, account, kind, lower-cased name), not from the whole ARN: IAM names
are unique in an account whatever their path and case ("ADMINS" and "admins" cannot both exist), so
the event store's uniqueness constraint on the id refuses a second principal of the same name.
"""
from __future__ import annotations

import re
import secrets
import string
import uuid
from dataclasses import dataclass
from functools import cached_property

from domain.errors import IamValidationError, shown

ROOT, USER, ROLE, SESSION = "root", "user", "role", "assumed-role"
MANAGED_KINDS = (USER, ROLE)
_NAMESPACE = uuid.UUID("3c9d2f70-6a1e-4b8c-9e45-2d7f0a6b1c83")
_ARN = re.compile(r"arn:(?P<partition>aws[a-z-]*):(?P<service>iam|sts)::(?P<account>\d{12}):(?P<resource>.+)")
_NAME = re.compile(r"[\w+=,.@-]{1,64}", re.ASCII)
_PATH = re.compile(r"/(?:[\x21-\x7e]+/)?")
_SESSION_NAME = re.compile(r"[\w+=,.@-]{2,64}", re.ASCII)
_UNIQUE_ID_ALPHABET = string.ascii_uppercase + string.digits
_UNIQUE_ID_PREFIX = {USER: "AIDA", ROLE: "AROA"}


@dataclass(frozen=True)
class PrincipalName:
    """A parsed principal ARN. For a role session, ``name`` is the role's and ``session`` the session's."""

    arn: str
    partition: str
    account_id: str
    kind: str  # root | user | role | assumed-role
    name: str = ""
    path: str = "/"
    session: str = ""

    @property
    def managed(self) -> bool:
        """Users and roles are created and deleted by operators; roots exist for every account."""
        return self.kind in MANAGED_KINDS

    @property
    def owner_kind(self) -> str:
        """The kind of principal that holds this one's access keys and policies (a session's is its role)."""
        return ROLE if self.kind == SESSION else self.kind

    @cached_property  # a name-derived UUID (a SHA-1), asked for on every call of the principal
    def aggregate_id(self) -> uuid.UUID:
        return principal_id(self.partition, self.account_id, self.owner_kind, self.name)

    @cached_property
    def aggregate_key(self) -> str:
        return str(self.aggregate_id)

    @property
    def root_arn(self) -> str:
        return f"arn:{self.partition}:iam::{self.account_id}:root"

    @property
    def label(self) -> str:
        """How IAM names the principal in messages: "user alice", "role deploy", "account 1111..."."""
        return f"account {self.account_id}" if self.kind == ROOT else f"{self.owner_kind} {self.name}"


def principal_id(partition: str, account_id: str, kind: str, name: str) -> uuid.UUID:
    return uuid.uuid5(_NAMESPACE, f"{partition}:{account_id}:{kind}:{name.lower()}")


def parse_principal_arn(arn: str) -> PrincipalName:
    """``arn:aws:iam::<account>:root``, ``...:user/[path/]name``, ``...:role/[path/]name`` or
    ``arn:aws:sts::<account>:assumed-role/<role>/<session>``; anything else is an IamValidationError."""
    match = _ARN.fullmatch(arn or "")
    if not match:
        raise IamValidationError(
            f"'{shown(arn)}' is not a principal ARN: use arn:aws:iam::<12-digit account>:user/<name>, "
            f"...:role/<name> or ...:root.")
    partition, service, account, resource = match["partition"], match["service"], match["account"], match["resource"]
    if service == "sts":
        parts = resource.split("/")
        if len(parts) != 3 or parts[0] != SESSION or not _NAME.fullmatch(parts[1]) \
                or not _SESSION_NAME.fullmatch(parts[2]):
            raise IamValidationError(f"'{shown(arn)}' is not a role session ARN: use "
                                     f"arn:aws:sts::<account>:assumed-role/<role name>/<session name>.")
        return PrincipalName(arn, partition, account, SESSION, name=parts[1], session=parts[2])
    if resource == ROOT:
        return PrincipalName(arn, partition, account, ROOT)
    kind, _, rest = resource.partition("/")
    if kind not in MANAGED_KINDS or not rest:
        raise IamValidationError(f"'{shown(arn)}' names neither a user, a role nor the account root.")
    head, slash, name = rest.rpartition("/")
    path = "/" + head + slash
    if not _NAME.fullmatch(name):
        raise IamValidationError(
            f"'{shown(arn)}': a {kind} name is 1 to 64 letters, digits or any of + = , . @ _ - (got '{shown(name)}').")
    if len(path) > 512 or not _PATH.fullmatch(path):
        raise IamValidationError(f"'{shown(arn)}': the path '{shown(path)}' must be 1 to 512 printable ASCII characters "
                                 f"beginning and ending with '/'.")
    return PrincipalName(arn, partition, account, kind, name=name, path=path)


def acting_arn(owner_arn: str, access_key_id: str) -> str:
    """What a caller using this access key acts as. There is no STS here: a role's access key acts as a
    session of the role named after the key, so key policies naming the role ARN match it, as they match
    any session of that role in AWS, and the audit log tells the role's keys apart."""
    owner = parse_principal_arn(owner_arn)
    if owner.kind != ROLE:
        return owner_arn
    return f"arn:{owner.partition}:sts::{owner.account_id}:{SESSION}/{owner.name}/{access_key_id}"


def new_unique_id(kind: str) -> str:
    """IAM's unique id of a user (AIDA...) or role (AROA...): 21 characters, never reused."""
    return _UNIQUE_ID_PREFIX[kind] + "".join(secrets.choice(_UNIQUE_ID_ALPHABET) for _ in range(17))
