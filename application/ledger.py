"""The event-sourced application: one event store for keys and aliases, with snapshots."""
from __future__ import annotations

import importlib
from typing import Any, Mapping

from eventsourcing.application import Application
from eventsourcing.utils import Environment, register_topic

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


class KeyLedger(Application):
    # The table names derive from this name: keyledger_events, keyledger_snapshots.
    name = "KeyLedger"
    snapshotting_intervals = {Key: SNAPSHOT_INTERVAL, Alias: SNAPSHOT_INTERVAL, Principal: SNAPSHOT_INTERVAL}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        register_moved_modules()
        super().__init__(*args, **kwargs)

    def construct_env(self, name: str, env: Mapping[str, Any] | None = None) -> Environment:
        # Settings are read in one place (infrastructure/settings.py) and handed over here. The library
        # would otherwise also read os.environ, where a stray KEYLEDGER_* variable could reconfigure it.
        merged = {"IS_SNAPSHOTTING_ENABLED": "y", **(env or {})}
        return Environment(name, merged)
