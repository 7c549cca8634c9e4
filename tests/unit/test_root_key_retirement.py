"""Retirement against a late writer (decisions 107 and 201), on a real SQLite file through the application service:
`retire` first waits one key-cache period, so a value that a process with a stale cache wraps under the old version
meanwhile is re-wrapped before the old version is destroyed, never lost with it."""
from __future__ import annotations

import struct
from pathlib import Path

import sqlalchemy as sa

from application.calls import Operator
from infrastructure.bootstrap import build_runtime
from infrastructure.service_secrets import SERVICE_SECRET_PURPOSE
from infrastructure.settings import Settings
from infrastructure.tables import service_secrets

OPERATOR = Operator(user="test", host="test")
LATE = b"wrapped by a process that still read version 1"


def test_a_value_wrapped_under_the_old_version_during_the_wait_is_rewrapped_not_destroyed(tmp_path: Path):
    runtime = build_runtime(Settings.load(environ={"KEYLEDGER_KEY_CACHE_SECONDS": "0.5"}, data_dir=tmp_path))
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'keyledger.db'}")
    try:
        service = runtime.services.root_key
        keyring = runtime.root_version.keyring
        assert service.rotate(OPERATOR)["version"] == 2
        waits: list[float] = []

        def late_writer_commits_during_the_wait(seconds: float) -> None:
            waits.append(seconds)
            wrapped = keyring.wrap(LATE, purpose=SERVICE_SECRET_PURPOSE, key_id="late", version=1)
            with engine.begin() as conn:
                conn.execute(service_secrets.insert().values(name="late", wrapped=wrapped))

        service._sleep = late_writer_commits_during_the_wait
        result = service.retire(1, OPERATOR)
        assert waits == [0.5] and result["rewrapped"] == 1
        with engine.connect() as conn:
            wrapped = bytes(conn.execute(sa.select(service_secrets.c.wrapped).where(
                service_secrets.c.name == "late")).scalar_one())
        assert struct.unpack(">I", wrapped[:4])[0] == 2
        assert keyring.unwrap(wrapped, purpose=SERVICE_SECRET_PURPOSE, key_id="late") == LATE
        assert keyring.version(1) is None and service.status()["retired"] == [1]
    finally:
        engine.dispose()
        runtime.close()
