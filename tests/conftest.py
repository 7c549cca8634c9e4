from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Iterator

import pytest

from tests.servers import Server, drop_postgres_schema, new_postgres_schema, postgres_url

BACKENDS = ["sqlite", "postgres"]

# Every `keyledger serve` and CLI run a test starts imports the whole package (~160 modules of ours). With
# PYTHONDONTWRITEBYTECODE set (CI sets it), each one compiled them all from source again: about a tenth of a
# server's start. The bytecode goes to a cache outside the checkout instead, shared by the test workers.
os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
os.environ.setdefault("PYTHONPYCACHEPREFIX", os.path.join(tempfile.gettempdir(), "keyledger-test-pycache"))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if postgres_url() is None and os.environ.get("CI"):
        raise pytest.UsageError("CI is set but KEYLEDGER_TEST_POSTGRES_URL is not: the PostgreSQL tests must run in CI.")


def require_postgres() -> str:
    url = postgres_url()
    if url is None:
        pytest.skip("PostgreSQL tests need KEYLEDGER_TEST_POSTGRES_URL=postgresql+psycopg://user@host:port/db "
                    "(.ci/run sets it); skipped because it is unset.")
    return url


class ServerFactory:
    """Starts servers on a backend; cleans up data dirs' schemas at the end."""

    def __init__(self, backend: str, tmp_path: Path) -> None:
        self.backend = backend
        self.tmp_path = tmp_path
        self.servers: list[Server] = []
        self.schemas: list[str] = []
        self.base_url = require_postgres() if backend == "postgres" else None
        self._database_url: str | None = None

    def database_url(self) -> str | None:
        if self.backend == "postgres" and self._database_url is None:
            assert self.base_url is not None
            self._database_url, schema = new_postgres_schema(self.base_url)
            self.schemas.append(schema)
        return self._database_url

    def start(self, name: str = "server", **env: str) -> Server:
        server = Server(data_dir=self.tmp_path / name, database_url=self.database_url(), env=env)
        self.servers.append(server)
        return server.start()

    def close(self) -> None:
        for server in self.servers:
            server.stop()
        for schema in self.schemas:
            assert self.base_url is not None
            drop_postgres_schema(self.base_url, schema)


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    if request.param == "postgres":
        require_postgres()
    return request.param


@pytest.fixture
def servers(backend: str, tmp_path: Path) -> Iterator[ServerFactory]:
    factory = ServerFactory(backend, tmp_path)
    try:
        yield factory
    finally:
        factory.close()


@pytest.fixture(scope="module", params=BACKENDS)
def shared_server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One server per test module and backend, for tests that only add keys of their own."""
    if request.param == "postgres":
        require_postgres()
    factory = ServerFactory(request.param, tmp_path_factory.mktemp(f"shared-{request.param}"))
    try:
        yield factory.start()
    finally:
        factory.close()


@pytest.fixture
def kms(shared_server: Server):
    return shared_server.client()
