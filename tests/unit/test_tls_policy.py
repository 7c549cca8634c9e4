"""The server SSLContext api/tls.py builds, inspected directly: everything it will negotiate is TLS 1.2+ and
forward-secret with an AEAD cipher (tests/e2e/test_tls.py checks the same from outside with openssl)."""
from __future__ import annotations

import ssl
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from api.tls import ServerTls, describe, host_named, server_tls
from tests.certificates import self_signed


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> ServerTls:
    files = self_signed(tmp_path_factory.mktemp("tls"))
    return server_tls(files.cert, files.key)


def test_only_forward_secret_aead_suites(tls: ServerTls):
    ciphers = tls.context.get_ciphers()
    tls12 = [c for c in ciphers if c["protocol"] == "TLSv1.2"]
    assert tls12, ciphers
    for cipher in ciphers:
        assert cipher["protocol"] in ("TLSv1.2", "TLSv1.3"), cipher
        assert cipher["aead"], cipher
        if cipher["protocol"] == "TLSv1.2":
            assert cipher["kea"] == "kx-ecdhe", cipher
    assert {c["symmetric"] for c in tls12} <= {"aes-128-gcm", "aes-256-gcm", "chacha20-poly1305"}


def test_version_floor_and_options(tls: ServerTls):
    context = tls.context
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2
    for option in (ssl.OP_NO_COMPRESSION, ssl.OP_NO_RENEGOTIATION, ssl.OP_NO_TICKET):
        assert context.options & option, option
    assert context.verify_mode == ssl.CERT_NONE  # no client certificates: callers authenticate with SigV4


def test_banner_description(tls: ServerTls):
    assert tls.names == ("127.0.0.1",) and tls.self_signed
    assert "for 127.0.0.1, valid until" in describe(tls)
    assert "EXPIRED" in describe(tls, now=tls.not_after + timedelta(seconds=1))
    assert host_named(tls, "127.0.0.1") and host_named(tls, "0.0.0.0") and host_named(tls, "::")
    assert not host_named(tls, "10.0.0.1") and not host_named(tls, "kms.example.com")
    assert tls.not_after > datetime.now(timezone.utc)
    assert isinstance(tls.certificate, Path)
