"""Root-key providers (file, environment variable, PKCS#11 token) and the check that a root key fits the database.

Root key text, in the file or in KEYLEDGER_ROOT_KEY: JSON ``{"current": N, "keys": {"N": "<base64 32 bytes>"}}``
(several versions after a root-key rotation), or just one base64 key (version 1).

PKCS#11: KEYLEDGER_ROOT_KEY is an RFC 7512 URI naming the token and the key's label; each version is an AES-256
object with that label and CKA_ID = the version (4 bytes, big endian). Its bytes never enter this process.

Every provider answers the same port (application/ports.py: RootKeyProvider): the versions it holds now, one
it does not hold yet (another process rotated), a new version (rotation), destroying one (retirement).
"""
from __future__ import annotations

import base64
import binascii
import json
import os
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.orm import Session

from domain.crypto.wrapping import (
    RootKeyring,
    RootKeyVersion,
    SoftwareRootKey,
    UnwrapError,
)
from infrastructure.pkcs11_token import (
    Pkcs11UriError,
    Token,
    TokenRootKey,
    TokenUnavailable,
    parse_pkcs11_uri,
    read_pin_file,
)
from infrastructure.settings import Settings
from infrastructure.tables import root_key_checks

_CHECK_PURPOSE = "root-key-check"
_CHECK_VALUE = b"keyledger root key check v1"


class RootKeyUnavailable(Exception):
    """Why the service must start sealed. The message never contains key bytes or a PIN."""


def _parse_versions(text: str, source: str) -> tuple[dict[int, bytes], int]:
    text = text.strip()
    try:
        if text.startswith("{"):
            document = json.loads(text)
            versions = {int(v): base64.b64decode(k, validate=True) for v, k in document["keys"].items()}
            current = int(document["current"])
        else:
            versions, current = {1: base64.b64decode(text, validate=True)}, 1
    except (ValueError, KeyError, TypeError, AttributeError, binascii.Error):
        raise RootKeyUnavailable(f"{source} is not a valid root key (expected base64 of 32 bytes, or keyledger's JSON form).") from None
    if current not in versions or any(len(k) != 32 for k in versions.values()):
        raise RootKeyUnavailable(f"{source} must hold 32-byte keys and name its current version.")
    return versions, current


def parse_root_key_text(text: str, source: str) -> RootKeyring:
    versions, current = _parse_versions(text, source)
    return RootKeyring(versions=versions, current=current)


def _write_private(path: Path, document: dict) -> None:
    """Atomically replaces ``path`` (mode 0600) with ``document``: a crash leaves the old file or the new one."""
    temporary = path.with_name(path.name + ".new")
    if temporary.exists():
        temporary.unlink()
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(document, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(temporary, path)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


class FileRootKeyProvider:
    """The root key file in the data directory, made at first start. Rotation adds a version to the file;
    retirement removes one (and a backup of the file made before keeps it: the backup horizon)."""

    name = "file"

    def __init__(self, path: Path) -> None:
        self.path = path

    def _read(self) -> tuple[dict[int, bytes], int]:
        if self.path.stat().st_mode & 0o077:
            raise RootKeyUnavailable(f"The root key file {self.path} is readable by others; run 'chmod 600 {self.path}' and restart.")
        return _parse_versions(self.path.read_text(), str(self.path))

    def load(self, first_start: bool) -> tuple[dict[int, RootKeyVersion], int]:
        if not self.path.exists():
            if not first_start:
                raise RootKeyUnavailable(
                    f"The root key file {self.path} is missing, but the database already holds keys wrapped under a root key. "
                    "Restore the file (mode 0600) and restart."
                )
            _write_private(self.path, {"current": 1, "keys": {"1": base64.b64encode(os.urandom(32)).decode()}})
        versions, current = self._read()
        return {v: SoftwareRootKey(k) for v, k in versions.items()}, current

    def locate(self, version: int) -> RootKeyVersion | None:
        try:
            versions, _ = self._read()
        except (OSError, RootKeyUnavailable):
            return None
        key = versions.get(version)
        return SoftwareRootKey(key) if key is not None else None

    def held_versions(self) -> list[int]:
        return sorted(self._read()[0])

    def add_version(self, version: int) -> RootKeyVersion:
        versions, _ = self._read()
        if version not in versions:
            versions[version] = os.urandom(32)
        _write_private(self.path, {"current": version,
                                   "keys": {str(v): base64.b64encode(k).decode() for v, k in sorted(versions.items())}})
        return SoftwareRootKey(versions[version])

    def destroy_version(self, version: int) -> None:
        versions, current = self._read()
        versions.pop(version, None)
        if current == version:
            current = max(versions)
        _write_private(self.path, {"current": current,
                                   "keys": {str(v): base64.b64encode(k).decode() for v, k in sorted(versions.items())}})

    def close(self) -> None:
        pass


class EnvironmentRootKeyProvider:
    """KEYLEDGER_ROOT_KEY. A running process cannot learn a new value: rotation needs the new version in the
    environment of every process first (then a restart), and retirement is the operator removing it there."""

    name = "env"

    def __init__(self, text: str | None) -> None:
        self._text = text

    def _read(self) -> tuple[dict[int, bytes], int]:
        if not self._text:
            raise RootKeyUnavailable("KEYLEDGER_ROOT_KEY_PROVIDER=env but KEYLEDGER_ROOT_KEY is not set.")
        return _parse_versions(self._text, "KEYLEDGER_ROOT_KEY")

    def load(self, first_start: bool) -> tuple[dict[int, RootKeyVersion], int]:
        versions, current = self._read()
        return {v: SoftwareRootKey(k) for v, k in versions.items()}, current

    def locate(self, version: int) -> RootKeyVersion | None:
        return None

    def held_versions(self) -> list[int]:
        return sorted(self._read()[0])

    def add_version(self, version: int) -> RootKeyVersion:
        versions, _ = self._read()
        if version not in versions:
            raise RootKeyUnavailable(
                f"KEYLEDGER_ROOT_KEY holds no version {version}. With the env provider, add the new version to "
                "KEYLEDGER_ROOT_KEY (JSON form) for every server, restart them, then run 'keyledger root-key rotate'.")
        return SoftwareRootKey(versions[version])

    def destroy_version(self, version: int) -> None:
        """Nothing to destroy here: the operator removes the version from KEYLEDGER_ROOT_KEY and its store."""

    def close(self) -> None:
        pass


class Pkcs11RootKeyProvider:
    """The root key inside a PKCS#11 token: wrap and unwrap are CKM_AES_GCM operations of the token."""

    name = "pkcs11"

    def __init__(self, settings: Settings) -> None:
        if not settings.root_key:
            raise RootKeyUnavailable("KEYLEDGER_ROOT_KEY_PROVIDER=pkcs11 needs KEYLEDGER_ROOT_KEY=pkcs11:token=...;object=...")
        try:
            self.uri = parse_pkcs11_uri(settings.root_key)
        except Pkcs11UriError as exc:
            raise RootKeyUnavailable(f"KEYLEDGER_ROOT_KEY is not a usable PKCS#11 URI: {exc}.") from None
        self.module = self.uri.module_path or settings.pkcs11_module
        if not self.module:
            raise RootKeyUnavailable("KEYLEDGER_PKCS11_MODULE must name the token's PKCS#11 module "
                                     "(e.g. /usr/lib/softhsm/libsofthsm2.so).")
        self._pin = _pin(settings, self.uri.pin_source, self.uri.pin_value)
        self._token: Token | None = None

    @property
    def token(self) -> Token:
        if self._token is None:
            try:
                self._token = Token(self.module, self.uri.token, self._pin)
            except TokenUnavailable as exc:
                raise RootKeyUnavailable(str(exc)) from None
        return self._token

    def held_versions(self) -> list[int]:
        try:
            return self.token.versions(self.uri.object)
        except TokenUnavailable as exc:
            raise RootKeyUnavailable(str(exc)) from None

    def load(self, first_start: bool) -> tuple[dict[int, RootKeyVersion], int]:
        held = self.held_versions()
        if not held:
            raise RootKeyUnavailable(
                f"PKCS#11 token {self.uri.token!r} holds no root key labelled {self.uri.object!r}; "
                "create it with 'keyledger root-key init'.")
        return {v: TokenRootKey(self.token, self.uri.object, v) for v in held}, max(held)

    def locate(self, version: int) -> RootKeyVersion | None:
        try:
            if self.token.find_key(self.uri.object, version):
                return TokenRootKey(self.token, self.uri.object, version)
        except (TokenUnavailable, RootKeyUnavailable):
            return None
        return None

    def add_version(self, version: int) -> RootKeyVersion:
        try:
            if not self.token.find_key(self.uri.object, version):
                self.token.generate_key(self.uri.object, version)
        except TokenUnavailable as exc:
            raise RootKeyUnavailable(str(exc)) from None
        return TokenRootKey(self.token, self.uri.object, version)

    def destroy_version(self, version: int) -> None:
        try:
            self.token.destroy_key(self.uri.object, version)
        except TokenUnavailable as exc:
            raise RootKeyUnavailable(str(exc)) from None

    def close(self) -> None:
        if self._token is not None:
            self._token.close()


def _pin(settings: Settings, pin_source: str | None, pin_value: str | None) -> str:
    if settings.pkcs11_pin:
        return settings.pkcs11_pin
    source = settings.pkcs11_pin_file
    if source is None and pin_source:
        source = Path(pin_source[len("file:"):] if pin_source.startswith("file:") else pin_source)
    if source is not None:
        try:
            return read_pin_file(source)
        except TokenUnavailable as exc:
            raise RootKeyUnavailable(str(exc)) from None
    if pin_value:
        return pin_value
    raise RootKeyUnavailable("The PKCS#11 token's user PIN is not given: set KEYLEDGER_PKCS11_PIN or "
                             "KEYLEDGER_PKCS11_PIN_FILE (a mode-0600 file).")


def root_key_provider(settings: Settings):
    """The configured provider (application/ports.py: RootKeyProvider); RootKeyUnavailable if misconfigured."""
    if settings.root_key_provider == "env":
        return EnvironmentRootKeyProvider(settings.root_key)
    if settings.root_key_provider == "pkcs11":
        return Pkcs11RootKeyProvider(settings)
    return FileRootKeyProvider(settings.root_key_file)


def load_root_keyring(settings: Settings, *, first_start: bool) -> RootKeyring:
    provider = root_key_provider(settings)
    versions, current = provider.load(first_start)
    return RootKeyring(versions=versions, current=current, locate=provider.locate)


def has_root_key_checks(session: Session) -> bool:
    return session.execute(sa.select(sa.func.count()).select_from(root_key_checks)).scalar_one() > 0


def check_root_keyring(session: Session, keyring: RootKeyring, *, retired: frozenset[int] = frozenset()) -> None:
    """Every held version must match its stored check; new versions get one. Runs in a write transaction.
    A retired version is never given a new check (it must not come back into use)."""
    stored = {r.version: bytes(r.check_value) for r in session.execute(sa.select(root_key_checks))}
    for version in sorted(keyring.versions):
        if version in retired:
            continue
        if version in stored:
            check_version(keyring, version, stored[version])
        else:
            session.execute(root_key_checks.insert().values(
                version=version, check_value=keyring.wrap(_CHECK_VALUE, purpose=_CHECK_PURPOSE, key_id=str(version),
                                                          version=version)))
    if stored and not set(stored) & set(keyring.versions):
        raise RootKeyUnavailable("None of the root key versions held matches this database.")


def check_version(keyring: RootKeyring, version: int, check_value: bytes) -> None:
    try:
        value = keyring.unwrap(check_value, purpose=_CHECK_PURPOSE, key_id=str(version))
    except UnwrapError:
        raise RootKeyUnavailable(f"Root key version {version} does not match this database: it is the wrong key.") from None
    except TokenUnavailable as exc:
        raise RootKeyUnavailable(str(exc)) from None
    if value != _CHECK_VALUE:
        raise RootKeyUnavailable(f"Root key version {version} does not match this database: it is the wrong key.")


def new_check_value(keyring: RootKeyring, version: int) -> bytes:
    return keyring.wrap(_CHECK_VALUE, purpose=_CHECK_PURPOSE, key_id=str(version), version=version)
