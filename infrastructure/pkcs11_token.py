"""PKCS#11 tokens: RFC 7512 URIs, logged-in sessions, and AES keys that never leave the token.

Everything that talks to a PKCS#11 module (python-pkcs11) is here. A key made here is a token object with
CKA_SENSITIVE and not CKA_EXTRACTABLE: its value cannot be read out, only used. Encryption with it is
CKM_AES_GCM (12-byte iv, 16-byte tag, AAD), which SoftHSM2 and the HSMs we know support; its output is the
same bytes as `cryptography`'s AESGCM, so a token-held root key writes keyledger's ordinary wrapped format.

Versions of one named key share the label and differ in CKA_ID: 4 bytes, big endian, the version number.

Errors never carry a PIN; a wrong PIN, an absent token or a missing key raise TokenUnavailable with a
sentence an operator can act on.
"""
from __future__ import annotations

import os
import queue
import struct
import threading
import urllib.parse
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from domain.crypto.wrapping import UnwrapError

MAX_URI_LENGTH = 2048
_PATH_ATTRIBUTES = {"token", "object", "id", "type", "manufacturer", "model", "serial", "slot-id",
                    "slot-description", "slot-manufacturer", "library-description", "library-manufacturer",
                    "library-version"}
_QUERY_ATTRIBUTES = {"pin-source", "pin-value", "module-name", "module-path"}
SESSION_POOL = 4  # concurrent operations per token in one process; a session runs one operation at a time


class TokenUnavailable(Exception):
    """The token, its PIN or a key in it cannot be used. The message never contains the PIN. ``reason`` says
    which, for callers that answer differently (custom key stores map it to a ConnectionErrorCode): module,
    no-token, pin, pin-locked, session, key."""

    def __init__(self, message: str, reason: str = "key") -> None:
        super().__init__(message)
        self.reason = reason


class Pkcs11UriError(ValueError):
    pass


@dataclass(frozen=True)
class Pkcs11Uri:
    """The parts of an RFC 7512 PKCS#11 URI keyledger uses: which token, which object, and optionally the
    module and where the PIN comes from (pin-value is accepted, but a PIN in a URI ends up in process lists and
    shell histories: prefer KEYLEDGER_PKCS11_PIN_FILE)."""

    token: str
    object: str
    module_path: str | None = None
    pin_source: str | None = None
    pin_value: str | None = field(default=None, repr=False)

    def __str__(self) -> str:
        quote = lambda v: urllib.parse.quote(v, safe="")  # noqa: E731
        return f"pkcs11:token={quote(self.token)};object={quote(self.object)}"


def parse_pkcs11_uri(text: str) -> Pkcs11Uri:
    if len(text) > MAX_URI_LENGTH:
        raise Pkcs11UriError(f"a PKCS#11 URI is at most {MAX_URI_LENGTH} characters")
    if not text.startswith("pkcs11:"):
        raise Pkcs11UriError("a PKCS#11 URI starts with 'pkcs11:' (RFC 7512), e.g. pkcs11:token=keyledger;object=root")
    path, _, query = text[len("pkcs11:"):].partition("?")
    values: dict[str, str] = {}
    for part, separator, allowed in ((path, ";", _PATH_ATTRIBUTES), (query, "&", _QUERY_ATTRIBUTES)):
        for item in filter(None, part.split(separator)):
            name, equals, raw = item.partition("=")
            if not equals:
                raise Pkcs11UriError(f"PKCS#11 URI attribute {name[:40]!r} has no value")
            if name not in allowed and not name.startswith("x-"):
                raise Pkcs11UriError(f"PKCS#11 URI attribute {name[:40]!r} is not one RFC 7512 defines here")
            if name in values:
                raise Pkcs11UriError(f"PKCS#11 URI attribute {name!r} appears twice")
            values[name] = urllib.parse.unquote(raw, errors="strict")
    if values.get("type", "secret-key") != "secret-key":
        raise Pkcs11UriError("the root key is a secret key: the URI's type must be secret-key (or absent)")
    if not values.get("token") or not values.get("object"):
        raise Pkcs11UriError("the PKCS#11 URI must name both token= and object=")
    return Pkcs11Uri(token=values["token"], object=values["object"], module_path=values.get("module-path"),
                     pin_source=values.get("pin-source"), pin_value=values.get("pin-value"))


def version_id(version: int | bytes) -> bytes:
    """CKA_ID of a root key version (4 bytes, big endian); bytes (a custom key store key's id) as they are."""
    return version if isinstance(version, bytes) else struct.pack(">I", version)


def read_pin_file(path: Path) -> str:
    try:
        if path.stat().st_mode & 0o077:
            raise TokenUnavailable(f"The PIN file {path} is readable by others; run 'chmod 600 {path}'.")
        return path.read_text().strip()
    except OSError as exc:
        raise TokenUnavailable(f"The PIN file {path} cannot be read ({exc.strerror}).") from None


def _pkcs11() -> Any:
    try:
        import pkcs11
    except ImportError:  # pragma: no cover - the dependency is declared
        raise TokenUnavailable("python-pkcs11 is not installed; install keyledger's dependencies.") from None
    return pkcs11


class TokenSession:
    """One logged-in session of a token, used by one thread at a time (the pool hands it out)."""

    def __init__(self, session: Any) -> None:
        self.session = session
        self.keys: dict[tuple[str, int], Any] = {}


class Token:
    """A logged-in connection to one token: a small pool of sessions for concurrent use."""

    def __init__(self, module: str, label: str, pin: str) -> None:
        pkcs11 = _pkcs11()
        self.module, self.label = module, label
        if not os.path.exists(module):
            raise TokenUnavailable(f"The PKCS#11 module {module} does not exist.", "module")
        try:
            library = pkcs11.lib(module)
        except pkcs11.PKCS11Error as exc:
            raise TokenUnavailable(f"The PKCS#11 module {module} could not be loaded ({type(exc).__name__}).",
                                   "module") from None
        try:
            self._token = library.get_token(token_label=label)
        except pkcs11.NoSuchToken:
            raise TokenUnavailable(f"No PKCS#11 token labelled {label!r} is present in {module}.", "no-token") from None
        except pkcs11.MultipleTokensReturned:
            raise TokenUnavailable(f"More than one PKCS#11 token is labelled {label!r}; labels must be unique.") from None
        self._pool: queue.LifoQueue[TokenSession] = queue.LifoQueue()
        self._sessions: list[TokenSession] = []
        self._lock = threading.Lock()
        self._pin = pin
        self._closed = False
        self._pool.put(self._open())  # the first one proves the PIN now, not at first use

    def _open(self) -> TokenSession:
        pkcs11 = _pkcs11()
        try:
            session = TokenSession(self._token.open(user_pin=self._pin, rw=True))
        except pkcs11.PinIncorrect:
            raise TokenUnavailable(f"The PIN for PKCS#11 token {self.label!r} is wrong.", "pin") from None
        except pkcs11.PinLocked:
            raise TokenUnavailable(f"The user PIN of PKCS#11 token {self.label!r} is locked.", "pin-locked") from None
        except (pkcs11.TokenNotPresent, pkcs11.DeviceRemoved, pkcs11.SlotIDInvalid) as exc:
            # The token was there when the module listed it and is gone now (pulled out, an HSM gone offline).
            raise TokenUnavailable(f"PKCS#11 token {self.label!r} is no longer present ({type(exc).__name__}).",
                                   "no-token") from None
        except pkcs11.PKCS11Error as exc:
            raise TokenUnavailable(f"PKCS#11 token {self.label!r} refused a session ({type(exc).__name__}).",
                                   "session") from None
        with self._lock:
            self._sessions.append(session)
        return session

    @contextmanager
    def session(self) -> Iterator[TokenSession]:
        if self._closed:
            raise TokenUnavailable(f"The connection to PKCS#11 token {self.label!r} is closed.", "session")
        try:
            held = self._pool.get_nowait()
        except queue.Empty:
            with self._lock:
                room = len(self._sessions) < SESSION_POOL
            held = self._open() if room else self._pool.get()
        try:
            yield held
        finally:
            self._pool.put(held)

    # -- keys --------------------------------------------------------------------------------------

    def find_key(self, label: str, version: int | bytes) -> bool:
        with self.session() as held:
            return self._key(held, label, version, required=False) is not None

    def versions(self, label: str) -> list[int]:
        pkcs11 = _pkcs11()
        from pkcs11 import Attribute, ObjectClass

        with self.session() as held:
            found = held.session.get_objects({Attribute.CLASS: ObjectClass.SECRET_KEY, Attribute.LABEL: label})
            numbers = []
            for key in found:
                try:
                    raw = key[Attribute.ID]
                except pkcs11.PKCS11Error:
                    continue
                if len(raw) == 4:
                    numbers.append(struct.unpack(">I", raw)[0])
            return sorted(numbers)

    def generate_key(self, label: str, version: int | bytes) -> None:
        """A new AES-256 key: a token object, sensitive, never extractable; refused if the version exists."""
        from pkcs11 import Attribute, KeyType

        if self.find_key(label, version):
            raise TokenUnavailable(f"PKCS#11 token {self.label!r} already holds {label!r} version {version}.")
        with self.session() as held:
            held.session.generate_key(KeyType.AES, 256, label=label, id=version_id(version), store=True, template={
                Attribute.TOKEN: True, Attribute.SENSITIVE: True, Attribute.EXTRACTABLE: False,
                Attribute.PRIVATE: True, Attribute.ENCRYPT: True, Attribute.DECRYPT: True,
                Attribute.WRAP: False, Attribute.UNWRAP: False, Attribute.DERIVE: False})

    def destroy_key(self, label: str, version: int | bytes) -> bool:
        """Destroys the object (crypto-shredding in hardware). False: there was none."""
        pkcs11 = _pkcs11()
        from pkcs11 import Attribute, ObjectClass

        with self._lock:
            sessions = list(self._sessions)
        for other in sessions:
            other.keys.pop((label, version), None)
        with self.session() as held:
            found = list(held.session.get_objects({Attribute.CLASS: ObjectClass.SECRET_KEY, Attribute.LABEL: label,
                                                   Attribute.ID: version_id(version)}))
            for key in found:
                try:
                    key.destroy()
                except pkcs11.PKCS11Error as exc:
                    raise TokenUnavailable(f"PKCS#11 token {self.label!r} refused to destroy {label!r} "
                                           f"version {version} ({type(exc).__name__}).") from None
            return bool(found)

    def objects(self) -> list[tuple[str, bytes]]:
        """(label, id) of every secret key object in the token: what an operator lists to see what it holds."""
        from pkcs11 import Attribute, ObjectClass

        with self.session() as held:
            return [(k.label, k[Attribute.ID]) for k in held.session.get_objects({Attribute.CLASS: ObjectClass.SECRET_KEY})]

    def _key(self, held: TokenSession, label: str, version: int | bytes, *, required: bool = True) -> Any:
        pkcs11 = _pkcs11()
        from pkcs11 import Attribute, KeyType, ObjectClass

        cached = held.keys.get((label, version))
        if cached is not None:
            return cached
        try:
            key = held.session.get_key(object_class=ObjectClass.SECRET_KEY, key_type=KeyType.AES, label=label,
                                       id=version_id(version))
        except pkcs11.NoSuchKey:
            if required:
                raise TokenUnavailable(f"PKCS#11 token {self.label!r} holds no key {label!r} version {version}.") from None
            return None
        except pkcs11.MultipleObjectsReturned:
            raise TokenUnavailable(f"PKCS#11 token {self.label!r} holds {label!r} version {version} twice.") from None
        if key[Attribute.EXTRACTABLE] or not key[Attribute.SENSITIVE]:
            raise TokenUnavailable(f"Key {label!r} version {version} in PKCS#11 token {self.label!r} is extractable "
                                   "or not sensitive; keyledger uses only keys that cannot leave the token.")
        held.keys[(label, version)] = key
        return key

    def encrypt(self, label: str, version: int | bytes, iv: bytes, data: bytes, aad: bytes) -> bytes:
        from pkcs11 import Mechanism, PKCS11Error
        from pkcs11.mechanisms import GCMParams

        with self.session() as held:
            key = self._key(held, label, version)
            try:
                return bytes(key.encrypt(data, mechanism=Mechanism.AES_GCM, mechanism_param=GCMParams(iv, aad, 128)))
            except PKCS11Error as exc:
                raise TokenUnavailable(f"PKCS#11 token {self.label!r} failed to encrypt ({type(exc).__name__}).") from None

    def decrypt(self, label: str, version: int | bytes, iv: bytes, sealed: bytes, aad: bytes) -> bytes:
        """UnwrapError when the value does not authenticate (the token answers a failed tag with an error)."""
        from pkcs11 import Mechanism, PKCS11Error
        from pkcs11.mechanisms import GCMParams

        if len(sealed) < 16:
            raise UnwrapError("wrapped value is truncated")
        with self.session() as held:
            key = self._key(held, label, version)
            try:
                return bytes(key.decrypt(sealed, mechanism=Mechanism.AES_GCM, mechanism_param=GCMParams(iv, aad, 128)))
            except PKCS11Error:
                raise UnwrapError("wrapped value does not authenticate under the token's key") from None

    def random(self, length: int) -> bytes:
        """``length`` bytes from the token's random number generator (C_GenerateRandom)."""
        from pkcs11 import PKCS11Error

        with self.session() as held:
            try:
                return bytes(held.session.generate_random(length * 8))
            except PKCS11Error as exc:
                raise TokenUnavailable(f"PKCS#11 token {self.label!r} failed to generate random bytes "
                                       f"({type(exc).__name__}).") from None

    def mechanisms(self) -> set[str]:
        """Names of the mechanisms the token's slot supports (e.g. AES_GCM, AES_KEY_GEN)."""
        return {getattr(m, "name", str(m)) for m in self._token.slot.get_mechanisms()}

    def close(self) -> None:
        self._closed = True
        with self._lock:
            sessions, self._sessions = self._sessions, []
        for held in sessions:
            try:
                held.session.close()
            except Exception:  # noqa: BLE001 - closing a session of a token already gone
                pass


class TokenRootKey:
    """One root key version inside a token (RootKeyVersion): AES-GCM runs in the token."""

    def __init__(self, token: Token, label: str, version: int) -> None:
        self._token, self._label, self._version = token, label, version

    def seal(self, iv: bytes, secret: bytes, aad: bytes) -> bytes:
        return self._token.encrypt(self._label, self._version, iv, secret, aad)

    def open(self, iv: bytes, sealed: bytes, aad: bytes) -> bytes:
        return self._token.decrypt(self._label, self._version, iv, sealed, aad)
