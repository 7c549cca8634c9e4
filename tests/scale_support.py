"""A runtime on either backend, built by build_runtime on a real SQLite file or a fresh PostgreSQL schema, driven
through the services with the Call the request pipeline would make (the scale tests of issue 13)."""
from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any, Iterator

import pytest

from domain.identifiers import Scope
from infrastructure.bootstrap import Runtime, build_runtime, start_serving
from infrastructure.settings import Settings
from tests.calls import api_call
from tests.servers import drop_postgres_schema, new_postgres_schema, postgres_url

SCOPE = Scope("111122223333", "us-east-1")
ROOT = f"arn:aws:iam::{SCOPE.account_id}:root"


class Ledger:
    """One data directory (and database): its runtime, restartable, with a movable service clock."""

    def __init__(self, data_dir: Path, database_url: str | None, **settings: Any) -> None:
        self.data_dir, self.database_url, self.settings = data_dir, database_url, settings
        self.rt: Runtime = self._build()

    def _build(self) -> Runtime:
        return build_runtime(Settings.load(environ={}, data_dir=self.data_dir, database_url=self.database_url,
                                           **self.settings))

    def restart(self, serve: bool = False) -> None:
        self.rt.close()
        self.rt = self._build()
        if serve:
            start_serving(self.rt)

    def now(self) -> datetime:
        return self.rt.now()

    def advance(self, seconds: float) -> None:
        self.rt.clock_service.advance(seconds)

    def do(self, method: str, *args: Any, principal: str = ROOT, **kwargs: Any) -> Any:
        service, operation = method.split(".")
        fn = getattr(getattr(self.rt.services, service), operation)
        call = api_call("".join(p.title() for p in operation.split("_")), principal, SCOPE, at=self.now())
        return fn(call, *args, **kwargs)

    def create_key(self, **kwargs: Any) -> str:
        return self.do("keys.create_key", **kwargs)["KeyMetadata"]["KeyId"]

    def close(self) -> None:
        self.rt.close()


def grow_history(ledger: Ledger, key_id: str, records: int, description: str) -> None:
    """``records`` Encrypt records (group-committed batches), one key change with its events, one checkpoint."""
    from bench.scale import add_records

    add_records(ledger.rt, records, [key_id])
    ledger.do("keys.update_key_description", key_id, description)
    services = ledger.rt.services
    assert services is not None
    services.checkpointer.checkpoint_if_due(force=True)


@pytest.fixture(params=["sqlite", "postgres"])
def ledger_backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Path, str | None]]:
    if request.param == "sqlite":
        yield tmp_path / "data", None
        return
    base = postgres_url()
    if base is None:
        pytest.skip("PostgreSQL tests need KEYLEDGER_TEST_POSTGRES_URL")
    url, schema = new_postgres_schema(base)
    try:
        yield tmp_path / "data", url
    finally:
        drop_postgres_schema(base, schema)


@pytest.fixture
def ledger(ledger_backend: tuple[Path, str | None]) -> Iterator[Ledger]:
    """A runtime on each backend, with nothing in it yet."""
    data_dir, url = ledger_backend
    instance = Ledger(data_dir, url)
    try:
        yield instance
    finally:
        instance.close()
