"""The HTTPS policy of ``keyledger serve``: the server's SSLContext, built and checked before anything starts.

Policy (docs/decisions.md, "TLS"): TLS 1.2 or newer; TLS 1.2 limited to ECDHE key exchange with AEAD ciphers
(AES-GCM, ChaCha20-Poly1305), so every session is forward-secret; TLS 1.3's suites all are. No compression, no
renegotiation, no stateless TLS 1.2 session tickets. Errors name the file and the problem, never its contents.
"""
from __future__ import annotations

import ssl
from dataclasses import dataclass
from datetime import datetime, timezone
from ipaddress import ip_address
from pathlib import Path
from typing import Any, Callable

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization

MINIMUM_VERSION = ssl.TLSVersion.TLSv1_2
# Mozilla's "intermediate" TLS 1.2 list without the finite-field DHE suites (slow, and clients offering them
# also offer ECDHE). RSA key exchange and CBC suites are absent: the first is not forward-secret, the second
# not AEAD. set_ciphers() governs TLS 1.2 only; OpenSSL's TLS 1.3 suites are all ECDHE + AEAD.
TLS12_CIPHERS = ":".join((
    "ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-RSA-AES128-GCM-SHA256",
    "ECDHE-ECDSA-AES256-GCM-SHA384", "ECDHE-RSA-AES256-GCM-SHA384",
    "ECDHE-ECDSA-CHACHA20-POLY1305", "ECDHE-RSA-CHACHA20-POLY1305",
))


class TlsConfigError(Exception):
    """A certificate or key that cannot serve HTTPS; the message is for the operator and holds no secret."""


@dataclass(frozen=True)
class ServerTls:
    context: ssl.SSLContext
    certificate: Path
    names: tuple[str, ...]  # the DNS names and IP addresses the certificate is valid for
    not_after: datetime
    issuer: str
    self_signed: bool  # then clients must be told to trust this very file

    def context_factory(self) -> Callable[[Any, Callable[[], ssl.SSLContext]], ssl.SSLContext]:
        """For uvicorn's ``ssl_context_factory``: our context instead of the one uvicorn would build from
        ssl_* options (which cannot set a minimum version). ALPN stays what uvicorn's protocol asks for."""
        def factory(config: Any, _default: Callable[[], ssl.SSLContext]) -> ssl.SSLContext:
            alpn = getattr(config.http_protocol_class, "alpn_protocols", None)
            if alpn:
                self.context.set_alpn_protocols(alpn)
            return self.context
        return factory


def worker_context_factory(config: Any, default: Callable[[], ssl.SSLContext]) -> ssl.SSLContext:
    """uvicorn's ``ssl_context_factory`` in each worker process (``KEYLEDGER_WORKERS`` > 1), where it arrives
    pickled, by name: the same policy, built again from the certificate and key `keyledger serve` checked before it
    started the workers and handed on in their environment."""
    from infrastructure.settings import Settings

    settings = Settings.load()
    if settings.tls_cert is None or settings.tls_key is None:
        raise TlsConfigError("a worker process was started for HTTPS without KEYLEDGER_TLS_CERT and KEYLEDGER_TLS_KEY")
    return server_tls(settings.tls_cert, settings.tls_key).context_factory()(config, default)


def server_tls(cert_file: Path, key_file: Path) -> ServerTls:
    """Reads and checks the certificate (chain) and private key, then builds the hardened context."""
    cert_pem = _read(cert_file, "certificate")
    key_pem = _read(key_file, "private key")
    try:
        chain = x509.load_pem_x509_certificates(cert_pem)
    except ValueError:
        raise TlsConfigError(f"TLS certificate {cert_file} holds no PEM certificate.") from None
    leaf = chain[0]
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except TypeError:
        raise TlsConfigError(f"TLS private key {key_file} is encrypted; keyledger needs an unencrypted key "
                             "(protect it with file permissions, mode 0600).") from None
    except (ValueError, UnsupportedAlgorithm):
        raise TlsConfigError(f"TLS private key {key_file} holds no PEM private key.") from None
    if key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo) != \
            leaf.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo):
        raise TlsConfigError(f"TLS private key {key_file} does not match the certificate in {cert_file}.")

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = MINIMUM_VERSION
    context.set_ciphers(TLS12_CIPHERS)
    # Compression: CRIME. Renegotiation: a client-triggered CPU cost and a history of bugs (TLS 1.3 has none).
    # Tickets: a TLS 1.2 ticket carries the session's master secret under one key that lives as long as the
    # process, which undoes forward secrecy for every ticketed session until restart; with OP_NO_TICKET
    # TLS 1.2 resumes from the in-memory session cache and TLS 1.3 uses stateful, (EC)DHE-resumed tickets.
    context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION | ssl.OP_NO_TICKET
    try:
        context.load_cert_chain(cert_file, key_file, password=_no_password)
    except ssl.SSLError as exc:
        raise TlsConfigError(f"TLS certificate {cert_file} and key {key_file} were refused by OpenSSL "
                             f"({exc.reason or exc.__class__.__name__}).") from None
    return ServerTls(context=context, certificate=cert_file, names=_names(leaf), not_after=leaf.not_valid_after_utc,
                     issuer=leaf.issuer.rfc4514_string(), self_signed=leaf.issuer == leaf.subject)


def describe(tls: ServerTls, now: datetime | None = None) -> str:
    """One banner line: which certificate, for which names, until when (a warning once it has expired)."""
    now = now or datetime.now(timezone.utc)
    names = ", ".join(tls.names) or "no subjectAltName (clients will refuse it)"
    expiry = f"EXPIRED {tls.not_after:%Y-%m-%d}" if tls.not_after < now else f"valid until {tls.not_after:%Y-%m-%d}"
    return f"TLS certificate {tls.certificate.resolve()} for {names}, {expiry}; TLS 1.2+ with forward-secret suites only"


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise TlsConfigError(f"cannot read TLS {what} {path}: {exc.strerror or exc.__class__.__name__}.") from None


def _no_password() -> str:
    # Without a callback OpenSSL would prompt on the terminal; the key was already checked to be unencrypted.
    raise TlsConfigError("TLS private key is encrypted.")


def _names(cert: x509.Certificate) -> tuple[str, ...]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return ()
    return tuple(san.get_values_for_type(x509.DNSName)) + tuple(str(ip) for ip in san.get_values_for_type(x509.IPAddress))


def host_named(tls: ServerTls, host: str) -> bool:
    """Whether the certificate is valid for the listen address (wildcard addresses always pass: clients
    reach them by some other name)."""
    try:
        address = ip_address(host)
    except ValueError:
        return host in tls.names or any(n.startswith("*.") and host.split(".", 1)[-1] == n[2:] for n in tls.names)
    return address.is_unspecified or str(address) in tls.names
