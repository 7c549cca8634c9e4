"""Stored event states as the tests that tamper with the database read and write them: compressed states
(infrastructure/compression.py) shown as their JSON, with the tag of a tagged event (domain/audit/seals.py)
kept at the end as it was, and written back compressed, so a test edits the JSON it means to change."""
from __future__ import annotations

import sqlite3
from pathlib import Path

from domain.audit.seals import split_tagged
from infrastructure.compression import LedgerCompressor

_COMPRESSOR = LedgerCompressor()


def plain(state: bytes) -> bytes:
    """The state's JSON (and its tag, when it has one)."""
    state = bytes(state)
    payload, tag = split_tagged(state)
    return _COMPRESSOR.decompress(payload) + (state[len(payload):] if tag is not None else b"")


def stored(plain_state: bytes) -> bytes:
    """What the service stores for ``plain_state``: its JSON compressed (any tag after it left as it is)."""
    payload, _ = split_tagged(plain_state)
    return _COMPRESSOR.compress(payload) + plain_state[len(payload):]


def sqlite_states(database: Path) -> bytes:
    """The JSON of every stored event and snapshot in a SQLite database: what scans of the files for secrets add
    (compressed, a secret in a state would not show in the files' bytes)."""
    db = sqlite3.connect(database)
    try:
        rows = db.execute("SELECT state FROM keyledger_events UNION ALL SELECT state FROM keyledger_snapshots").fetchall()
    finally:
        db.close()
    return b"\n".join(plain(state) for (state,) in rows)
