"""HealthService (application/health.py) with a stand-in probe and clock, and the SQLite side of the real
probe (infrastructure/health_probe.py): what makes the service not ready, what makes it ready again, and
that health requests share probes instead of each writing to the database."""
from __future__ import annotations

import asyncio
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa

from application.health import HealthService, Readiness
from infrastructure.health_probe import SqlStorageProbe
from infrastructure.tables import metadata


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Probe:
    def __init__(self, reason: str | None = None) -> None:
        self.reason = reason
        self.calls = 0
        self.gate = threading.Event()
        self.gate.set()

    def check(self) -> str | None:
        self.calls += 1
        self.gate.wait(30)
        return self.reason


@dataclass
class AuditStats:
    last_failed_at: float | None = None
    last_committed_at: float | None = None
    last_failure: str | None = None


def service(probe: Probe, clock: Clock, audit: AuditStats | None = None, sealed: str | None = None,
            timeout: float = 1.0) -> HealthService:
    return HealthService(lambda: sealed, probe, audit, probe_timeout=timeout, cache_seconds=1.0, clock=clock)


def ready(health: HealthService) -> Readiness:
    return asyncio.run(health.readiness())


def test_ready_and_what_the_body_says():
    state = ready(service(Probe(), Clock()))
    assert state.ready and state.body() == {"status": "ready"}


def test_sealed_wins_and_probes_nothing():
    probe = Probe()
    state = ready(service(probe, Clock(), sealed="no root key"))
    assert state.body() == {"status": "sealed", "reason": "no root key"} and probe.calls == 0


def test_a_failed_probe_is_not_ready_with_its_reason():
    state = ready(service(Probe("the database is locked"), Clock()))
    assert state.body() == {"status": "not ready", "reason": "the database is locked"}


def test_probe_results_are_shared_for_the_cache_period():
    probe, clock = Probe(), Clock()
    health = service(probe, clock)
    for _ in range(5):
        assert ready(health).ready
    assert probe.calls == 1
    clock.now += 1.0
    assert ready(health).ready and probe.calls == 2


def test_recovery_is_noticed_by_the_next_probe():
    probe, clock = Probe("the database is locked"), Clock()
    health = service(probe, clock)
    assert not ready(health).ready
    probe.reason = None
    assert not ready(health).ready  # the cached answer
    clock.now += 1.0
    assert ready(health).ready


def test_a_probe_that_hangs_answers_not_ready_and_is_not_started_twice():
    probe, clock = Probe(), Clock()
    probe.gate.clear()
    health = service(probe, clock, timeout=0.01)
    state = ready(health)
    assert state.status == "not ready" and "did not answer" in state.reason
    clock.now += 5
    assert not ready(health).ready and probe.calls == 1  # still the first probe, still running
    probe.gate.set()
    for _ in range(200):  # the hung probe ends; its result is taken and the next request is answered
        clock.now += 5
        if ready(health).ready:
            break
    assert ready(health).ready


def test_an_audit_failure_is_not_ready_until_storage_proves_writable_again():
    probe, clock = Probe(), Clock()
    audit = AuditStats(last_committed_at=90.0)
    health = service(probe, clock, audit)
    assert ready(health).ready  # probe at 100
    audit.last_failed_at, audit.last_failure = 100.5, "OperationalError"
    state = ready(health)
    assert state.body() == {"status": "not ready", "reason": "the audit trail's last commit failed (OperationalError)"}
    clock.now = 101.5  # a new probe writes at 101.5, after the failure
    assert ready(health).ready
    audit.last_failed_at = 102.0
    assert not ready(health).ready
    audit.last_committed_at = 102.5  # or a batch commits
    assert ready(health).ready


# -- the SQLite probe ------------------------------------------------------------------------------------------

def database(tmp_path: Path) -> sa.engine.Engine:
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'probe.db'}")
    metadata.create_all(engine)
    return engine


def test_sqlite_probe_writes_its_row(tmp_path):
    engine = database(tmp_path)
    probe = SqlStorageProbe(engine, timeout=0.2)
    assert probe.check() is None and probe.check() is None
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM health_probe")).scalar() == 1


def test_sqlite_probe_reports_another_writer_and_then_recovers(tmp_path):
    engine = database(tmp_path)
    probe = SqlStorageProbe(engine, timeout=0.1)
    holder = sqlite3.connect(tmp_path / "probe.db", isolation_level=None)
    try:
        holder.execute("BEGIN EXCLUSIVE")
        assert probe.check() == "the database is locked: no write transaction could start within 0.1 s"
        holder.rollback()
        assert probe.check() is None
    finally:
        holder.close()


def test_sqlite_probe_does_not_recreate_a_missing_database(tmp_path):
    engine = database(tmp_path)
    (tmp_path / "probe.db").unlink()
    assert SqlStorageProbe(engine, timeout=0.1).check() == "the database cannot be reached"
    assert not (tmp_path / "probe.db").exists()
