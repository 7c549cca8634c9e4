"""The Alias aggregate. Its id is derived from (partition, account, region, name), so two concurrent
CreateAlias calls for one name collide in the event store and only one wins."""
from __future__ import annotations

from datetime import datetime
from uuid import UUID

from eventsourcing.domain import Aggregate


class Alias(Aggregate):
    class Created(Aggregate.Created):
        alias_name: str
        account_id: str
        region: str
        target_key_id: str

    class Retargeted(Aggregate.Event):
        target_key_id: str

        def apply(self, alias: Alias) -> None:
            alias.target_key_id = self.target_key_id

    class Deleted(Aggregate.Event):
        def apply(self, alias: Alias) -> None:
            alias.deleted = True

    class Recreated(Aggregate.Event):
        """An alias name used again after DeleteAlias: same aggregate, new life."""

        target_key_id: str

        def apply(self, alias: Alias) -> None:
            alias.deleted = False
            alias.target_key_id = self.target_key_id
            alias.recreated_on = self.timestamp

    def __init__(self, *, alias_name: str, account_id: str, region: str, target_key_id: str) -> None:
        self.alias_name = alias_name
        self.account_id = account_id
        self.region = region
        self.target_key_id = target_key_id
        self.deleted = False
        self.recreated_on: datetime | None = None

    @classmethod
    def create(cls, *, alias_id: UUID, alias_name: str, account_id: str, region: str, target_key_id: str,
               at: datetime) -> Alias:
        return cls._create(cls.Created, id=alias_id, timestamp=at, alias_name=alias_name, account_id=account_id,
                           region=region, target_key_id=target_key_id)

    @property
    def creation_date(self) -> datetime:
        return self.recreated_on or self.created_on

    def retarget(self, target_key_id: str, at: datetime) -> None:
        self.trigger_event(self.Retargeted, timestamp=at, target_key_id=target_key_id)

    def delete(self, at: datetime) -> None:
        self.trigger_event(self.Deleted, timestamp=at)

    def recreate(self, target_key_id: str, at: datetime) -> None:
        self.trigger_event(self.Recreated, timestamp=at, target_key_id=target_key_id)
