"""Aliases: each is an Alias aggregate whose id is derived from its name, so one name has one history."""
from __future__ import annotations

from typing import Any

from application.calls import Call
from application.keys.access import KeyAccess
from application.pagination import page
from application.ports import AliasRow, Clock, KeyRow, KeyStateView
from application.writer import Outcome
from domain.errors import AlreadyExistsError, NotFoundError, ValidationError, shown
from domain.identifiers import (
    RESERVED_ALIAS_PREFIX,
    Scope,
    alias_aggregate_id,
    parse_key_reference,
    validate_alias_name,
)
from domain.keys.alias import Alias
from domain.keys.managed import MANAGED_SERVICES
from domain.keys.states import KeyState, require_state

PREDEFINED_ALIASES = sorted(RESERVED_ALIAS_PREFIX + service for service in MANAGED_SERVICES)


class AliasService:
    def __init__(self, access: KeyAccess, view: KeyStateView, clock: Clock) -> None:
        self._access = access
        self._view = view
        self._clock = clock

    def _target_row(self, call: Call, target_key_ref: str, operation: str) -> KeyRow:
        if parse_key_reference(target_key_ref, call.in_scope()).alias_name is not None:
            raise ValidationError("TargetKeyId must be a key id or key ARN, not an alias.")
        row = self._access.resolve.row(call, target_key_ref)
        require_state(operation, KeyState(row.key_state), row.arn)
        return row

    def _existing(self, scope: Scope, alias_name: str) -> Alias:
        alias = self._access.load_alias(alias_aggregate_id(scope, alias_name))
        if alias is None or alias.deleted:
            raise NotFoundError(f"Alias {shown(scope.alias_arn(alias_name))} is not found.")
        return alias

    def _target_of(self, call: Call, alias: Alias) -> KeyRow | None:
        """The key an alias points to now: the caller needs the operation's permission on it too. A key
        that was deleted leaves only the alias to authorize."""
        row = self._access.resolve.row_by_id(call, call.in_scope(), alias.target_key_id)
        if row is None:
            self._access.resolve.authorizer.authorize_alias(call)
        return row

    def create_alias(self, call: Call, alias_name: str, target_key_ref: str) -> None:
        validate_alias_name(alias_name, for_create=True)
        scope = call.in_scope()
        row = self._target_row(call, target_key_ref, "CreateAlias")
        alias_id = alias_aggregate_id(scope, alias_name)

        def attempt() -> Outcome[None]:
            now = self._clock.now()
            alias = self._access.load_alias(alias_id)
            if alias is None:
                alias = Alias.create(alias_id=alias_id, alias_name=alias_name, account_id=scope.account_id,
                                     region=scope.region, target_key_id=row.key_id, at=now)
            elif not alias.deleted:
                raise AlreadyExistsError(f"An alias with the name {shown(scope.alias_arn(alias_name))} already exists")
            else:
                alias.recreate(row.key_id, now)
            return Outcome([alias])

        self._access.writer.retrying(call, attempt)

    def update_alias(self, call: Call, alias_name: str, target_key_ref: str) -> None:
        validate_alias_name(alias_name, for_create=False)
        row = self._target_row(call, target_key_ref, "UpdateAlias")

        def attempt() -> Outcome[None]:
            alias = self._existing(call.in_scope(), alias_name)
            current = self._target_of(call, alias)
            if current is not None and (current.key_spec, current.key_usage) != (row.key_spec, row.key_usage):
                raise ValidationError(
                    f"Alias {shown(alias_name)} points to a {current.key_spec} key for {current.key_usage}; "
                    f"the new target must have the same key spec and key usage."
                )
            if alias.target_key_id != row.key_id:
                alias.retarget(row.key_id, self._clock.now())
            return Outcome([alias])

        self._access.writer.retrying(call, attempt)

    def delete_alias(self, call: Call, alias_name: str) -> None:
        validate_alias_name(alias_name, for_create=False)

        def attempt() -> Outcome[None]:
            alias = self._existing(call.in_scope(), alias_name)
            self._target_of(call, alias)
            alias.delete(self._clock.now())
            return Outcome([alias])

        self._access.writer.retrying(call, attempt)

    def list_aliases(self, call: Call, key_ref: str | None, limit: int | None, marker: str | None) -> dict[str, Any]:
        scope = call.in_scope()
        key_id = None
        if key_ref is not None:
            if parse_key_reference(key_ref, scope).alias_name is not None:
                raise ValidationError("KeyId for ListAliases must be a key id or key ARN, not an alias.")
            key_id = self._access.resolve.row(call, key_ref).key_id

        def entry(a: AliasRow) -> dict[str, Any]:
            return {"AliasName": a.alias_name, "AliasArn": a.alias_arn, "TargetKeyId": a.target_key_id,
                    "CreationDate": a.creation_date, "LastUpdatedDate": a.last_updated_date}

        def fetch(n: int, after: str | None) -> list[dict[str, Any]]:
            made = [entry(a) for a in self._view.list_aliases(scope.account_id, scope.region, key_id, n, after)]
            if key_id is not None:
                return made
            # AWS lists the predefined aliases of AWS managed keys not made yet, with no TargetKeyId and no dates
            # (decision 164); the first use of one makes its key (decision 91).
            listed = {a["AliasName"] for a in made}
            predefined = [{"AliasName": name, "AliasArn": scope.alias_arn(name)} for name in PREDEFINED_ALIASES
                          if (after is None or name > after) and name not in listed
                          and self._view.get_alias(scope.account_id, scope.region, name) is None]
            return sorted(made + predefined, key=lambda a: a["AliasName"])[:n]

        return page(fetch, limit, marker, sort_key=lambda a: a["AliasName"], render=lambda a: a, member="Aliases")
