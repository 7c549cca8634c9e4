"""The event-sourced application: one event store for keys and aliases, with snapshots."""
from __future__ import annotations

from typing import Any, Mapping

from eventsourcing.application import Application
from eventsourcing.utils import Environment

from domain.alias import Alias
from domain.key import Key
from domain.principal import Principal

SNAPSHOT_INTERVAL = 50


class KeyLedger(Application):
    # The table names derive from this name: keyledger_events, keyledger_snapshots.
    name = "KeyLedger"
    snapshotting_intervals = {Key: SNAPSHOT_INTERVAL, Alias: SNAPSHOT_INTERVAL, Principal: SNAPSHOT_INTERVAL}

    def construct_env(self, name: str, env: Mapping[str, Any] | None = None) -> Environment:
        # Settings are read in one place (infrastructure/settings.py) and handed over here. The library
        # would otherwise also read os.environ, where a stray KEYLEDGER_* variable could reconfigure it.
        merged = {"IS_SNAPSHOTTING_ENABLED": "y", **(env or {})}
        return Environment(name, merged)
