"""Settings from the environment: values are converted or refused with the variable's name."""
from __future__ import annotations

import pytest

from infrastructure.settings import Settings


@pytest.mark.parametrize(("text", "expected"), [("true", True), ("FALSE", False), ("1", True), ("off", False),
                                                 (" yes ", True), ("no", False)])
def test_metrics_switch(text: str, expected: bool) -> None:
    assert Settings.load({"KEYLEDGER_METRICS": text}).metrics is expected


def test_metrics_is_on_by_default() -> None:
    assert Settings.load({}).metrics is True


@pytest.mark.parametrize(("variable", "text"), [("KEYLEDGER_METRICS", "maybe"), ("KEYLEDGER_WORKERS", "two"),
                                                ("KEYLEDGER_PORT", "eighty")])
def test_an_unreadable_value_names_its_variable(variable: str, text: str) -> None:
    with pytest.raises(SystemExit, match=variable):
        Settings.load({variable: text})


def test_limits_and_quotas_have_their_documented_defaults() -> None:
    settings = Settings.load({})
    assert (settings.max_header_bytes, settings.max_body_bytes) == (16384, None)
    assert (settings.quota_cryptographic_per_second, settings.quota_management_per_second) == (100_000.0, 2_000.0)
    assert settings.quota_unauthenticated_per_second == 100.0 and settings.quota_account_overrides == {}
    assert (settings.audit_unauthenticated_window_seconds, settings.audit_unauthenticated_per_source,
            settings.audit_unauthenticated_total) == (60.0, 10, 100)


def test_limits_and_quotas_are_read_from_the_environment_and_flags() -> None:
    settings = Settings.load({"KEYLEDGER_MAX_HEADER_BYTES": "8192", "KEYLEDGER_MAX_BODY_BYTES": "65536",
                              "KEYLEDGER_QUOTA_MANAGEMENT_PER_SECOND": "0.5",
                              "KEYLEDGER_QUOTA_ACCOUNT_OVERRIDES": '{"444455556666": {"cryptographic": 10}}'},
                             max_header_bytes=4096)
    assert (settings.max_header_bytes, settings.max_body_bytes) == (4096, 65536)
    assert settings.quota_management_per_second == 0.5
    assert settings.quota_account_overrides == {"444455556666": {"cryptographic": 10.0}}


@pytest.mark.parametrize(("variable", "text"), [
    ("KEYLEDGER_MAX_HEADER_BYTES", "100"), ("KEYLEDGER_MAX_BODY_BYTES", "10"),
    ("KEYLEDGER_QUOTA_CRYPTOGRAPHIC_PER_SECOND", "-1"), ("KEYLEDGER_QUOTA_ACCOUNT_OVERRIDES", "[1]"),
    ("KEYLEDGER_QUOTA_ACCOUNT_OVERRIDES", '{"1234": {"management": 1}}'),
    ("KEYLEDGER_QUOTA_ACCOUNT_OVERRIDES", '{"444455556666": {"signing": 1}}'),
    ("KEYLEDGER_AUDIT_UNAUTHENTICATED_WINDOW_SECONDS", "0")])
def test_limits_and_quotas_refuse_values_that_cannot_work(variable: str, text: str) -> None:
    with pytest.raises(SystemExit, match=variable.rsplit("_", 1)[0][:24]):
        Settings.load({variable: text})


POSTGRES = "postgresql+psycopg://keyledger@db:5432/keyledger"


def test_a_postgresql_node_with_an_env_or_pkcs11_root_key_needs_no_data_directory() -> None:
    for provider in ("env", "pkcs11"):
        settings = Settings.load({"KEYLEDGER_DATABASE_URL": POSTGRES, "KEYLEDGER_ROOT_KEY_PROVIDER": provider})
        assert settings.data_dir is None and settings.checkpoint_file is None
        assert settings.admin_credentials_file is None and settings.resolved_database_url == POSTGRES
    named = Settings.load({"KEYLEDGER_DATABASE_URL": POSTGRES, "KEYLEDGER_ROOT_KEY_PROVIDER": "env",
                           "KEYLEDGER_AUDIT_CHECKPOINT_FILE": "/var/log/keyledger/checkpoints.jsonl"})
    assert named.data_dir is None and str(named.checkpoint_file) == "/var/log/keyledger/checkpoints.jsonl"
    given = Settings.load({"KEYLEDGER_DATABASE_URL": POSTGRES, "KEYLEDGER_ROOT_KEY_PROVIDER": "env",
                           "KEYLEDGER_DATA_DIR": "/srv/node-a"})
    assert str(given.checkpoint_file) == "/srv/node-a/audit-checkpoints.jsonl"


def test_sqlite_and_the_root_key_file_keep_the_default_data_directory() -> None:
    assert str(Settings.load({}).data_dir) == "keyledger-data"
    assert str(Settings.load({"KEYLEDGER_DATABASE_URL": POSTGRES}).root_key_file) == "keyledger-data/root-key"
    assert str(Settings.load({"KEYLEDGER_ROOT_KEY_PROVIDER": "env"}).checkpoint_file) == \
        "keyledger-data/audit-checkpoints.jsonl"


def test_xks_settings_defaults_and_refusals() -> None:
    settings = Settings.load({})
    assert (settings.xks_uri_prefix, settings.xks_proxy_timeout, settings.xks_proxy_port) == ("xks", 1.0, 443)
    assert Settings.load({"KEYLEDGER_XKS_URI_PREFIX": "/tenant-1/xks/"}).xks_uri_prefix == "tenant-1/xks"
    assert Settings.load({"KEYLEDGER_XKS_URI_PREFIX": "/"}).xks_uri_prefix == ""  # /kms/xks/v1 itself
    for variable, text in (("KEYLEDGER_XKS_URI_PREFIX", "a.b"), ("KEYLEDGER_XKS_URI_PREFIX", "a//b"),
                           ("KEYLEDGER_XKS_PROXY_TIMEOUT", "0"), ("KEYLEDGER_XKS_PROXY_PORT", "70000")):
        with pytest.raises(SystemExit, match="KEYLEDGER_XKS"):
            Settings.load({variable: text})
