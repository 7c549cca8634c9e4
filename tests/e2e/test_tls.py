"""HTTPS end to end: `keyledger serve --tls-cert/--tls-key` with a self-signed certificate for 127.0.0.1, reached
by boto3, the AWS CLI and `openssl s_client`, which checks the protocol and cipher policy from the outside.

SQLite only: TLS is the transport in front of the same application; the storage engine never sees it, so
running these against PostgreSQL too would test nothing new.
"""
from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import httpx
import pytest
from botocore.exceptions import ClientError, SSLError

from tests.certificates import TlsFiles, self_signed
from tests.e2e.test_audit_support import export_jsonl
from tests.servers import ROOT, Server, free_port

AWS = Path(sys.executable).parent / "aws"
OPENSSL = shutil.which("openssl")


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return self_signed(tmp_path_factory.mktemp("tls-certs"))


@pytest.fixture(scope="module", params=["1", "2"], ids=["one-process", "two-workers"])
def tls_server(request: pytest.FixtureRequest, certs: TlsFiles,
               tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The same policy with one server process and with two workers (each builds its own context)."""
    server = Server(data_dir=tmp_path_factory.mktemp("tls") / "server", tls=certs,
                    env={"KEYLEDGER_WORKERS": request.param})
    try:
        yield server.start()
    finally:
        server.stop()


@pytest.fixture(scope="module")
def plain_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = Server(data_dir=tmp_path_factory.mktemp("plain") / "server")
    try:
        yield server.start()
    finally:
        server.stop()


# -- clients ---------------------------------------------------------------------------------------

def test_boto3_over_https(tls_server: Server):
    assert tls_server.endpoint.startswith("https://")
    kms = tls_server.client()
    key_id = kms.create_key(Description="over TLS")["KeyMetadata"]["KeyId"]
    blob = kms.encrypt(KeyId=key_id, Plaintext=b"sent over TLS", EncryptionContext={"t": "tls"})["CiphertextBlob"]
    assert kms.decrypt(CiphertextBlob=blob, EncryptionContext={"t": "tls"})["Plaintext"] == b"sent over TLS"


def test_boto3_checks_the_certificate(tls_server: Server):
    """A client that does not trust the self-signed certificate is refused by its own verification: the
    server is really presenting a certificate, and the tests above really verify it."""
    import boto3

    untrusting = boto3.client("kms", endpoint_url=tls_server.endpoint, region_name="us-east-1",
                              aws_access_key_id="AKIAEXAMPLE", aws_secret_access_key="x")
    with pytest.raises(SSLError, match="CERTIFICATE_VERIFY_FAILED|certificate verify failed"):
        untrusting.list_keys()


def aws(server: Server, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([str(AWS), "kms", *args, "--endpoint-url", server.endpoint, "--output", "json"],
                          env={**server.cli_env(), **(env or {})}, capture_output=True, text=True, timeout=120)


@pytest.mark.skipif(not AWS.exists(), reason=f"the AWS CLI is not installed next to {sys.executable}")
def test_aws_cli_with_ca_bundle(tls_server: Server, certs: TlsFiles, tmp_path: Path):
    created = aws(tls_server, "create-key", "--ca-bundle", str(certs.cert))
    assert created.returncode == 0, created.stderr
    assert '"KeyState": "Enabled"' in created.stdout
    key_id = created.stdout.split('"KeyId": "', 1)[1].split('"', 1)[0]

    # AWS_CA_BUNDLE, the other way the banner names, does the same.
    (tmp_path / "plain.bin").write_bytes(b"cli over TLS")
    encrypted = aws(tls_server, "encrypt", "--key-id", key_id, "--plaintext", f"fileb://{tmp_path / 'plain.bin'}",
                    "--query", "CiphertextBlob", env={"AWS_CA_BUNDLE": str(certs.cert)})
    assert encrypted.returncode == 0, encrypted.stderr
    (tmp_path / "cipher.bin").write_bytes(base64.b64decode(encrypted.stdout.strip().strip('"')))
    decrypted = aws(tls_server, "decrypt", "--ciphertext-blob", f"fileb://{tmp_path / 'cipher.bin'}",
                    "--query", "Plaintext", env={"AWS_CA_BUNDLE": str(certs.cert)})
    assert decrypted.returncode == 0, decrypted.stderr
    assert base64.b64decode(decrypted.stdout.strip().strip('"')) == b"cli over TLS"

    untrusting = aws(tls_server, "list-keys")
    assert untrusting.returncode != 0
    assert "SSL validation failed" in untrusting.stderr or "CERTIFICATE_VERIFY_FAILED" in untrusting.stderr


def test_start_banner_names_https_and_how_to_trust(tls_server: Server, certs: TlsFiles):
    log = tls_server.log()
    assert f"keyledger listening on https://127.0.0.1:{tls_server.port}" in log
    assert f"--ca-bundle {certs.cert.resolve()}" in log
    assert f"AWS_CA_BUNDLE={certs.cert.resolve()}" in log
    assert "TLS 1.2+ with forward-secret suites only" in log
    # The key's path may be printed; its contents never.
    for line in certs.key.read_text().splitlines()[1:-1]:
        assert line not in log


# -- the protocol and cipher policy, seen from outside ----------------------------------------------

def s_client(server: Server, certs: TlsFiles, *args: str) -> tuple[int, str]:
    """One handshake with `openssl s_client`; -msg shows which messages went each way."""
    proc = subprocess.run([OPENSSL, "s_client", "-connect", f"127.0.0.1:{server.port}", "-brief", "-msg",
                           "-CAfile", str(certs.cert), "-verify_return_error", *args],
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30)
    return proc.returncode, proc.stdout + proc.stderr


@pytest.mark.skipif(OPENSSL is None, reason="openssl is not installed")
@pytest.mark.parametrize("args", [
    # SECLEVEL=0 lets OpenSSL 3 offer TLS 1.0/1.1 at all, so the refusal is the server's.
    pytest.param(("-tls1", "-cipher", "DEFAULT@SECLEVEL=0"), id="tls1.0"),
    pytest.param(("-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0"), id="tls1.1"),
    pytest.param(("-tls1_2", "-cipher", "AES256-GCM-SHA384"), id="rsa-key-exchange-not-forward-secret"),
    pytest.param(("-tls1_2", "-cipher", "ECDHE-RSA-AES128-SHA256"), id="ecdhe-cbc-not-aead"),
    pytest.param(("-tls1_2", "-cipher", "DHE-RSA-AES128-GCM-SHA256"), id="finite-field-dhe"),
])
def test_handshake_refused(tls_server: Server, certs: TlsFiles, args: tuple[str, ...]):
    code, output = s_client(tls_server, certs, *args)
    assert "ClientHello" in output, f"the client never offered this handshake:\n{output}"
    assert code != 0, output
    assert "ServerHello" not in output and "CONNECTION ESTABLISHED" not in output, output


@pytest.mark.skipif(OPENSSL is None, reason="openssl is not installed")
@pytest.mark.parametrize("args,protocol,suite", [
    (("-tls1_2", "-cipher", "ECDHE-RSA-AES128-GCM-SHA256"), "TLSv1.2", "ECDHE-RSA-AES128-GCM-SHA256"),
    (("-tls1_2", "-cipher", "ECDHE-RSA-AES256-GCM-SHA384"), "TLSv1.2", "ECDHE-RSA-AES256-GCM-SHA384"),
    (("-tls1_2", "-cipher", "ECDHE-RSA-CHACHA20-POLY1305"), "TLSv1.2", "ECDHE-RSA-CHACHA20-POLY1305"),
    (("-tls1_3",), "TLSv1.3", None),
])
def test_handshake_accepted(tls_server: Server, certs: TlsFiles, args: tuple[str, ...], protocol: str,
                            suite: str | None):
    code, output = s_client(tls_server, certs, *args)
    assert code == 0, output
    assert f"Protocol version: {protocol}" in output
    assert "Verification: OK" in output
    if suite:
        assert f"Ciphersuite: {suite}" in output


@pytest.mark.skipif(OPENSSL is None, reason="openssl is not installed")
def test_no_tls12_session_ticket(tls_server: Server, certs: TlsFiles):
    """TLS 1.2 tickets would carry the master secret under one process-lifetime key (docs/decisions.md)."""
    code, output = s_client(tls_server, certs, "-tls1_2")
    assert code == 0, output
    assert "NewSessionTicket" not in output


def test_plain_http_to_the_tls_port_fails(tls_server: Server):
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://127.0.0.1:{tls_server.port}/healthz", timeout=5)
    with socket.create_connection(("127.0.0.1", tls_server.port), timeout=5) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        try:
            answer = sock.recv(1024)
        except ConnectionResetError:
            answer = b""
    assert not answer.startswith(b"HTTP/"), answer


# -- aws:SecureTransport ------------------------------------------------------------------------------

def scheme_seen_by_app(server: Server, **headers: str) -> str:
    """The scheme the application sees (what `aws:SecureTransport` is computed from): Starlette redirects
    /healthz/ to /healthz with an absolute URL built from the request's own scheme."""
    response = httpx.get(server.endpoint + "/healthz/", headers=headers, verify=server.verify,
                         follow_redirects=False, timeout=5)
    assert response.status_code == 307, response
    return response.headers["location"].split("://", 1)[0]


def test_app_sees_https_over_tls(tls_server: Server):
    assert scheme_seen_by_app(tls_server) == "https"
    assert scheme_seen_by_app(tls_server, **{"X-Forwarded-Proto": "http"}) == "https"


def test_forwarded_headers_cannot_claim_tls_or_an_address(plain_server: Server):
    """uvicorn trusts X-Forwarded-* from 127.0.0.1 by default; keyledger turns that off, or any local caller
    could satisfy `aws:SecureTransport` over plain HTTP and write a false sourceIPAddress into the audit log."""
    assert scheme_seen_by_app(plain_server) == "http"
    assert scheme_seen_by_app(plain_server, **{"X-Forwarded-Proto": "https"}) == "http"

    def forwarded(request, **_):  # type: ignore[no-untyped-def]
        request.headers["X-Forwarded-For"] = "203.0.113.9"
        request.headers["X-Forwarded-Proto"] = "https"

    kms = plain_server.client()
    kms.meta.events.register("before-sign.kms.*", forwarded)
    request_id = kms.list_keys()["ResponseMetadata"]["RequestId"]
    record = next(r for r in export_jsonl(plain_server) if r["requestID"] == request_id)
    assert record["sourceIPAddress"] == "127.0.0.1"


# -- option errors -------------------------------------------------------------------------------------

def serve(tmp_path: Path, *args: str, **env: str) -> tuple[subprocess.CompletedProcess, Path]:
    """`keyledger serve` expected to refuse to start; returns the process and the data dir it was given."""
    data_dir = tmp_path / "never-created"
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("KEYLEDGER_", "AWS_"))}
    clean.update(PYTHONPATH=str(ROOT), KEYLEDGER_DATA_DIR=str(data_dir), KEYLEDGER_PORT=str(free_port()), **env)
    proc = subprocess.run([sys.executable, "-m", "api", "serve", *args], cwd=ROOT, env=clean,
                          capture_output=True, text=True, timeout=60)
    return proc, data_dir


def encrypted_copy(key: Path, target: Path) -> Path:
    from cryptography.hazmat.primitives import serialization

    private = serialization.load_pem_private_key(key.read_bytes(), password=None)
    target.write_bytes(private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                             serialization.BestAvailableEncryption(b"passphrase")))
    return target


@pytest.mark.parametrize("case", ["cert-flag-only", "key-env-only", "missing-cert", "cert-is-a-directory",
                                  "not-a-certificate", "mismatched-key", "encrypted-key"])
def test_bad_tls_options_refuse_to_start(case: str, certs: TlsFiles, tmp_path: Path):
    other = self_signed(tmp_path / "other", "other")
    cert, key = str(certs.cert), str(certs.key)
    args, env, message = {
        "cert-flag-only": (["--tls-cert", cert], {}, "needs both a certificate and a private key"),
        "key-env-only": ([], {"KEYLEDGER_TLS_KEY": key}, "needs both a certificate and a private key"),
        "missing-cert": (["--tls-cert", str(tmp_path / "absent.crt"), "--tls-key", key], {},
                         f"cannot read TLS certificate {tmp_path / 'absent.crt'}: No such file or directory"),
        "cert-is-a-directory": (["--tls-cert", str(tmp_path), "--tls-key", key], {},
                                f"cannot read TLS certificate {tmp_path}: Is a directory"),
        "not-a-certificate": ([], {"KEYLEDGER_TLS_CERT": key, "KEYLEDGER_TLS_KEY": key},
                              f"TLS certificate {key} holds no PEM certificate"),
        "mismatched-key": (["--tls-cert", cert, "--tls-key", str(other.key)], {},
                           f"TLS private key {other.key} does not match the certificate in {cert}"),
        "encrypted-key": (["--tls-cert", cert, "--tls-key", str(encrypted_copy(certs.key, tmp_path / "enc.key"))],
                          {}, "is encrypted; keyledger needs an unencrypted key"),
    }[case]
    proc, data_dir = serve(tmp_path, *args, **env)
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0, output
    assert message in proc.stderr, output
    assert "Traceback" not in output
    assert not data_dir.exists(), "refused before creating anything"
    for secret in (certs.key, other.key):
        for line in secret.read_text().splitlines()[1:-1]:
            assert line not in output


def _secure_transport_only_policy() -> str:
    root = "arn:aws:iam::111122223333:root"
    return json.dumps({"Version": "2012-10-17", "Statement": [
        {"Sid": "Admin", "Effect": "Allow", "Principal": {"AWS": root}, "Action": "kms:*", "Resource": "*"},
        {"Sid": "TlsOnly", "Effect": "Deny", "Principal": "*", "Action": ["kms:Encrypt", "kms:Decrypt"],
         "Resource": "*", "Condition": {"Bool": {"aws:SecureTransport": "false"}}}]})


def test_secure_transport_condition_follows_the_connection(tls_server: Server, plain_server: Server):
    """The same policy allows over HTTPS and refuses over plain HTTP: aws:SecureTransport is the connection's."""
    for server, allowed in ((tls_server, True), (plain_server, False)):
        kms = server.client()
        key_id = kms.create_key(Policy=_secure_transport_only_policy())["KeyMetadata"]["KeyId"]
        if allowed:
            blob = kms.encrypt(KeyId=key_id, Plaintext=b"over tls")["CiphertextBlob"]
            assert kms.decrypt(CiphertextBlob=blob)["Plaintext"] == b"over tls"
        else:
            with pytest.raises(ClientError) as refused:
                kms.encrypt(KeyId=key_id, Plaintext=b"in the clear")
            assert refused.value.response["Error"]["Code"] == "AccessDeniedException"
            assert "with an explicit deny in a resource-based policy" in refused.value.response["Error"]["Message"]
