"""The root key's history as an aggregate: which versions exist, which one wraps now, whether the rows have
been re-wrapped under it, and which versions were retired (destroyed in their provider).

One aggregate for the deployment (a fixed id). Its events are in the ledger like every other change, so the
audit chain and point in time cover root-key rotation: "which root version wrapped the rows on date D, and
when was version 1 destroyed" is a replay. No key material is in any event: versions are numbers.
"""
from __future__ import annotations

import uuid
from datetime import datetime

from eventsourcing.domain import Aggregate

from domain.errors import ValidationError

ROOT_KEY_HISTORY_ID = uuid.uuid5(uuid.NAMESPACE_URL, "keyledger:root-key-history")
ACTIVE, RETIRED = "active", "retired"


class RootKeyHistory(Aggregate):
    class Started(Aggregate.Created):
        provider: str
        versions: list[int]

    class VersionAdded(Aggregate.Event):
        version: int
        provider: str

        def apply(self, history: RootKeyHistory) -> None:
            history.states = {**history.states, str(self.version): ACTIVE}
            history.current = self.version
            history.rewrapped = False

    class RewrapCompleted(Aggregate.Event):
        version: int
        rows: int

        def apply(self, history: RootKeyHistory) -> None:
            history.rewrapped = True

    class VersionRetired(Aggregate.Event):
        version: int

        def apply(self, history: RootKeyHistory) -> None:
            history.states = {**history.states, str(self.version): RETIRED}

    def __init__(self, provider: str, versions: list[int]) -> None:
        self.provider = provider
        # str keys: the ledger's transcoder keeps JSON-like state; versions are small integers.
        self.states: dict[str, str] = {str(v): ACTIVE for v in versions}
        self.current = max(versions)
        self.rewrapped = True

    @classmethod
    def start(cls, provider: str, versions: list[int], at: datetime) -> RootKeyHistory:
        if not versions:
            raise ValidationError("The root key has no version to start its history from.")
        return cls._create(cls.Started, id=ROOT_KEY_HISTORY_ID, provider=provider, versions=sorted(versions),
                           timestamp=at)

    def active(self) -> list[int]:
        return sorted(int(v) for v, s in self.states.items() if s == ACTIVE)

    def retired(self) -> list[int]:
        return sorted(int(v) for v, s in self.states.items() if s == RETIRED)

    def known(self) -> list[int]:
        return sorted(int(v) for v in self.states)

    def add_version(self, version: int, provider: str, at: datetime) -> None:
        if version <= max(self.known()):
            raise ValidationError(f"Root key version {version} is not newer than every version so far.")
        self.trigger_event(self.VersionAdded, version=version, provider=provider, timestamp=at)

    def complete_rewrap(self, rows: int, at: datetime) -> None:
        if not self.rewrapped:
            self.trigger_event(self.RewrapCompleted, version=self.current, rows=rows, timestamp=at)

    def retire(self, version: int, at: datetime) -> None:
        state = self.states.get(str(version))
        if state is None:
            raise ValidationError(f"There is no root key version {version}.")
        if state == RETIRED:
            raise ValidationError(f"Root key version {version} is already retired.")
        if version == self.current:
            raise ValidationError(f"Root key version {version} is the current version; rotate first.")
        if not self.rewrapped:
            raise ValidationError(f"The rotation to version {self.current} has not finished re-wrapping; "
                                  "run 'keyledger root-key rotate' again to finish it, then retire.")
        self.trigger_event(self.VersionRetired, version=version, timestamp=at)
