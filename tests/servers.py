"""Real keyledger servers for tests: a `keyledger serve` subprocess on 127.0.0.1 with its own data
directory, and on PostgreSQL its own schema, so parallel test workers never see each other's keys."""
from __future__ import annotations

import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.parse
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import httpx
import sqlalchemy as sa
from botocore.config import Config

from tests.certificates import TlsFiles

ROOT = Path(__file__).resolve().parent.parent
ADMIN_KEY_ID = "AKIAKEYLEDGERTESTS01"
ADMIN_SECRET = "keyledger-test-secret-0123456789abcdefgh"
ACCOUNT_ID = "111122223333"
POSTGRES_URL_VARIABLE = "KEYLEDGER_TEST_POSTGRES_URL"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def postgres_url() -> str | None:
    return os.environ.get(POSTGRES_URL_VARIABLE) or None


def new_postgres_schema(base_url: str) -> tuple[str, str]:
    """Creates a fresh schema and returns (url that uses it as search_path, schema name)."""
    schema = "kl_" + uuid.uuid4().hex[:12]
    engine = sa.create_engine(base_url)
    with engine.begin() as conn:
        conn.execute(sa.text(f"CREATE SCHEMA {schema}"))
    engine.dispose()
    separator = "&" if "?" in base_url else "?"
    return f"{base_url}{separator}options=-csearch_path%3D{schema}", schema


def drop_postgres_schema(base_url: str, schema: str) -> None:
    engine = sa.create_engine(base_url)
    with engine.begin() as conn:
        conn.execute(sa.text(f"DROP SCHEMA IF EXISTS {schema} CASCADE"))
    engine.dispose()


@dataclass
class Server:
    data_dir: Path
    database_url: str | None = None
    port: int = field(default_factory=free_port)
    env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen | None = None
    output: Path | None = None
    # HTTPS with this certificate and key (tests.certificates.self_signed); clients trust exactly this cert.
    tls: TlsFiles | None = None
    cwd: Path = ROOT  # the process's working directory (a node without a data directory must write nothing there)
    args: tuple[str, ...] = ()  # more `keyledger serve` flags

    @property
    def endpoint(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    @property
    def verify(self) -> ssl.SSLContext | bool:
        """For httpx: verify against the server's own certificate (it is self-signed)."""
        return ssl.create_default_context(cafile=str(self.tls.cert)) if self.tls else True

    def start(self, timeout: float = 30.0) -> Server:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("KEYLEDGER_", "AWS_"))}
        env.update({
            "KEYLEDGER_DATA_DIR": str(self.data_dir), "KEYLEDGER_PORT": str(self.port),
            "KEYLEDGER_ADMIN_ACCESS_KEY_ID": ADMIN_KEY_ID, "KEYLEDGER_ADMIN_SECRET_ACCESS_KEY": ADMIN_SECRET,
            "KEYLEDGER_LOG_LEVEL": "warning", "PYTHONPATH": str(ROOT),
        })
        if self.database_url:
            env["KEYLEDGER_DATABASE_URL"] = self.database_url
        if self.tls:
            env.update(KEYLEDGER_TLS_CERT=str(self.tls.cert), KEYLEDGER_TLS_KEY=str(self.tls.key))
        env.update(self.env)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.output = self.data_dir.parent / f"server-{self.port}.log"
        with open(self.output, "ab") as out:
            self.process = subprocess.Popen([sys.executable, "-m", "api", "serve", *self.args], cwd=self.cwd, env=env,
                                            stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        verify = self.verify
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"keyledger exited with {self.process.returncode}:\n{self.log()}")
            try:
                if httpx.get(self.endpoint + "/healthz", timeout=1, verify=verify).status_code in (200, 503):
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"keyledger did not start in {timeout}s:\n{self.log()}")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def log(self) -> str:
        return self.output.read_text(errors="replace") if self.output and self.output.exists() else ""

    def client(self, region: str = "us-east-1", key_id: str = ADMIN_KEY_ID, secret: str = ADMIN_SECRET,
               service: str = "kms") -> Any:
        return boto3.client(
            service, endpoint_url=self.endpoint, region_name=region, aws_access_key_id=key_id,
            aws_secret_access_key=secret, verify=str(self.tls.cert) if self.tls else None,
            # One attempt: a retry would send the call again with a new request id and hide what the server did.
            config=Config(retries={"total_max_attempts": 1, "mode": "standard"}, connect_timeout=5, read_timeout=30),
        )

    def cli_env(self, region: str = "us-east-1") -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env.update({"AWS_ACCESS_KEY_ID": ADMIN_KEY_ID, "AWS_SECRET_ACCESS_KEY": ADMIN_SECRET,
                    "AWS_DEFAULT_REGION": region, "AWS_CONFIG_FILE": "/dev/null",
                    "AWS_SHARED_CREDENTIALS_FILE": "/dev/null", "AWS_PAGER": ""})
        return env

    @property
    def postgres_schema(self) -> str:
        """The schema this server's PostgreSQL URL selects (options=-csearch_path=<schema>)."""
        assert self.database_url
        options = urllib.parse.parse_qs(urllib.parse.urlsplit(self.database_url).query)["options"][0]
        match = re.fullmatch(r"-csearch_path=(\w+)", options)
        assert match, options
        return match.group(1)

    @property
    def sqlite_file(self) -> Path:
        return self.data_dir / "keyledger.db"
