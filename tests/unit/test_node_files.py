"""What a node writes to its own disk: never another installation's files, nothing at all without a data directory."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from infrastructure.bootstrap import build_runtime, start_serving
from infrastructure.node_files import ensure_admin
from infrastructure.settings import Settings

NO_DATA_DIR = {"KEYLEDGER_DATABASE_URL": "postgresql+psycopg://keyledger@db/keyledger",
               "KEYLEDGER_ROOT_KEY_PROVIDER": "env"}


@dataclass
class Credentials:
    ids: set[str] = field(default_factory=set)

    def exists(self, access_key_id: str) -> bool:
        return access_key_id in self.ids

    def count(self) -> int:
        return len(self.ids)


@dataclass
class Admin:
    credentials: Credentials
    made: list[str] = field(default_factory=list)

    def has_history(self, arn: str) -> bool:
        return bool(self.made)

    def bootstrap_access_key(self, root: str, key_id: str, secret: str, region: str) -> bool:
        self.made.append(key_id)
        self.credentials.ids.add(key_id)
        return True


def _admin() -> tuple[Credentials, Any]:
    credentials = Credentials()
    return credentials, Admin(credentials)


def test_a_node_without_a_data_directory_makes_no_key_it_could_not_hand_over() -> None:
    credentials, admin = _admin()
    outcome = ensure_admin(Settings.load(NO_DATA_DIR), credentials, admin, "us-east-1")  # type: ignore[arg-type]
    assert not outcome.created and admin.made == []
    assert "KEYLEDGER_ADMIN_ACCESS_KEY_ID" in (outcome.note or "") and "access-keys create" in (outcome.note or "")


def test_a_node_without_a_data_directory_creates_the_configured_key_and_writes_nothing(tmp_path: Path,
                                                                                      monkeypatch: Any) -> None:
    monkeypatch.chdir(tmp_path)
    credentials, admin = _admin()
    settings = Settings.load({**NO_DATA_DIR, "KEYLEDGER_ADMIN_ACCESS_KEY_ID": "AKIAMULTINODE0000001",
                              "KEYLEDGER_ADMIN_SECRET_ACCESS_KEY": "multinode-secret"})
    assert ensure_admin(settings, credentials, admin, "us-east-1").created  # type: ignore[arg-type]
    assert admin.made == ["AKIAMULTINODE0000001"] and list(tmp_path.iterdir()) == []
    assert not ensure_admin(settings, credentials, admin, "us-east-1").created  # type: ignore[arg-type]


def test_a_first_start_never_overwrites_a_credentials_file_it_finds(tmp_path: Path) -> None:
    existing = tmp_path / "admin-credentials"
    existing.write_text("[keyledger]\naws_access_key_id = AKIAANOTHERDATABASE1\naws_secret_access_key = theirs\n")
    credentials, admin = _admin()
    outcome = ensure_admin(Settings.load({}, data_dir=tmp_path), credentials, admin, "us-east-1")  # type: ignore[arg-type]
    assert not outcome.created and admin.made == [] and "already exists" in (outcome.note or "")
    assert "AKIAANOTHERDATABASE1" in existing.read_text()


def test_a_checkpoint_file_of_another_database_is_left_alone_and_seals_the_node(tmp_path: Path) -> None:
    first = build_runtime(Settings.load({}, data_dir=tmp_path / "first"))
    try:
        start_serving(first)
        assert first.services is not None
    finally:
        first.close()
    theirs = first.settings.checkpoint_file
    assert theirs is not None
    before = theirs.read_bytes()
    second = build_runtime(Settings.load({"KEYLEDGER_AUDIT_CHECKPOINT_FILE": str(theirs)}, data_dir=tmp_path / "second"))
    try:
        start_serving(second)
        assert second.services is None and "belongs to another database" in (second.sealed_reason or "")
    finally:
        second.close()
    assert theirs.read_bytes() == before
