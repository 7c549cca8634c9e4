"""The event-sourced application: one event store for keys, aliases, principals and the audit log, with
snapshots; every stored event and snapshot authenticated (``AuthenticatedMapper``)."""
from __future__ import annotations

import hmac
import importlib
from typing import Any, Mapping

from eventsourcing.application import Application
from eventsourcing.domain import DomainEventProtocol
from eventsourcing.persistence import Mapper, StoredEvent
from eventsourcing.utils import Environment, get_topic, register_topic

from domain.audit.log import AuditCheckpoints, AuditLog
from domain.audit.seals import RowSeal, event_tag, split_tagged, tag_state
from domain.errors import TamperedStateError
from domain.keys.alias import Alias
from domain.keys.key import Key
from domain.principals.principal import Principal

SNAPSHOT_INTERVAL = 50

# Stored events and snapshots name their class by topic ("module:Class.Event"). These modules moved into
# packages (docs/decisions.md, "Layout"); events stored before that still carry the old module names.
MOVED_MODULES = {
    "domain.key": "domain.keys.key", "domain.alias": "domain.keys.alias", "domain.key_grants": "domain.keys.grants",
    "domain.key_rotation": "domain.keys.rotation", "domain.key_import_events": "domain.keys.import_events",
    "domain.principal": "domain.principals.principal", "domain.audit_log": "domain.audit.log",
}
_OLD_NAME = {new: old for old, new in MOVED_MODULES.items()}


def register_moved_modules() -> None:
    """Old topics resolve to the moved modules (idempotent)."""
    for old, new in MOVED_MODULES.items():
        register_topic(old, importlib.import_module(new))


def with_moved_topics(topics: frozenset[str]) -> frozenset[str]:
    """``topics`` and the names the same event classes were stored under before their modules moved."""
    old = set()
    for topic in topics:
        module, _, name = topic.partition(":")
        if module in _OLD_NAME:
            old.add(f"{_OLD_NAME[module]}:{name}")
    return topics | frozenset(old)


# The audit log's own events need no tag: the chain covers each record, and signatures the checkpoints.
CHAIN_COVERED_TOPICS = with_moved_topics(frozenset(get_topic(cls) for cls in (
    AuditLog.Started, AuditLog.RecordAppended, AuditCheckpoints.Started, AuditCheckpoints.CheckpointSigned)))


class LedgerTagError(TamperedStateError):
    """A stored event or snapshot whose tag is missing or does not match: it was not written by the service."""


class AuthenticatedMapper(Mapper):
    """The library's mapper, plus a tag (domain/audit/seals.py) at the end of every stored state but the
    audit log's. With a row key, writing tags and reading checks them: an event or snapshot changed, moved
    to another aggregate or version, or written by anyone without the key fails the read (LedgerTagError)
    and so the call. Without a row key (a sealed service, an auditor's copy) reads strip the tag unchecked
    and writes are refused; `keyledger audit verify` then proves the events through the chain instead."""

    row_key: bytes | None = None

    def to_stored_event(self, domain_event: DomainEventProtocol) -> StoredEvent:
        stored = super().to_stored_event(domain_event)
        if stored.topic in CHAIN_COVERED_TOPICS:
            return stored
        if self.row_key is None:
            raise RuntimeError("events cannot be written without the ledger's row key (the service is sealed)")
        return StoredEvent(stored.originator_id, stored.originator_version, stored.topic,
                           tag_state(self.row_key, stored.originator_id, stored.originator_version, stored.topic,
                                     stored.state))

    def to_domain_event(self, stored_event: StoredEvent) -> DomainEventProtocol:
        if stored_event.topic not in CHAIN_COVERED_TOPICS:
            stored_event = StoredEvent(stored_event.originator_id, stored_event.originator_version,
                                       stored_event.topic, self.checked_payload(stored_event))
        return super().to_domain_event(stored_event)

    def checked_payload(self, stored_event: Any) -> bytes:
        """The state of a tagged event without its tag, the tag checked when there is a row key (LedgerTagError
        when it is missing or does not match). Also what replay's decoder reads (projections/replay_decode.py)."""
        payload, tag = split_tagged(stored_event.state)
        if self.row_key is not None:
            expected = event_tag(self.row_key, stored_event.originator_id, stored_event.originator_version,
                                 stored_event.topic, payload)
            if tag is None or not hmac.compare_digest(tag, expected):
                raise LedgerTagError(
                    f"event {stored_event.topic.rpartition(':')[2]} version {stored_event.originator_version} "
                    f"of aggregate {stored_event.originator_id}")
        return payload


class KeyLedger(Application):
    # The table names derive from this name: keyledger_events, keyledger_snapshots.
    name = "KeyLedger"
    snapshotting_intervals = {Key: SNAPSHOT_INTERVAL, Alias: SNAPSHOT_INTERVAL, Principal: SNAPSHOT_INTERVAL}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        register_moved_modules()
        super().__init__(*args, **kwargs)

    def construct_mapper(self) -> Mapper:
        return self.factory.mapper(transcoder=self.construct_transcoder(), mapper_class=AuthenticatedMapper)

    def authenticate_with(self, row_key: bytes) -> None:
        """From now on every event and snapshot written is tagged, and every one read is checked."""
        self.mapper.row_key = row_key  # type: ignore[attr-defined]

    @property
    def row_seal(self) -> RowSeal | None:
        """Tags for read-model rows, under the same row key (None on a sealed service)."""
        key = self.mapper.row_key  # type: ignore[attr-defined]
        return RowSeal(key) if key is not None else None

    def construct_env(self, name: str, env: Mapping[str, Any] | None = None) -> Environment:
        # Settings are read in one place (infrastructure/settings.py) and handed over here. The library
        # would otherwise also read os.environ, where a stray KEYLEDGER_* variable could reconfigure it.
        merged = {"IS_SNAPSHOTTING_ENABLED": "y", **(env or {})}
        return Environment(name, merged)
