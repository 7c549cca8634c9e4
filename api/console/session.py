"""Console sessions and CSRF tokens.

Signing in proves an access key's secret once; the browser then holds only a session token, never the
secret: ``base64url(payload) "." base64url(HMAC-SHA256(key, payload))`` where the payload names the access
key, the region, the expiry and a random nonce, and the key is a root-wrapped service secret
(``console-session-key``), so every process and node on the database accepts the same sessions and a
forged or altered token fails. Each request re-checks the access key (disabled or deleted: the session
ends). Sign-out revokes the nonce in this process; other processes accept the token until it expires
(``KEYLEDGER_CONSOLE_SESSION_SECONDS``, 15 minutes by default), and the cookie is cleared in the browser.

CSRF: every POST form carries a token. With a session it is HMAC(key, "csrf" ‖ nonce), bound to that
session; on the sign-in form, before any session, it is a random value also set as a SameSite=Strict
HttpOnly cookie (double submit), so a cross-site page cannot sign a browser in to an attacker's account.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import threading
from dataclasses import dataclass
from datetime import datetime
from http.cookies import CookieError, SimpleCookie
from typing import Iterable

PREFIX = "/console"  # where the console is served; its cookies are scoped to it
SESSION_COOKIE = "keyledger_console"
SIGNIN_CSRF_COOKIE = "keyledger_console_signin"
MAX_TOKEN = 512


class SessionRefused(Exception):
    """No session, or one that is altered, expired or revoked: the message says which."""


@dataclass(frozen=True)
class Session:
    access_key_id: str
    region: str
    expires: float  # epoch seconds, service clock
    nonce: str


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class SessionCodec:
    def __init__(self, key: bytes, ttl_seconds: float) -> None:
        self._key = hashlib.sha256(b"keyledger console session\x00" + key).digest()
        self.ttl_seconds = ttl_seconds
        self._revoked: dict[str, float] = {}
        self._lock = threading.Lock()

    def issue(self, access_key_id: str, region: str, now: datetime) -> tuple[str, Session]:
        session = Session(access_key_id, region, now.timestamp() + self.ttl_seconds, secrets.token_hex(16))
        payload = json.dumps({"k": session.access_key_id, "r": session.region, "e": session.expires,
                              "n": session.nonce}, separators=(",", ":")).encode()
        return f"{_b64(payload)}.{_b64(self._mac(payload))}", session

    def open(self, token: str | None, now: datetime) -> Session:
        if not token:
            raise SessionRefused("Sign in to use the console.")
        if len(token) > MAX_TOKEN or token.count(".") != 1:
            raise SessionRefused("The console session is not valid: sign in again.")
        encoded, mac = token.split(".")
        try:
            payload, given = _unb64(encoded), _unb64(mac)
        except (ValueError, TypeError):
            raise SessionRefused("The console session is not valid: sign in again.") from None
        # Only the canonical encoding: base64's spare bits must not give one session several spellings.
        if _b64(payload) != encoded or _b64(given) != mac or not hmac.compare_digest(given, self._mac(payload)):
            raise SessionRefused("The console session is not valid: sign in again.")
        fields = json.loads(payload)
        session = Session(str(fields["k"]), str(fields["r"]), float(fields["e"]), str(fields["n"]))
        if now.timestamp() >= session.expires:
            raise SessionRefused("The console session expired: sign in again.")
        with self._lock:
            if session.nonce in self._revoked:
                raise SessionRefused("The console session ended (signed out): sign in again.")
        return session

    def revoke(self, session: Session, now: datetime) -> None:
        with self._lock:
            self._revoked = {n: e for n, e in self._revoked.items() if e > now.timestamp()}  # forget expired ones
            self._revoked[session.nonce] = session.expires

    def csrf_token(self, session: Session) -> str:
        return _b64(self._mac(b"csrf\x00" + session.nonce.encode()))

    def csrf_ok(self, session: Session, given: str | None) -> bool:
        return bool(given) and hmac.compare_digest(given.encode(), self.csrf_token(session).encode())

    def _mac(self, payload: bytes) -> bytes:
        return hmac.new(self._key, payload, hashlib.sha256).digest()


def signin_csrf_ok(cookie: str | None, given: str | None) -> bool:
    return bool(cookie) and bool(given) and len(cookie or "") <= 128 and hmac.compare_digest(
        (cookie or "").encode(), (given or "").encode())


def set_cookie(name: str, value: str, max_age: float, secure: bool) -> str:
    """A Set-Cookie value: scoped to the console, never readable by a script, never sent cross-site."""
    return (f"{name}={value}; Path={PREFIX}; Max-Age={int(max_age)}; HttpOnly; SameSite=Strict"
            + ("; Secure" if secure else ""))


def request_cookies(raw_headers: Iterable[tuple[bytes, bytes]]) -> dict[str, str]:
    """The cookies a request carries; a Cookie header that is too long or does not parse is ignored."""
    jar: dict[str, str] = {}
    for name, value in raw_headers:
        if name.lower() == b"cookie" and len(value) <= 4096:
            try:
                parsed = SimpleCookie(value.decode("latin-1"))
            except CookieError:
                continue
            jar.update({k: m.value for k, m in parsed.items()})
    return jar
