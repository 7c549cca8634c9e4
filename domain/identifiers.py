"""Key ids, ARNs and alias names: the four forms a caller may use to name a key, and the checks on them."""
from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from functools import lru_cache

from domain.errors import InvalidAliasNameError, NotFoundError, ValidationError, shown

ALIAS_PREFIX = "alias/"
RESERVED_ALIAS_PREFIX = "alias/aws/"
_ALIAS_RE = re.compile(r"^alias/[a-zA-Z0-9/_-]+$")
_KEY_ID_RE = re.compile(r"^(?:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|mrk-[0-9a-f]{32})$")
MULTI_REGION_PREFIX = "mrk-"  # AWS: a multi-Region key's id is mrk- and 32 hex digits, the same in every Region
_ARN_RE = re.compile(r"^arn:(?P<partition>aws[a-z-]*):kms:(?P<region>[a-z0-9-]+):(?P<account>\d{12}):(?P<resource>.+)$")
# Alias aggregates get deterministic ids so the event store's uniqueness constraint enforces one alias
# per (account, region, name).
_ALIAS_NAMESPACE = uuid.UUID("0f6e2c1e-8f5b-4c0e-9d7a-6b1f3c2a9e41")
# Related multi-Region keys share one key id; each Region's key is its own aggregate, stored under an id derived
# from (Region, key id), so a Region's keys could one day live in a deployment of their own (decision 155).
_MULTI_REGION_NAMESPACE = uuid.UUID("6d0c3f4e-2b8a-4f0e-a1c5-9e7b3d2f8a14")


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


_SCOPES: dict[tuple[str, str, str], Scope] = {}


def scope_of(account_id: str, region: str, partition: str = "aws") -> Scope:
    """The Scope of an account and Region, the same object every call (it is immutable): a request's scope is made
    on every call, and a frozen dataclass's construction, and a different object's comparisons later, cost more
    than this lookup (docs/performance.md, session 14)."""
    scope = _SCOPES.get((account_id, region, partition))
    if scope is None:
        if len(_SCOPES) >= 4096:  # bounded: a key ARN in a request can name any account
            _SCOPES.clear()
        scope = _SCOPES[(account_id, region, partition)] = Scope(account_id, region, partition)
    return scope


@dataclass(frozen=True)
class KeyReference:
    """A parsed KeyId argument: exactly one of ``key_id`` or ``alias_name`` is set."""

    key_id: str | None = None
    alias_name: str | None = None
    account_id: str | None = None  # set when an ARN names another account: a cross-account reference

    def home(self, scope: Scope) -> Scope:
        """The scope the named key lives in: the caller's, or the account an ARN names."""
        return scope if self.account_id is None else scope_of(self.account_id, scope.region, scope.partition)


@lru_cache(maxsize=4096)  # every call names its key: the same text in the same scope parses to the same (frozen) value
def parse_key_reference(value: str, scope: Scope) -> KeyReference:
    """Accepts a key id, key ARN, alias name or alias ARN. An ARN of another account in the same region is a
    cross-account reference (authorization decides whether the caller may use it); an ARN of another region
    names a key this scope cannot see, so it is NotFound, as AWS answers. A refusal is raised, not kept."""
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


def is_multi_region_key_id(key_id: str) -> bool:
    return key_id.startswith(MULTI_REGION_PREFIX)


def new_multi_region_key_id() -> str:
    return MULTI_REGION_PREFIX + uuid.uuid4().hex


def key_storage_id(key_id: str, region: str) -> str:
    """The id the event store and the key-state view know a key by: a single-Region key's own id (a UUID, unique
    everywhere), or, for a multi-Region key, the id of its aggregate in ``region``."""
    if not key_id.startswith(MULTI_REGION_PREFIX):
        return key_id
    return str(uuid.uuid5(_MULTI_REGION_NAMESPACE, f"{region}/{key_id}"))


def arn_region(arn: str) -> str:
    """The Region of a KMS ARN (arn:partition:kms:region:account:resource)."""
    return arn.split(":", 4)[3]


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
