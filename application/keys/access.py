"""Loading a key aggregate for a caller, and changing it through the one write path."""
from __future__ import annotations

import uuid
from typing import Callable

from eventsourcing.application import AggregateNotFoundError

from application.audit.records import current_call
from application.authorization.authorizer import KeyFacts
from application.keys.resolver import KeyResolver
from application.writer import LedgerWriter, Outcome, T
from domain.errors import NotFoundError, shown
from domain.identifiers import Scope
from domain.keys.alias import Alias
from domain.keys.key import Key


class KeyAccess:
    def __init__(self, writer: LedgerWriter, resolver: KeyResolver) -> None:
        self.writer = writer
        self.resolve = resolver
        self._repository = writer.ledger.repository

    def load(self, scope: Scope, key_id: str, action: str | None = None) -> Key:
        """The key, in ``scope``, with the current call authorized on it (see KeyResolver.row_by_id)."""
        key = self.load_any(key_id)
        if key is None or key.account_id != scope.account_id or key.region != scope.region:
            raise NotFoundError(f"Key '{shown(scope.key_arn(key_id))}' does not exist")
        call = current_call.get()
        if call is not None:  # named in the audit record even if the change is refused
            call.add_resource(key.arn)
        self.resolve.authorizer.authorize_key(KeyFacts.of_key(key), action)
        return key

    def load_any(self, key_id: str) -> Key | None:
        try:
            key = self._repository.get(uuid.UUID(key_id))
        except (AggregateNotFoundError, ValueError):
            return None
        return key if isinstance(key, Key) else None

    def load_ref(self, scope: Scope, key_ref: str) -> Key:
        key_id, home = self.resolve.locate(scope, key_ref)
        return self.load(home, key_id)

    def load_alias(self, alias_id: uuid.UUID) -> Alias | None:
        try:
            alias = self._repository.get(alias_id)
        except AggregateNotFoundError:
            return None
        return alias if isinstance(alias, Alias) else None

    def change(self, scope: Scope, key_ref: str, decide: Callable[[Key], Outcome[T] | None]) -> Key:
        """Loads the key, lets ``decide`` change it, commits; repeats on a concurrent change. ``decide``
        returns None, or an Outcome naming *other* aggregates it changed and rows to write with them."""
        key_id, home = self.resolve.locate(scope, key_ref)

        def attempt() -> Outcome[Key]:
            key = self.load(home, key_id)
            outcome = decide(key) or Outcome([])
            return Outcome([key, *outcome.aggregates], key, outcome.also, outcome.after)

        return self.writer.retrying(attempt)
