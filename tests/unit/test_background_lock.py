"""The background passes (maintenance, checkpoint signing) run in one process at a time: per data directory on
SQLite (a file lock), per database schema on PostgreSQL (an advisory lock), with failover."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest
import sqlalchemy as sa

from infrastructure.leadership import AdvisoryLeadership, FileLeadership, background_holder, only_leader
from infrastructure.settings import Settings
from tests.conftest import require_postgres
from tests.servers import drop_postgres_schema, new_postgres_schema

ROOT = Path(__file__).resolve().parents[2]


def _held_by_another_process(path: Path) -> bool:
    code = ("import sys; sys.path.insert(0, sys.argv[1]); from pathlib import Path; "
            "from infrastructure.leadership import FileLeadership; print(FileLeadership(Path(sys.argv[2])).held())")
    out = subprocess.run([sys.executable, "-c", code, str(ROOT), str(path)], capture_output=True, text=True,
                         check=True)
    return out.stdout.strip() == "False"


def test_every_pass_of_the_holding_process_runs(tmp_path: Path) -> None:
    lock = FileLeadership(tmp_path / "background.lock")
    ran: list[str] = []
    maintenance = only_leader(lock, lambda: ran.append("maintenance"))
    checkpoints = only_leader(lock, lambda: ran.append("checkpoints"))
    maintenance()
    checkpoints()
    maintenance()
    assert ran == ["maintenance", "checkpoints", "maintenance"] and lock.holding


def test_another_process_waits_until_the_holder_is_gone(tmp_path: Path) -> None:
    path = tmp_path / "background.lock"
    assert not _held_by_another_process(path)  # free: the other process takes it (and exits, releasing it)
    lock = FileLeadership(path)
    assert lock.held()
    assert _held_by_another_process(path)
    lock.release()
    assert not lock.holding and not _held_by_another_process(path)


@pytest.fixture
def schemas() -> Iterator[tuple[str, str]]:
    base = require_postgres()
    (first, first_schema), (second, second_schema) = new_postgres_schema(base), new_postgres_schema(base)
    try:
        yield first, second
    finally:
        drop_postgres_schema(base, first_schema)
        drop_postgres_schema(base, second_schema)


def _terminate(url: str, application_name: str) -> None:
    engine = sa.create_engine(url)
    try:
        with engine.begin() as connection:
            ended = connection.execute(sa.text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                               "WHERE application_name = :name"), {"name": application_name}).all()
        assert ended == [(True,)]
    finally:
        engine.dispose()


def test_one_node_per_schema_leads_and_a_follower_takes_over(schemas: tuple[str, str]) -> None:
    url, other_url = schemas
    a = AdvisoryLeadership(url, "keyledger node-a:1 pid 1", retry_seconds=0)
    b = AdvisoryLeadership(url, "keyledger node-b:2 pid 2", retry_seconds=0)
    elsewhere = AdvisoryLeadership(other_url, "keyledger node-c:3 pid 3", retry_seconds=0)
    engine = sa.create_engine(url)
    try:
        assert a.held() and not b.held() and a.held()
        assert elsewhere.held()  # another installation (schema) on the same server elects its own leader
        holder = background_holder(Settings(database_url=url, port=1), engine)
        assert holder.startswith("keyledger node-a:1 pid 1 (PostgreSQL advisory lock")
        a.release()  # graceful stop: the lock goes with the session
        assert b.held() and b.holding
        assert background_holder(Settings(database_url=url, port=2), engine).startswith("keyledger node-b:2 pid 2")
        # The leader's connection dies (a restarted database, a network cut): its next look ends its leadership,
        # and the lock, released with the session, is free for whoever asks next.
        _terminate(url, "keyledger node-b:2 pid 2")
        assert not b.held() and not b.holding
        a = AdvisoryLeadership(url, "keyledger node-a:1 pid 4", retry_seconds=0)
        assert a.held() and not b.held()  # b reconnects as a follower
    finally:
        for leadership in (a, b, elsewhere):
            leadership.release()
        engine.dispose()
    engine = sa.create_engine(url)
    try:
        assert "no node holds" in background_holder(Settings(database_url=url), engine)
    finally:
        engine.dispose()


def test_a_follower_asks_at_most_once_per_interval(schemas: tuple[str, str]) -> None:
    url, _ = schemas
    now = [0.0]
    a = AdvisoryLeadership(url, "keyledger a", retry_seconds=1.0, clock=lambda: now[0])
    b = AdvisoryLeadership(url, "keyledger b", retry_seconds=1.0, clock=lambda: now[0])
    try:
        assert a.held() and not b.held()
        a.release()
        assert not b.held()  # within the interval: the answer it had
        now[0] = 1.0
        assert b.held()
    finally:
        a.release()
        b.release()
