"""Loading a key aggregate for a call, and changing it through the one write path."""
from __future__ import annotations

import uuid
from typing import Callable

from eventsourcing.application import AggregateNotFoundError

from application.authorization.authorizer import KeyFacts
from application.calls import Call
from application.keys.resolver import KeyResolver
from application.writer import LedgerWriter, Outcome, T
from domain.errors import NotFoundError, shown
from domain.identifiers import Scope, key_storage_id
from domain.keys.alias import Alias
from domain.keys.key import Key


class KeyAccess:
    def __init__(self, writer: LedgerWriter, resolver: KeyResolver) -> None:
        self.writer = writer
        self.resolve = resolver
        self._repository = writer.ledger.repository

    def load(self, call: Call, home: Scope, key_id: str, action: str | None = None) -> Key:
        """The key, if it lives in ``home``, with ``call`` authorized on it (see KeyResolver.row_by_id)."""
        key = self.load_any(key_storage_id(key_id, home.region))
        if key is None or key.account_id != home.account_id or key.region != home.region:
            raise NotFoundError(f"Key '{shown(home.key_arn(key_id))}' does not exist")
        call.add_resource(key.arn)  # named in the audit record even if the change is refused
        self.resolve.authorizer.authorize_key(call, KeyFacts.of_key(key), action)
        return key

    def load_any(self, storage_id: str) -> Key | None:
        """The key stored as ``storage_id`` (domain.identifiers.key_storage_id), wherever it lives."""
        try:
            key = self._repository.get(uuid.UUID(storage_id))
        except (AggregateNotFoundError, ValueError):
            return None
        return key if isinstance(key, Key) else None

    def load_ref(self, call: Call, key_ref: str) -> Key:
        key_id, home = self.resolve.locate(call, key_ref)
        return self.load(call, home, key_id)

    def load_alias(self, alias_id: uuid.UUID) -> Alias | None:
        try:
            alias = self._repository.get(alias_id)
        except AggregateNotFoundError:
            return None
        return alias if isinstance(alias, Alias) else None

    def change(self, call: Call, key_ref: str, decide: Callable[[Key], Outcome[T] | None]) -> Key:
        """Loads the key, lets ``decide`` change it, commits with ``call``'s record; repeats on a concurrent
        change. ``decide`` returns None, or an Outcome naming *other* aggregates it changed and rows to write
        with them."""
        key_id, home = self.resolve.locate(call, key_ref)

        def attempt() -> Outcome[Key]:
            key = self.load(call, home, key_id)
            outcome = decide(key) or Outcome([])
            return Outcome([key, *outcome.aggregates], key, outcome.also, outcome.after)

        return self.writer.retrying(call, attempt)
