"""Key lifecycle, tags, policy and aliases: every change is an event on a Key or Alias aggregate."""
from __future__ import annotations

import uuid
from typing import Any, Mapping

from eventsourcing.application import AggregateNotFoundError

from application.materials import KeyMaterials
from application.pagination import page
from application.ports import AliasRow, Clock, KeyStateView
from application.resolver import KeyResolver
from application.writer import LedgerWriter
from domain.alias import Alias
from domain.errors import AlreadyExistsError, NotFoundError, ValidationError
from domain.identifiers import Scope, alias_aggregate_id, parse_key_reference, validate_alias_name
from domain.key import Key
from domain.key_material import new_symmetric_material
from domain.key_specs import ORIGIN_AWS_KMS, resolve_key_spec
from domain.key_states import KeyState, require_state
from domain.policy import DEFAULT_POLICY_NAME, default_key_policy, validate_policy_document
from domain.errors import UnsupportedOperationError


class KeyService:
    def __init__(self, writer: LedgerWriter, view: KeyStateView, materials: KeyMaterials, clock: Clock) -> None:
        self._writer = writer
        self._ledger = writer.ledger
        self._view = view
        self._resolve = KeyResolver(view)
        self._materials = materials
        self._clock = clock

    # -- keys ------------------------------------------------------------------------------------

    def create_key(self, scope: Scope, *, key_spec: str | None = None, key_usage: str | None = None,
                   origin: str | None = None, description: str = "", policy: str | None = None,
                   tags: Mapping[str, str] | None = None) -> dict[str, Any]:
        spec = resolve_key_spec(key_spec, key_usage)
        origin = origin or ORIGIN_AWS_KMS
        if origin != ORIGIN_AWS_KMS:
            raise UnsupportedOperationError(f"Origin {origin} is not supported by this keyledger version; use AWS_KMS.")
        if policy is not None:
            validate_policy_document(policy)
        key_id = uuid.uuid4()
        material = new_symmetric_material()
        key = Key.create(
            key_id=key_id, scope=scope, at=self._clock.now(), key_spec=spec.name,
            key_usage=key_usage or spec.usages[0], origin=origin, description=description,
            policy=policy if policy is not None else default_key_policy(scope.account_id, scope.partition),
            tags=tags or {}, material_id=material.material_id, commitment=material.commitment(str(key_id)),
        )
        self._writer.commit([key], also=lambda tx: self._materials.save(tx, str(key_id), material))
        return {"KeyMetadata": key.metadata()}

    def describe_key(self, scope: Scope, key_ref: str) -> dict[str, Any]:
        row = self._resolve.row(scope, key_ref)
        require_state("DescribeKey", KeyState(row.key_state), row.arn)
        return {"KeyMetadata": row.metadata}

    def list_keys(self, scope: Scope, limit: int | None, marker: str | None) -> dict[str, Any]:
        return page(
            lambda n, after: self._view.list_keys(scope.account_id, scope.region, n, after), limit, marker,
            sort_key=lambda r: r.key_id, render=lambda r: {"KeyId": r.key_id, "KeyArn": r.arn}, member="Keys",
        )

    def _change(self, scope: Scope, key_ref: str, change: Any) -> Key:
        key_id = self._resolve.key_id(scope, key_ref)

        def attempt() -> tuple[list[Key], Key]:
            key = self._load(scope, key_id)
            change(key)
            return [key], key

        return self._writer.retrying(attempt)

    def _load(self, scope: Scope, key_id: str) -> Key:
        try:
            key = self._ledger.repository.get(uuid.UUID(key_id))
        except AggregateNotFoundError:
            key = None
        if not isinstance(key, Key) or key.account_id != scope.account_id or key.region != scope.region:
            raise NotFoundError(f"Key '{scope.key_arn(key_id)}' does not exist")
        return key

    def enable_key(self, scope: Scope, key_ref: str) -> None:
        self._change(scope, key_ref, lambda k: k.enable(self._clock.now()))

    def disable_key(self, scope: Scope, key_ref: str) -> None:
        self._change(scope, key_ref, lambda k: k.disable(self._clock.now()))

    def update_key_description(self, scope: Scope, key_ref: str, description: str) -> None:
        self._change(scope, key_ref, lambda k: k.update_description(description, self._clock.now()))

    def schedule_key_deletion(self, scope: Scope, key_ref: str, pending_window_days: int | None) -> dict[str, Any]:
        key = self._change(scope, key_ref, lambda k: k.schedule_deletion(pending_window_days, self._clock.now()))
        return {"KeyId": key.arn, "DeletionDate": key.deletion_date, "KeyState": key.state,
                "PendingWindowInDays": key.pending_window_days}

    def cancel_key_deletion(self, scope: Scope, key_ref: str) -> dict[str, Any]:
        key = self._change(scope, key_ref, lambda k: k.cancel_deletion(self._clock.now()))
        return {"KeyId": key.arn}

    # -- tags and policy -------------------------------------------------------------------------

    def tag_resource(self, scope: Scope, key_ref: str, tags: Mapping[str, str]) -> None:
        self._change(scope, key_ref, lambda k: k.tag(tags, self._clock.now()))

    def untag_resource(self, scope: Scope, key_ref: str, tag_keys: list[str]) -> None:
        self._change(scope, key_ref, lambda k: k.untag(tag_keys, self._clock.now()))

    def list_resource_tags(self, scope: Scope, key_ref: str, limit: int | None, marker: str | None) -> dict[str, Any]:
        key = self._load(scope, self._resolve.key_id(scope, key_ref))
        key.require("ListResourceTags")
        tags = sorted(key.tags.items())
        return page(
            lambda n, after: [t for t in tags if after is None or t[0] > after][:n], limit, marker,
            sort_key=lambda t: t[0], render=lambda t: {"TagKey": t[0], "TagValue": t[1]}, member="Tags",
        )

    def get_key_policy(self, scope: Scope, key_ref: str, policy_name: str | None) -> dict[str, Any]:
        key = self._load(scope, self._resolve.key_id(scope, key_ref))
        key.require("GetKeyPolicy")
        name = policy_name or DEFAULT_POLICY_NAME
        if name != DEFAULT_POLICY_NAME:
            raise NotFoundError(f"No such policy exists: '{name}'. A KMS key has one policy, named 'default'.")
        return {"Policy": key.policy, "PolicyName": name}

    # -- aliases ---------------------------------------------------------------------------------

    def _target_row(self, scope: Scope, target_key_ref: str, operation: str) -> Any:
        if parse_key_reference(target_key_ref, scope).alias_name is not None:
            raise ValidationError("TargetKeyId must be a key id or key ARN, not an alias.")
        row = self._resolve.row(scope, target_key_ref)
        require_state(operation, KeyState(row.key_state), row.arn)
        return row

    def _load_alias(self, alias_id: uuid.UUID) -> Alias | None:
        try:
            return self._ledger.repository.get(alias_id)
        except AggregateNotFoundError:
            return None

    def create_alias(self, scope: Scope, alias_name: str, target_key_ref: str) -> None:
        validate_alias_name(alias_name, for_create=True)
        row = self._target_row(scope, target_key_ref, "CreateAlias")
        alias_id = alias_aggregate_id(scope, alias_name)

        def attempt() -> tuple[list[Alias], None]:
            now = self._clock.now()
            alias = self._load_alias(alias_id)
            if alias is None:
                alias = Alias.create(alias_id=alias_id, alias_name=alias_name, account_id=scope.account_id,
                                     region=scope.region, target_key_id=row.key_id, at=now)
            elif not alias.deleted:
                raise AlreadyExistsError(f"An alias with the name {scope.alias_arn(alias_name)} already exists")
            else:
                alias.recreate(row.key_id, now)
            return [alias], None

        self._writer.retrying(attempt)

    def update_alias(self, scope: Scope, alias_name: str, target_key_ref: str) -> None:
        validate_alias_name(alias_name, for_create=False)
        row = self._target_row(scope, target_key_ref, "UpdateAlias")

        def attempt() -> tuple[list[Alias], None]:
            alias = self._existing_alias(scope, alias_name)
            current = self._view.get_key(alias.target_key_id)
            if current is not None and (current.key_spec, current.key_usage) != (row.key_spec, row.key_usage):
                raise ValidationError(
                    f"Alias {alias_name} points to a {current.key_spec} key for {current.key_usage}; "
                    f"the new target must have the same key spec and key usage."
                )
            if alias.target_key_id != row.key_id:
                alias.retarget(row.key_id, self._clock.now())
            return [alias], None

        self._writer.retrying(attempt)

    def delete_alias(self, scope: Scope, alias_name: str) -> None:
        validate_alias_name(alias_name, for_create=False)

        def attempt() -> tuple[list[Alias], None]:
            alias = self._existing_alias(scope, alias_name)
            alias.delete(self._clock.now())
            return [alias], None

        self._writer.retrying(attempt)

    def _existing_alias(self, scope: Scope, alias_name: str) -> Alias:
        alias = self._load_alias(alias_aggregate_id(scope, alias_name))
        if alias is None or alias.deleted:
            raise NotFoundError(f"Alias {scope.alias_arn(alias_name)} is not found.")
        return alias

    def list_aliases(self, scope: Scope, key_ref: str | None, limit: int | None, marker: str | None) -> dict[str, Any]:
        key_id = None
        if key_ref is not None:
            if parse_key_reference(key_ref, scope).alias_name is not None:
                raise ValidationError("KeyId for ListAliases must be a key id or key ARN, not an alias.")
            key_id = self._resolve.row(scope, key_ref).key_id

        def render(a: AliasRow) -> dict[str, Any]:
            return {"AliasName": a.alias_name, "AliasArn": a.alias_arn, "TargetKeyId": a.target_key_id,
                    "CreationDate": a.creation_date, "LastUpdatedDate": a.last_updated_date}

        return page(
            lambda n, after: self._view.list_aliases(scope.account_id, scope.region, key_id, n, after),
            limit, marker, sort_key=lambda a: a.alias_name, render=render, member="Aliases",
        )
