"""Turns any of the four KeyId forms into the key it names, and authorizes the call on it.

Key ids and aliases name keys of the caller's account; an ARN may name another account's key (a
cross-account call), which the evaluator then allows or refuses."""
from __future__ import annotations

from typing import Callable

from application.authorization.authorizer import Authorizer, KeyFacts
from application.calls import Call
from application.ports import KeyRow, KeyStateView
from domain.errors import NotFoundError, shown
from domain.identifiers import Scope, key_storage_id, parse_key_reference, scope_of


class KeyResolver:
    def __init__(self, view: KeyStateView, authorizer: Authorizer) -> None:
        self._view = view
        self.authorizer = authorizer
        # (call, home, alias name) -> the AWS managed key that alias names, made on first use (decision 91)
        self.managed: Callable[[Call, Scope, str], str | None] | None = None
        # Keys in custom key stores: their state as the store's connection makes it (application/keystores/keys.py)
        self.overlay: Callable[[KeyRow], KeyRow] | None = None

    def locate(self, call: Call, key_ref: str) -> tuple[str, Scope]:
        """The key id a reference names, and the scope (account, region) the key lives in. An alias is
        resolved to the key it names now."""
        scope = call.in_scope()
        ref = parse_key_reference(key_ref, scope)
        home = ref.home(scope)
        if ref.alias_name is not None:
            alias = self._view.get_alias(home.account_id, home.region, ref.alias_name)
            if alias is None:
                made = self.managed(call, home, ref.alias_name) if self.managed is not None else None
                if made is not None:
                    return made, home
                raise NotFoundError(f"Alias {shown(home.alias_arn(ref.alias_name))} is not found.")
            return alias.target_key_id, home
        assert ref.key_id is not None
        return ref.key_id, home

    def key_id(self, call: Call, key_ref: str) -> str:
        return self.locate(call, key_ref)[0]

    def row(self, call: Call, key_ref: str, action: str | None = None) -> KeyRow:
        key_id, home = self.locate(call, key_ref)
        row = self.row_by_id(call, home, key_id, action)
        if row is None:
            raise NotFoundError(f"Key '{shown(home.key_arn(key_id))}' does not exist")
        return row

    def row_in_account(self, call: Call, account_id: str, key_id: str, action: str | None = None) -> KeyRow | None:
        """The key with this id if it belongs to ``account_id`` (in any of its regions), authorized as
        ``row_by_id`` does; None otherwise, before any authorization (the XKS proxy's external keys)."""
        found = self._view.get_key(key_id)
        if found is None or found.account_id != account_id:
            return None
        return self.row_by_id(call, scope_of(account_id, found.region), key_id, action)

    def row_by_id(self, call: Call, home: Scope | None, key_id: str, action: str | None = None) -> KeyRow | None:
        """The key's row if it is in ``home`` (None: any account of any region, for a key id read from a
        ciphertext; a multi-Region key id names the related key in the call's Region), with ``call`` authorized on
        it for ``action`` (default: the call's operation)."""
        row = self._view.get_key(key_storage_id(key_id, (home or call.in_scope()).region))
        if row is None or (home is not None and (row.account_id, row.region) != (home.account_id, home.region)):
            return None
        if self.overlay is not None:
            row = self.overlay(row)
        call.add_resource(row.arn)  # the key a call named is its resource, whether the call succeeds or not
        self.authorizer.authorize_key(call, KeyFacts.of_row(row), action)
        return row
