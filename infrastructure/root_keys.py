"""Root-key providers (file, environment variable) and the check that a root key fits the database.

Root key text, in the file or in KEYLEDGER_ROOT_KEY: JSON ``{"current": N, "keys": {"N": "<base64 32 bytes>"}}``
(several versions after a root-key rotation), or just one base64 key (version 1).
"""
from __future__ import annotations

import base64
import binascii
import json
import os
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.orm import Session

from domain.crypto.wrapping import RootKeyring, UnwrapError
from infrastructure.settings import Settings
from infrastructure.tables import root_key_checks

_CHECK_PURPOSE = "root-key-check"
_CHECK_VALUE = b"keyledger root key check v1"


class RootKeyUnavailable(Exception):
    """Why the service must start sealed. The message never contains key bytes."""


def parse_root_key_text(text: str, source: str) -> RootKeyring:
    text = text.strip()
    try:
        if text.startswith("{"):
            document = json.loads(text)
            versions = {int(v): base64.b64decode(k, validate=True) for v, k in document["keys"].items()}
            current = int(document["current"])
        else:
            versions, current = {1: base64.b64decode(text, validate=True)}, 1
    except (ValueError, KeyError, TypeError, binascii.Error):
        raise RootKeyUnavailable(f"{source} is not a valid root key (expected base64 of 32 bytes, or keyledger's JSON form).") from None
    if current not in versions or any(len(k) != 32 for k in versions.values()):
        raise RootKeyUnavailable(f"{source} must hold 32-byte keys and name its current version.")
    return RootKeyring(versions=versions, current=current)


def _create_root_key_file(path: Path) -> None:
    document = {"current": 1, "keys": {"1": base64.b64encode(os.urandom(32)).decode()}}
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(document, f)
        f.flush()
        os.fsync(f.fileno())


def load_root_keyring(settings: Settings, *, first_start: bool) -> RootKeyring:
    if settings.root_key_provider == "env":
        if not settings.root_key:
            raise RootKeyUnavailable("KEYLEDGER_ROOT_KEY_PROVIDER=env but KEYLEDGER_ROOT_KEY is not set.")
        return parse_root_key_text(settings.root_key, "KEYLEDGER_ROOT_KEY")
    path = settings.root_key_file
    if not path.exists():
        if not first_start:
            raise RootKeyUnavailable(
                f"The root key file {path} is missing, but the database already holds keys wrapped under a root key. "
                "Restore the file (mode 0600) and restart."
            )
        _create_root_key_file(path)
    if path.stat().st_mode & 0o077:
        raise RootKeyUnavailable(f"The root key file {path} is readable by others; run 'chmod 600 {path}' and restart.")
    return parse_root_key_text(path.read_text(), str(path))


def has_root_key_checks(session: Session) -> bool:
    return session.execute(sa.select(sa.func.count()).select_from(root_key_checks)).scalar_one() > 0


def check_root_keyring(session: Session, keyring: RootKeyring) -> None:
    """Every held version must match its stored check; new versions get one. Runs in a write transaction."""
    stored = {r.version: bytes(r.check_value) for r in session.execute(sa.select(root_key_checks))}
    for version in sorted(keyring.versions):
        if version in stored:
            single = RootKeyring(versions={version: keyring.versions[version]}, current=version)
            try:
                single.unwrap(stored[version], purpose=_CHECK_PURPOSE, key_id=str(version))
            except UnwrapError:
                raise RootKeyUnavailable(
                    f"Root key version {version} does not match this database: it is the wrong key."
                ) from None
        else:
            single = RootKeyring(versions={version: keyring.versions[version]}, current=version)
            session.execute(root_key_checks.insert().values(
                version=version, check_value=single.wrap(_CHECK_VALUE, purpose=_CHECK_PURPOSE, key_id=str(version))))
    if stored and not set(stored) & set(keyring.versions):
        raise RootKeyUnavailable("None of the root key versions held matches this database.")
