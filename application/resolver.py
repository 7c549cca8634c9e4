"""Turns any of the four KeyId forms into the key it names, within the caller's account and region."""
from __future__ import annotations

from application.audit_records import current_call
from application.ports import KeyRow, KeyStateView
from domain.errors import NotFoundError
from domain.identifiers import Scope, parse_key_reference


class KeyResolver:
    def __init__(self, view: KeyStateView) -> None:
        self._view = view

    def key_id(self, scope: Scope, key_ref: str) -> str:
        ref = parse_key_reference(key_ref, scope)
        if ref.alias_name is not None:
            alias = self._view.get_alias(scope.account_id, scope.region, ref.alias_name)
            if alias is None:
                raise NotFoundError(f"Alias {scope.alias_arn(ref.alias_name)} is not found.")
            return alias.target_key_id
        assert ref.key_id is not None
        return ref.key_id

    def row(self, scope: Scope, key_ref: str) -> KeyRow:
        key_id = self.key_id(scope, key_ref)
        row = self.row_by_id(scope, key_id)
        if row is None:
            raise NotFoundError(f"Key '{scope.key_arn(key_id)}' does not exist")
        return row

    def row_by_id(self, scope: Scope, key_id: str) -> KeyRow | None:
        row = self._view.get_key(key_id)
        if row is None or row.account_id != scope.account_id or row.region != scope.region:
            return None
        call = current_call.get()
        if call is not None:  # the key a call named is its resource, whether the call succeeds or not
            call.add_resource(row.arn)
        return row
