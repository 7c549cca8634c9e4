"""Turns any of the four KeyId forms into the key it names, and authorizes the call on it.

Key ids and aliases name keys of the caller's account; an ARN may name another account's key (a
cross-account call), which the evaluator then allows or refuses."""
from __future__ import annotations

from application.audit.records import current_call
from application.authorization.authorizer import Authorizer, KeyFacts
from application.ports import KeyRow, KeyStateView
from domain.errors import NotFoundError, shown
from domain.identifiers import Scope, parse_key_reference


class KeyResolver:
    def __init__(self, view: KeyStateView, authorizer: Authorizer) -> None:
        self._view = view
        self.authorizer = authorizer

    def locate(self, scope: Scope, key_ref: str) -> tuple[str, Scope]:
        """The key id a reference names, and the scope (account, region) the key lives in."""
        ref = parse_key_reference(key_ref, scope)
        home = ref.home(scope)
        if ref.alias_name is not None:
            alias = self._view.get_alias(home.account_id, home.region, ref.alias_name)
            if alias is None:
                raise NotFoundError(f"Alias {shown(home.alias_arn(ref.alias_name))} is not found.")
            return alias.target_key_id, home
        assert ref.key_id is not None
        return ref.key_id, home

    def key_id(self, scope: Scope, key_ref: str) -> str:
        return self.locate(scope, key_ref)[0]

    def row(self, scope: Scope, key_ref: str, action: str | None = None) -> KeyRow:
        key_id, home = self.locate(scope, key_ref)
        row = self.row_by_id(home, key_id, action)
        if row is None:
            raise NotFoundError(f"Key '{shown(home.key_arn(key_id))}' does not exist")
        return row

    def row_by_id(self, scope: Scope | None, key_id: str, action: str | None = None) -> KeyRow | None:
        """The key's row if it is in ``scope`` (None: any account of any region, for a key id read from a
        ciphertext), with the current call authorized on it for ``action`` (default: the call's operation)."""
        row = self._view.get_key(key_id)
        if row is None or (scope is not None and (row.account_id, row.region) != (scope.account_id, scope.region)):
            return None
        call = current_call.get()
        if call is not None:  # the key a call named is its resource, whether the call succeeds or not
            call.add_resource(row.arn)
        self.authorizer.authorize_key(KeyFacts.of_row(row), action)
        return row
