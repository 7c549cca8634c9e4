"""Grants on a key: CreateGrant, RetireGrant and RevokeGrant as events of the Key aggregate.

``key.grants`` holds the grants in force (grant id -> record); a retired or revoked grant leaves it, and its
history stays in the events. Validation follows AWS KMS: the operations must be ones the key's type can
perform, encryption context constraints only on symmetric encryption keys, principals as IAM/STS ARNs, at
most 50,000 grants per key. A CreateGrant that repeats an existing grant's Name and parameters is a retry:
it returns that grant and triggers nothing.
"""
from __future__ import annotations

import os
import re
from datetime import datetime
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence

from eventsourcing.domain import Aggregate

from domain.errors import (
    InvalidArnError,
    InvalidGrantIdError,
    LimitExceededError,
    NotFoundError,
    ValidationError,
    shown,
)
from domain.keys.specs import (
    ENCAPSULATE_DECAPSULATE,
    ENCRYPT_DECRYPT,
    GENERATE_VERIFY_MAC,
    KEY_AGREEMENT,
    SIGN_VERIFY,
    SYMMETRIC_DEFAULT,
)
from domain.keys.states import KeyState
from domain.policy.evaluation import GRANT_OPERATIONS, Grant

if TYPE_CHECKING:
    from domain.keys.key import Key

MAX_GRANTS_PER_KEY = 50_000  # AWS KMS resource quota "Grants per KMS key"
MAX_CONSTRAINT_PAIRS = 8  # per constraint (developer guide, "Using grant constraints")
MAX_CONSTRAINT_CHARS = 384  # per constraint: its keys and values together
EQUALS, SUBSET = "EncryptionContextEquals", "EncryptionContextSubset"

_GRANT_ID = re.compile(r"[0-9a-f]{64}")
_NAME = re.compile(r"[a-zA-Z0-9:/_-]{1,256}")
_IAM_NAME = r"[\w+=,.@-]{1,128}"
_PRINCIPAL = re.compile(
    rf"arn:(?P<partition>aws(?:-[a-z]+)*):(?:"
    rf"iam::(?P<iam_account>\d{{12}}):(?:root|(?:user|role)/(?:{_IAM_NAME}/)*{_IAM_NAME})"
    rf"|sts::(?P<sts_account>\d{{12}}):(?:assumed-role/{_IAM_NAME}/{_IAM_NAME}|federated-user/{_IAM_NAME}))"
)

# Grant operations every key type takes, and the rest by what the key is (developer guide, "Key type reference").
_ANY_KEY = frozenset({"CreateGrant", "RetireGrant", "DescribeKey"})
_SYMMETRIC_ENCRYPTION = frozenset({
    "Encrypt", "Decrypt", "ReEncryptFrom", "ReEncryptTo", "GenerateDataKey", "GenerateDataKeyWithoutPlaintext",
    "GenerateDataKeyPair", "GenerateDataKeyPairWithoutPlaintext",
})
_BY_USAGE = {
    ENCRYPT_DECRYPT: frozenset({"Encrypt", "Decrypt", "ReEncryptFrom", "ReEncryptTo", "GetPublicKey"}),
    SIGN_VERIFY: frozenset({"Sign", "Verify", "GetPublicKey"}),
    KEY_AGREEMENT: frozenset({"DeriveSharedSecret", "GetPublicKey"}),
    GENERATE_VERIFY_MAC: frozenset({"GenerateMac", "VerifyMac"}),
    ENCAPSULATE_DECAPSULATE: frozenset({"Encapsulate", "Decapsulate", "GetPublicKey"}),
}


def new_grant_id() -> str:
    """AWS's grant ids are 64 hex characters; ours are 32 random bytes."""
    return os.urandom(32).hex()


def check_grant_id(grant_id: str) -> None:
    if not isinstance(grant_id, str) or not _GRANT_ID.fullmatch(grant_id):
        raise InvalidGrantIdError(f"Grant ID '{shown(grant_id)}' is not valid: a grant ID is 64 hexadecimal characters.")


def principal_account(arn: str) -> str | None:
    """The account of an IAM or STS principal ARN, or None when the value is not one."""
    match = _PRINCIPAL.fullmatch(arn)
    return (match["iam_account"] or match["sts_account"]) if match else None


def check_principal(arn: str, member: str) -> None:
    if principal_account(arn) is None:
        raise InvalidArnError(
            f"{member} '{shown(arn)}' is not a valid principal: use the ARN of an account (arn:aws:iam::<account>:root), "
            "an IAM user or role, an assumed-role session or a federated user.")


def grant_operations_for(key_spec: str, key_usage: str) -> frozenset[str]:
    if key_spec == SYMMETRIC_DEFAULT:
        return _ANY_KEY | _SYMMETRIC_ENCRYPTION
    return _ANY_KEY | _BY_USAGE.get(key_usage, frozenset())


def normalized_constraints(constraints: Mapping[str, Any] | None) -> dict[str, dict[str, str]] | None:
    """EncryptionContextEquals / EncryptionContextSubset with their pairs; empty ones dropped (an empty map
    constrains nothing), None when nothing is left."""
    out = {}
    for member in (EQUALS, SUBSET):
        pairs = (constraints or {}).get(member)
        if pairs:
            out[member] = dict(pairs)
    return out or None


class GrantableKey:
    """Grant events and commands of the Key aggregate."""

    class GrantCreated(Aggregate.Event):
        grant_id: str
        name: str | None
        grantee_principal: str
        retiring_principal: str | None
        operations: list[str]
        constraints: dict[str, dict[str, str]] | None
        issuing_account: str  # the creator's account root ARN, as ListGrants shows IssuingAccount

        def apply(self, key: Any) -> None:
            vars(key).setdefault("_grants", {})[self.grant_id] = {
                "grant_id": self.grant_id, "name": self.name, "grantee_principal": self.grantee_principal,
                "retiring_principal": self.retiring_principal, "operations": list(self.operations),
                "constraints": {k: dict(v) for k, v in self.constraints.items()} if self.constraints else None,
                "issuing_account": self.issuing_account, "creation_date": self.timestamp,
            }

    class GrantRetired(Aggregate.Event):
        grant_id: str

        def apply(self, key: Any) -> None:
            vars(key).get("_grants", {}).pop(self.grant_id, None)

    class GrantRevoked(Aggregate.Event):
        grant_id: str

        def apply(self, key: Any) -> None:
            vars(key).get("_grants", {}).pop(self.grant_id, None)

    @property
    def grants(self) -> Mapping[str, Mapping[str, Any]]:
        """Grant id -> record, read-only. The state lives in ``_grants``, made by the first GrantCreated, so
        keys that never had a grant (and snapshots taken before grants existed) carry none."""
        return MappingProxyType(vars(self).get("_grants", {}))

    # -- reading ---------------------------------------------------------------------------------

    def grant(self: Key, grant_id: str) -> Mapping[str, Any]:
        """The grant in force with this id; InvalidGrantId for a malformed id, NotFound for an unknown one."""
        check_grant_id(grant_id)
        record = self.grants.get(grant_id) if self.key_state is not KeyState.DELETED else None
        if record is None:
            raise NotFoundError(f"Grant ID {shown(grant_id)} was not found on {self.arn}: it never existed, or it was "
                                "retired or revoked.")
        return record

    def active_grants(self: Key) -> list[Grant]:
        """The grants in force, for the authorizer (a deleted key has none)."""
        if self.key_state is KeyState.DELETED:
            return []
        return [grant_of(record, self.arn) for record in self.grants.values()]

    def grant_entries(self: Key) -> list[dict[str, Any]]:
        """Every grant in force as ListGrants shows it, in grant id order (the order ListGrants pages in)."""
        if self.key_state is KeyState.DELETED:
            return []
        return [grant_entry(record, self.arn) for _, record in sorted(self.grants.items())]

    def pending_grant_id(self: Key) -> str | None:
        """The grant an unsaved CreateGrant is creating (for its audit record's responseElements)."""
        created = [e for e in self.pending_events if isinstance(e, GrantableKey.GrantCreated)]
        return created[-1].grant_id if created else None

    # -- commands --------------------------------------------------------------------------------

    def create_grant(self: Key, *, grant_id: str, grantee_principal: str, operations: Sequence[str],
                     retiring_principal: str | None, constraints: Mapping[str, Any] | None, name: str | None,
                     issuing_account: str, at: datetime) -> str:
        """Returns the grant id: ``grant_id`` for a new grant, or the existing one when this is a retry."""
        self.require("CreateGrant")
        listed = self._checked_operations(operations)
        check_principal(grantee_principal, "GranteePrincipal")
        if retiring_principal is not None:
            check_principal(retiring_principal, "RetiringPrincipal")
        if name is not None and not _NAME.fullmatch(name):
            raise ValidationError(
                f"Grant name '{shown(name)}' is not valid: use 1 to 256 letters, digits, ':', '/', '_' or '-'.")
        checked = self._checked_constraints(constraints)
        if name is not None:
            for record in self.grants.values():
                if (record["name"], record["grantee_principal"], record["retiring_principal"],
                        set(record["operations"]), record["constraints"]) == (
                        name, grantee_principal, retiring_principal, set(listed), checked):
                    return record["grant_id"]
        if len(self.grants) >= MAX_GRANTS_PER_KEY:
            raise LimitExceededError(
                f"{self.arn} already has {MAX_GRANTS_PER_KEY} grants, the most AWS KMS allows on a key; "
                "retire or revoke one first.")
        check_grant_id(grant_id)
        self.trigger_event(self.GrantCreated, timestamp=at, grant_id=grant_id, name=name,
                           grantee_principal=grantee_principal, retiring_principal=retiring_principal,
                           operations=listed, constraints=checked, issuing_account=issuing_account)
        return grant_id

    def retire_grant(self: Key, grant_id: str, at: datetime) -> None:
        self.require("RetireGrant")
        self.grant(grant_id)
        self.trigger_event(self.GrantRetired, timestamp=at, grant_id=grant_id)

    def revoke_grant(self: Key, grant_id: str, at: datetime) -> None:
        self.require("RevokeGrant")
        self.grant(grant_id)
        self.trigger_event(self.GrantRevoked, timestamp=at, grant_id=grant_id)

    # -- validation ------------------------------------------------------------------------------

    def _checked_operations(self: Key, operations: Iterable[str]) -> list[str]:
        listed = list(dict.fromkeys(operations))  # duplicates dropped, order kept
        if not listed:
            raise ValidationError("Operations must list at least one grant operation.")
        unknown = [op for op in listed if op not in GRANT_OPERATIONS]
        if unknown:
            raise ValidationError(f"{', '.join(unknown)} cannot be granted; grant operations are: "
                                  f"{', '.join(sorted(GRANT_OPERATIONS))}.")
        allowed = grant_operations_for(self.key_spec, self.key_usage)
        refused = [op for op in listed if op not in allowed]
        if refused:
            raise ValidationError(
                f"{', '.join(refused)} {'is' if len(refused) == 1 else 'are'} not supported on {self.arn}, a "
                f"{self.key_spec} key with KeyUsage {self.key_usage}; a grant for it may allow: "
                f"{', '.join(sorted(allowed))}.")
        return listed

    def _checked_constraints(self: Key, constraints: Mapping[str, Any] | None) -> dict[str, dict[str, str]] | None:
        checked = normalized_constraints(constraints)
        if checked is None:
            return None
        if self.key_spec != SYMMETRIC_DEFAULT:
            raise ValidationError(
                f"Encryption context grant constraints are not supported on {self.arn}, a {self.key_spec} key: "
                "only symmetric encryption keys take an encryption context.")
        for member, pairs in checked.items():
            if len(pairs) > MAX_CONSTRAINT_PAIRS:
                raise LimitExceededError(f"{member} has {len(pairs)} encryption context pairs; a grant constraint "
                                         f"can have at most {MAX_CONSTRAINT_PAIRS}.")
            size = sum(len(k) + len(v) for k, v in pairs.items())
            if size > MAX_CONSTRAINT_CHARS:
                raise LimitExceededError(f"{member} is {size} characters long (keys and values); a grant "
                                         f"constraint can be at most {MAX_CONSTRAINT_CHARS}.")
        return checked


def grant_of(record: Mapping[str, Any], key_arn: str) -> Grant:
    constraints = record.get("constraints") or {}
    return Grant(
        grant_id=record["grant_id"], grantee_principal=record["grantee_principal"],
        retiring_principal=record.get("retiring_principal"), operations=frozenset(record["operations"]),
        constraints_equals=constraints.get(EQUALS), constraints_subset=constraints.get(SUBSET), key_arn=key_arn,
        issuing_account=record.get("issuing_account"),
    )


def grant_entry(record: Mapping[str, Any], key_arn: str) -> dict[str, Any]:
    """A GrantListEntry (ListGrants / ListRetirableGrants). Name is "" when the grant has none, as AWS shows it."""
    entry: dict[str, Any] = {
        "KeyId": key_arn, "GrantId": record["grant_id"], "Name": record.get("name") or "",
        "CreationDate": record["creation_date"], "GranteePrincipal": record["grantee_principal"],
        "RetiringPrincipal": record.get("retiring_principal"), "IssuingAccount": record["issuing_account"],
        "Operations": list(record["operations"]),
    }
    if record.get("constraints"):
        entry["Constraints"] = {k: dict(v) for k, v in record["constraints"].items()}
    return {k: v for k, v in entry.items() if v is not None}


def grants_from_entries(entries: Iterable[Mapping[str, Any]]) -> list[Grant]:
    """GrantListEntry dicts (a point-in-time answer's "Grants") back into what the evaluator takes."""
    return [Grant(grant_id=e["GrantId"], grantee_principal=e["GranteePrincipal"],
                  retiring_principal=e.get("RetiringPrincipal"), operations=frozenset(e["Operations"]),
                  constraints_equals=(e.get("Constraints") or {}).get(EQUALS),
                  constraints_subset=(e.get("Constraints") or {}).get(SUBSET), key_arn=e["KeyId"],
                  issuing_account=e.get("IssuingAccount")) for e in entries]
