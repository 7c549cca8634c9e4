"""Key ids, ARNs and alias names: the four forms a caller may use to name a key, and the checks on them."""
from __future__ import annotations

import re
import uuid
from dataclasses import dataclass

from domain.errors import InvalidAliasNameError, NotFoundError, ValidationError, shown

ALIAS_PREFIX = "alias/"
RESERVED_ALIAS_PREFIX = "alias/aws/"
_ALIAS_RE = re.compile(r"^alias/[a-zA-Z0-9/_-]+$")
_KEY_ID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_ARN_RE = re.compile(r"^arn:(?P<partition>aws[a-z-]*):kms:(?P<region>[a-z0-9-]+):(?P<account>\d{12}):(?P<resource>.+)$")
# Alias aggregates get deterministic ids so the event store's uniqueness constraint enforces one alias
# per (account, region, name).
_ALIAS_NAMESPACE = uuid.UUID("0f6e2c1e-8f5b-4c0e-9d7a-6b1f3c2a9e41")


@dataclass(frozen=True)
class Scope:
    """Where a request acts: its account and its region (from the SigV4 credential scope)."""

    account_id: str
    region: str
    partition: str = "aws"

    def key_arn(self, key_id: str) -> str:
        return f"arn:{self.partition}:kms:{self.region}:{self.account_id}:key/{key_id}"

    def alias_arn(self, alias_name: str) -> str:
        return f"arn:{self.partition}:kms:{self.region}:{self.account_id}:{alias_name}"


@dataclass(frozen=True)
class KeyReference:
    """A parsed KeyId argument: exactly one of ``key_id`` or ``alias_name`` is set."""

    key_id: str | None = None
    alias_name: str | None = None
    account_id: str | None = None  # set when an ARN names another account: a cross-account reference

    def home(self, scope: Scope) -> Scope:
        """The scope the named key lives in: the caller's, or the account an ARN names."""
        return scope if self.account_id is None else Scope(self.account_id, scope.region, scope.partition)


def parse_key_reference(value: str, scope: Scope) -> KeyReference:
    """Accepts a key id, key ARN, alias name or alias ARN. An ARN of another account in the same region is a
    cross-account reference (authorization decides whether the caller may use it); an ARN of another region
    names a key this scope cannot see, so it is NotFound, as AWS answers."""
    if value.startswith("arn:"):
        m = _ARN_RE.fullmatch(value)
        if not m:
            raise NotFoundError(f"Invalid keyId '{shown(value)}': not a valid KMS key or alias ARN.")
        resource = m.group("resource")
        if (m.group("region"), m.group("partition")) != (scope.region, scope.partition):
            raise NotFoundError(f"Key '{shown(value)}' does not exist")
        account = None if m.group("account") == scope.account_id else m.group("account")
        if resource.startswith("key/"):
            return KeyReference(key_id=_checked_key_id(resource[4:], value), account_id=account)
        if resource.startswith(ALIAS_PREFIX):
            return KeyReference(alias_name=resource, account_id=account)
        raise NotFoundError(f"Invalid keyId '{shown(value)}': an ARN must name key/<id> or alias/<name>.")
    if value.startswith(ALIAS_PREFIX):
        return KeyReference(alias_name=value)
    return KeyReference(key_id=_checked_key_id(value, value))


def _checked_key_id(key_id: str, original: str) -> str:
    if not _KEY_ID_RE.fullmatch(key_id):
        raise NotFoundError(f"Invalid keyId '{shown(original)}': use a key id, key ARN, alias name or alias ARN.")
    return key_id


def validate_alias_name(name: str, *, for_create: bool) -> None:
    if not name.startswith(ALIAS_PREFIX):
        raise ValidationError(f"Alias '{shown(name)}' must begin with 'alias/'.")
    if not _ALIAS_RE.fullmatch(name) or len(name) > 256:
        raise ValidationError(
            f"Alias '{shown(name)}' is not valid: after 'alias/' use 1 to 250 letters, digits, '/', '_' or '-'."
        )
    if for_create and name.startswith(RESERVED_ALIAS_PREFIX):
        raise InvalidAliasNameError(
            f"Alias '{shown(name)}' is not valid: names that begin with 'alias/aws/' are reserved for AWS managed keys."
        )


def alias_aggregate_id(scope: Scope, alias_name: str) -> uuid.UUID:
    return uuid.uuid5(_ALIAS_NAMESPACE, f"{scope.partition}:{scope.account_id}:{scope.region}:{alias_name}")
