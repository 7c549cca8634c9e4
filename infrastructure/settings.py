"""Every setting, read in one place: KEYLEDGER_* environment variables, overridden by command-line flags.

Names are chosen so the eventsourcing library never mistakes one for its own (it reads
<APPNAME>_<KEY>, e.g. KEYLEDGER_SQLALCHEMY_URL); we also hand the library only what we choose.
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping

COMMERCIAL_REGIONS = (
    "us-east-1", "us-east-2", "us-west-1", "us-west-2", "af-south-1", "ap-east-1", "ap-east-2", "ap-south-1",
    "ap-south-2", "ap-southeast-1", "ap-southeast-2", "ap-southeast-3", "ap-southeast-4", "ap-southeast-5",
    "ap-southeast-7", "ap-northeast-1", "ap-northeast-2", "ap-northeast-3", "ca-central-1", "ca-west-1",
    "eu-central-1", "eu-central-2", "eu-west-1", "eu-west-2", "eu-west-3", "eu-south-1", "eu-south-2",
    "eu-north-1", "il-central-1", "me-south-1", "me-central-1", "mx-central-1", "sa-east-1",
)


def _boolean(text: str) -> bool:
    value = text.strip().lower()
    if value not in ("true", "false", "1", "0", "on", "off", "yes", "no"):
        raise ValueError(text)
    return value in ("true", "1", "on", "yes")


QUOTA_CLASSES = ("cryptographic", "management")
DEFAULT_DATA_DIR = Path("keyledger-data")


def _quota_overrides(text: str) -> dict[str, dict[str, float]]:
    """``{"<account id>": {"cryptographic": <per second>, "management": <per second>}, ...}``; a class left
    out keeps the default."""
    try:
        parsed = json.loads(text)
    except json.JSONDecodeError:
        raise ValueError(text) from None
    if not isinstance(parsed, dict):
        raise ValueError(text)
    out: dict[str, dict[str, float]] = {}
    for account, classes in parsed.items():
        if not (isinstance(account, str) and account.isdigit() and len(account) == 12 and isinstance(classes, dict)
                and set(classes) <= set(QUOTA_CLASSES)
                and all(type(v) in (int, float) for v in classes.values())):
            raise ValueError(text)
        out[account] = {name: float(rate) for name, rate in classes.items()}
    return out


@dataclass(frozen=True)
class Settings:
    # The node's own directory. None: a node that keeps nothing on its disk (PostgreSQL with an env or pkcs11
    # root key and no KEYLEDGER_DATA_DIR): no credentials file, no checkpoint file unless one is named.
    data_dir: Path | None = DEFAULT_DATA_DIR
    database_url: str | None = None  # default: SQLite file in data_dir
    host: str = "127.0.0.1"
    port: int = 8080
    account_id: str = "111122223333"
    regions: tuple[str, ...] = COMMERCIAL_REGIONS
    admin_access_key_id: str | None = None
    admin_secret_access_key: str | None = field(default=None, repr=False)
    root_key_provider: str = "file"  # file | env | pkcs11
    root_key: str | None = field(default=None, repr=False)  # env: the key text; pkcs11: the RFC 7512 URI
    pkcs11_module: str | None = None  # the PKCS#11 module (.so) of the root key's token
    pkcs11_pin: str | None = field(default=None, repr=False)  # its user PIN; or pkcs11_pin_file
    pkcs11_pin_file: Path | None = None  # a mode-0600 file holding the PIN
    cloudhsm_clusters: Path | None = None  # JSON: cluster id -> {module, token_label} (custom key stores)
    log_level: str = "info"
    maintenance_interval: float = 60.0  # seconds between maintenance passes in the server; 0 turns them off
    audit_group_commit_window: float = 0.0  # extra seconds to gather audit records; 0 = whatever queued meanwhile
    audit_group_commit_max: int = 256  # most audit records committed in one transaction
    audit_checkpoint_records: int = 1000  # sign a checkpoint after this many records...
    audit_checkpoint_seconds: float = 60.0  # ...or this many seconds after the newest one, when records followed it
    audit_checkpoint_heartbeat_seconds: float = 3600.0  # and this often when idle (nothing new to cover)
    audit_checkpoint_file: Path | None = None  # default: <data dir>/audit-checkpoints.jsonl
    # Serve although the ledger since the newest checkpoint does not verify: the operator's reason, recorded.
    accept_unverified_ledger: str | None = None
    sqlite_busy_timeout_ms: int = 10000  # how long a SQLite writer waits for another's lock
    key_cache_seconds: float = 1.0  # how long another process's key-state change may take to show here
    tls_cert: Path | None = None  # PEM certificate (chain); with tls_key, serve HTTPS instead of HTTP
    tls_key: Path | None = None  # PEM private key, unencrypted (a path is not a secret; its contents are)
    workers: int = 1  # server processes sharing the listening socket and the database
    # how long a serving loop keeps polling after a KMS call starts or is answered, instead of sleeping (api/busy_poll.py)
    busy_poll_microseconds: int = 1000
    audit_committer: str = "process"  # who commits audit records: one process for all servers, or a thread in each
    metrics: bool = True  # serve Prometheus metrics at GET /metrics (no key, principal or credential in them)
    health_probe_timeout: float = 1.0  # readiness: how long the storage probe waits for the writers' lock
    health_cache_seconds: float = 1.0  # readiness: how long a probe's result answers health requests
    # Limits before any work (api/limits.py): header names and values together, and the body of any request
    # (each operation's own limit, derived from the KMS model, is lower or equal; None: the largest of those).
    max_header_bytes: int = 16384
    max_body_bytes: int | None = None
    # Request quotas per account, region and operation class, in requests per second (0: no quota).
    quota_cryptographic_per_second: float = 100_000.0
    quota_management_per_second: float = 2_000.0
    quota_account_overrides: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    # Requests that fail authentication: per source address, this many per second are answered with their
    # own error; the rest ThrottlingException. Per window, at most so many get a record of their own (per
    # source, and in total); the others are counted in one summary record per window.
    quota_unauthenticated_per_second: float = 100.0
    audit_unauthenticated_window_seconds: float = 60.0
    audit_unauthenticated_per_source: int = 10
    audit_unauthenticated_total: int = 100
    price_table: Path | None = None  # AWS KMS prices for usage estimates (default: the table shipped)
    console_session_seconds: float = 900.0  # how long a web console sign-in lasts
    # keyledger as an XKS proxy: its API at /<prefix>/kms/xks/v1/... ("" for /kms/xks/v1/...)
    xks_uri_prefix: str = "xks"
    # keyledger calling XKS proxies (external key stores): how long one call may take in all (AWS KMS: 250 ms), the
    # port (AWS: 443, and XksProxyUriEndpoint names none), and the CAs a proxy's certificate must chain to
    xks_proxy_timeout: float = 1.0
    xks_proxy_port: int = 443
    xks_proxy_ca_bundle: Path | None = None

    @property
    def uses_postgres(self) -> bool:
        return bool(self.database_url) and str(self.database_url).startswith("postgresql")

    @property
    def needs_data_dir(self) -> bool:
        """SQLite keeps its database in the data directory, the file provider its root key; a PostgreSQL node
        with an env or pkcs11 root key needs none (docs/settings.md, "Several nodes")."""
        return not self.uses_postgres or self.root_key_provider == "file"

    @property
    def node_dir(self) -> Path:
        """The data directory, for what cannot be without one (``check`` ensures it is set then)."""
        assert self.data_dir is not None, "this node has no data directory"
        return self.data_dir

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.node_dir.resolve() / 'keyledger.db'}"

    @property
    def root_key_file(self) -> Path:
        return self.node_dir / "root-key"

    @property
    def checkpoint_file(self) -> Path | None:
        """This node's copy of the signed checkpoints; None: the node keeps none (the database holds them all)."""
        if self.audit_checkpoint_file is not None:
            return self.audit_checkpoint_file
        return self.data_dir / "audit-checkpoints.jsonl" if self.data_dir is not None else None

    @property
    def admin_credentials_file(self) -> Path | None:
        return self.data_dir / "admin-credentials" if self.data_dir is not None else None

    @classmethod
    def load(cls, environ: Mapping[str, str] | None = None, **flags: Any) -> Settings:
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        readers = {
            "data_dir": ("KEYLEDGER_DATA_DIR", Path),
            "database_url": ("KEYLEDGER_DATABASE_URL", str),
            "host": ("KEYLEDGER_HOST", str),
            "port": ("KEYLEDGER_PORT", int),
            "account_id": ("KEYLEDGER_ACCOUNT_ID", str),
            "regions": ("KEYLEDGER_REGIONS", lambda v: tuple(r.strip() for r in v.split(",") if r.strip())),
            "admin_access_key_id": ("KEYLEDGER_ADMIN_ACCESS_KEY_ID", str),
            "admin_secret_access_key": ("KEYLEDGER_ADMIN_SECRET_ACCESS_KEY", str),
            "root_key_provider": ("KEYLEDGER_ROOT_KEY_PROVIDER", str),
            "root_key": ("KEYLEDGER_ROOT_KEY", str),
            "pkcs11_module": ("KEYLEDGER_PKCS11_MODULE", str),
            "pkcs11_pin": ("KEYLEDGER_PKCS11_PIN", str),
            "pkcs11_pin_file": ("KEYLEDGER_PKCS11_PIN_FILE", Path),
            "cloudhsm_clusters": ("KEYLEDGER_CLOUDHSM_CLUSTERS", Path),
            "log_level": ("KEYLEDGER_LOG_LEVEL", str),
            "maintenance_interval": ("KEYLEDGER_MAINTENANCE_INTERVAL", float),
            "audit_group_commit_window": ("KEYLEDGER_AUDIT_GROUP_COMMIT_WINDOW", float),
            "audit_group_commit_max": ("KEYLEDGER_AUDIT_GROUP_COMMIT_MAX", int),
            "audit_checkpoint_records": ("KEYLEDGER_AUDIT_CHECKPOINT_RECORDS", int),
            "audit_checkpoint_seconds": ("KEYLEDGER_AUDIT_CHECKPOINT_SECONDS", float),
            "audit_checkpoint_heartbeat_seconds": ("KEYLEDGER_AUDIT_CHECKPOINT_HEARTBEAT_SECONDS", float),
            "audit_checkpoint_file": ("KEYLEDGER_AUDIT_CHECKPOINT_FILE", Path),
            "accept_unverified_ledger": ("KEYLEDGER_ACCEPT_UNVERIFIED_LEDGER", str),
            "sqlite_busy_timeout_ms": ("KEYLEDGER_SQLITE_BUSY_TIMEOUT_MS", int),
            "key_cache_seconds": ("KEYLEDGER_KEY_CACHE_SECONDS", float),
            "tls_cert": ("KEYLEDGER_TLS_CERT", Path),
            "tls_key": ("KEYLEDGER_TLS_KEY", Path),
            "workers": ("KEYLEDGER_WORKERS", int),
            "busy_poll_microseconds": ("KEYLEDGER_BUSY_POLL_MICROSECONDS", int),
            "audit_committer": ("KEYLEDGER_AUDIT_COMMITTER", str),
            "metrics": ("KEYLEDGER_METRICS", _boolean),
            "health_probe_timeout": ("KEYLEDGER_HEALTH_PROBE_TIMEOUT", float),
            "health_cache_seconds": ("KEYLEDGER_HEALTH_CACHE_SECONDS", float),
            "max_header_bytes": ("KEYLEDGER_MAX_HEADER_BYTES", int),
            "max_body_bytes": ("KEYLEDGER_MAX_BODY_BYTES", int),
            "quota_cryptographic_per_second": ("KEYLEDGER_QUOTA_CRYPTOGRAPHIC_PER_SECOND", float),
            "quota_management_per_second": ("KEYLEDGER_QUOTA_MANAGEMENT_PER_SECOND", float),
            "quota_account_overrides": ("KEYLEDGER_QUOTA_ACCOUNT_OVERRIDES", _quota_overrides),
            "quota_unauthenticated_per_second": ("KEYLEDGER_QUOTA_UNAUTHENTICATED_PER_SECOND", float),
            "audit_unauthenticated_window_seconds": ("KEYLEDGER_AUDIT_UNAUTHENTICATED_WINDOW_SECONDS", float),
            "audit_unauthenticated_per_source": ("KEYLEDGER_AUDIT_UNAUTHENTICATED_PER_SOURCE", int),
            "audit_unauthenticated_total": ("KEYLEDGER_AUDIT_UNAUTHENTICATED_TOTAL", int),
            "price_table": ("KEYLEDGER_PRICE_TABLE", Path),
            "console_session_seconds": ("KEYLEDGER_CONSOLE_SESSION_SECONDS", float),
            "xks_uri_prefix": ("KEYLEDGER_XKS_URI_PREFIX", lambda v: v.strip("/")),
            "xks_proxy_timeout": ("KEYLEDGER_XKS_PROXY_TIMEOUT", float),
            "xks_proxy_port": ("KEYLEDGER_XKS_PROXY_PORT", int),
            "xks_proxy_ca_bundle": ("KEYLEDGER_XKS_PROXY_CA_BUNDLE", Path),
        }
        for name, (variable, convert) in readers.items():
            if env.get(variable):
                try:
                    values[name] = convert(env[variable])
                except ValueError:
                    raise SystemExit(f"keyledger: {variable} has an invalid value.") from None
        settings = replace(cls(), **values)
        overrides = {k: v for k, v in flags.items() if v is not None}
        settings = replace(settings, **overrides)
        if "data_dir" not in values and "data_dir" not in overrides and not settings.needs_data_dir:
            settings = replace(settings, data_dir=None)  # nothing on this node's disk unless a directory is named
        settings.check()
        return settings

    def check(self) -> None:
        if not (self.account_id.isdigit() and len(self.account_id) == 12):
            raise SystemExit("keyledger: KEYLEDGER_ACCOUNT_ID must be 12 digits.")
        if self.root_key_provider not in ("file", "env", "pkcs11"):
            raise SystemExit("keyledger: KEYLEDGER_ROOT_KEY_PROVIDER must be 'file', 'env' or 'pkcs11'.")
        if self.data_dir is None and self.needs_data_dir:
            raise SystemExit("keyledger: a SQLite database or a root key file needs a data directory (KEYLEDGER_DATA_DIR).")
        if self.workers < 1:
            raise SystemExit("keyledger: KEYLEDGER_WORKERS must be 1 or more.")
        if not 0 <= self.busy_poll_microseconds <= 100_000:
            raise SystemExit("keyledger: KEYLEDGER_BUSY_POLL_MICROSECONDS must be 0 (the loop sleeps whenever it has "
                             "nothing to do) to 100000 (a tenth of a second of polling after each call).")
        if self.audit_committer not in ("process", "thread"):
            raise SystemExit("keyledger: KEYLEDGER_AUDIT_COMMITTER must be 'process' (one committer process for every "
                             "server process) or 'thread' (each server process commits its own records).")
        if not (self.health_probe_timeout > 0 and self.health_cache_seconds >= 0):
            raise SystemExit("keyledger: KEYLEDGER_HEALTH_PROBE_TIMEOUT must be above 0 and "
                             "KEYLEDGER_HEALTH_CACHE_SECONDS 0 or more.")
        if not self.regions:
            raise SystemExit("keyledger: KEYLEDGER_REGIONS names no region.")
        if (self.admin_access_key_id is None) != (self.admin_secret_access_key is None):
            raise SystemExit("keyledger: set both KEYLEDGER_ADMIN_ACCESS_KEY_ID and KEYLEDGER_ADMIN_SECRET_ACCESS_KEY, or neither.")
        if self.max_header_bytes < 1024:
            raise SystemExit("keyledger: KEYLEDGER_MAX_HEADER_BYTES must be at least 1024 (SigV4 headers alone take "
                             "several hundred bytes).")
        if self.max_body_bytes is not None and self.max_body_bytes < 1024:
            raise SystemExit("keyledger: KEYLEDGER_MAX_BODY_BYTES must be at least 1024.")
        rates = {"KEYLEDGER_QUOTA_CRYPTOGRAPHIC_PER_SECOND": [self.quota_cryptographic_per_second],
                 "KEYLEDGER_QUOTA_MANAGEMENT_PER_SECOND": [self.quota_management_per_second],
                 "KEYLEDGER_QUOTA_UNAUTHENTICATED_PER_SECOND": [self.quota_unauthenticated_per_second],
                 "KEYLEDGER_QUOTA_ACCOUNT_OVERRIDES": [rate for classes in self.quota_account_overrides.values()
                                                       for rate in classes.values()]}
        for variable, values in rates.items():
            if any(not rate >= 0 for rate in values):  # NaN too
                raise SystemExit(f"keyledger: {variable} must be 0 (no quota) or more requests per second.")
        if self.audit_unauthenticated_window_seconds <= 0 or min(
                self.audit_unauthenticated_per_source, self.audit_unauthenticated_total) < 0:
            raise SystemExit("keyledger: KEYLEDGER_AUDIT_UNAUTHENTICATED_WINDOW_SECONDS must be above 0, and "
                             "KEYLEDGER_AUDIT_UNAUTHENTICATED_PER_SOURCE and _TOTAL 0 or more.")
        if not 0 < self.console_session_seconds <= 86400:
            raise SystemExit("keyledger: KEYLEDGER_CONSOLE_SESSION_SECONDS must be above 0 and at most 86400 (a day).")
        if not re.fullmatch(r"[a-zA-Z0-9/_-]{0,115}", self.xks_uri_prefix) or "//" in self.xks_uri_prefix:
            raise SystemExit("keyledger: KEYLEDGER_XKS_URI_PREFIX must be letters, digits, '/', '-' and '_' (AWS's "
                             "XksProxyUriPath allows no others) and leave /<prefix>/kms/xks/v1 at most 128 characters.")
        if not 0 < self.xks_proxy_timeout <= 60 or not 0 < self.xks_proxy_port < 65536:
            raise SystemExit("keyledger: KEYLEDGER_XKS_PROXY_TIMEOUT must be above 0 and at most 60 seconds, and "
                             "KEYLEDGER_XKS_PROXY_PORT a TCP port.")
        if (self.tls_cert is None) != (self.tls_key is None):
            raise SystemExit("keyledger: HTTPS needs both a certificate and a private key: set KEYLEDGER_TLS_CERT and "
                             "KEYLEDGER_TLS_KEY (or --tls-cert and --tls-key), or neither for plain HTTP.")
