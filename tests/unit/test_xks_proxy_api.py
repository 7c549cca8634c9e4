"""keyledger serving the AWS KMS External Key Store (XKS) Proxy API, in process on a real runtime (SQLite file,
build_runtime, the ASGI app) with requests signed as AWS KMS signs them (botocore SigV4Auth, service
kms-xks-proxy): every route against the specification (paths, JSON fields, errorName and HTTP status), SigV4 and
credentials, unknown and disabled keys, AAD, tampering, authorization on the key policy with the request metadata
as condition keys, the audit records, GetKeyLastUsage, credential rotation, and no secret at rest."""
from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import uuid
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from api.http import create_app
from application.audit.checkpoints import audit_records
from application.audit.ledger_verify import verify_ledger
from application.audit.records import new_ids
from application.calls import Call, Operator
from domain.crypto.wrapping import RootKeyring
from infrastructure.bootstrap import Runtime, build_runtime
from infrastructure.settings import Settings
from tests.servers import ACCOUNT_ID, ADMIN_KEY_ID, ADMIN_SECRET
from tests.stored_states import sqlite_states

ROOT = f"arn:aws:iam::{ACCOUNT_ID}:root"
OPERATOR = Operator("tester", "test-host")
API = "/xks/kms/xks/v1"
ALICE = "arn:aws:iam::123456789012:user/Alice"


def metadata(operation: str = "Encrypt", principal: str = ALICE, **more: str) -> dict[str, str]:
    return {"awsPrincipalArn": principal, "kmsKeyArn": "arn:aws:kms:us-east-2:123456789012:key/kms-key",
            "kmsOperation": operation, "kmsRequestId": str(uuid.uuid4()), **more}


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


class Proxy:
    """The app in process, and signed XKS requests to it."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.app = create_app(runtime)
        assert runtime.services is not None and runtime.services.xks_credential_admin is not None
        self.services = runtime.services
        made = self.services.xks_credential_admin.create(ROOT, OPERATOR)
        self.access_key_id, self.secret = made.row.access_key_id, made.secret

    def post(self, path: str, body: Any, *, key_id: str | None = None, secret: str | None = None,
             service: str = "kms-xks-proxy", method: str = "POST", sign: bool = True,
             tamper: bool = False) -> httpx.Response:
        url = "http://127.0.0.1" + path
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        request = AWSRequest(method, url, data=data, headers={"Content-Type": "application/json"})
        if sign:
            SigV4Auth(Credentials(key_id or self.access_key_id, secret or self.secret), service,
                      "us-east-2").add_auth(request)
        headers = dict(request.headers)
        if tamper:
            data = data.replace(b"}", b" }", 1)  # the same JSON, other bytes: the signature covers the bytes

        async def send() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app)  # type: ignore[arg-type]
            async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
                return await client.request(method, url, content=data, headers=headers)
        return asyncio.run(send())

    def call(self, operation: str) -> Call:
        request_id, event_id = new_ids(2)
        return Call.operator_call(operation, operator=OPERATOR, at=self.runtime.now(), request_id=request_id,
                                  event_id=event_id, source="kms.amazonaws.com", region="us-east-1",
                                  account_id=ACCOUNT_ID)

    def new_key(self, **kwargs: Any) -> str:
        return self.services.keys.create_key(self.call("CreateKey"), **kwargs)["KeyMetadata"]["KeyId"]


@pytest.fixture(scope="module")
def proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proxy]:
    data_dir: Path = tmp_path_factory.mktemp("xks-proxy")
    runtime = build_runtime(Settings.load(environ={"KEYLEDGER_ADMIN_ACCESS_KEY_ID": ADMIN_KEY_ID,
                                                   "KEYLEDGER_ADMIN_SECRET_ACCESS_KEY": ADMIN_SECRET,
                                                   "KEYLEDGER_KEY_CACHE_SECONDS": "0"}, data_dir=data_dir))
    runtime.audit.start()
    try:
        yield Proxy(runtime)
    finally:
        runtime.close()


def refused(response: httpx.Response, status: int, name: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["errorName"] == name and set(body) == {"errorName", "errorMessage"}
    assert len(body["errorMessage"]) < 512 and all(" " <= c <= "~" for c in body["errorMessage"])


def encrypt_body(plaintext: bytes, aad: bytes | None = b"project=nile", **more: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"requestMetadata": metadata(), "plaintext": b64(plaintext), "encryptionAlgorithm": "AES_GCM",
                            **more}
    if aad is not None:
        body["additionalAuthenticatedData"] = b64(aad)
    return body


def records(proxy: Proxy, event_name: str) -> list[dict[str, Any]]:
    return [r for r in audit_records(proxy.runtime.ledger) if r["eventName"] == event_name]


def test_health_and_authentication(proxy: Proxy) -> None:
    health = {"requestMetadata": {"kmsRequestId": "h-1", "kmsOperation": "KmsHealthCheck"}}
    answer = proxy.post(f"{API}/health", health)
    assert answer.status_code == 200 and answer.headers["content-type"] == "application/json"
    body = answer.json()
    assert body["xksProxyFleetSize"] == 1 and body["xksProxyVendor"] and body["ekmVendor"]
    assert body["ekmFleetDetails"][0]["healthStatus"] == "ACTIVE" and 1 <= len(body["ekmFleetDetails"]) <= 10
    assert proxy.post(f"{API}/health", {"requestMetadata": {"kmsRequestId": "h", "kmsOperation": "NewKmsApi"}}
                      ).status_code == 200  # "MUST NOT reject a request as invalid" for an unknown kmsOperation
    # The specification: "it MUST reject the request with a 405 Method Not Allowed error".
    assert proxy.post(f"{API}/health", health, method="GET", sign=False).status_code == 405
    refused(proxy.post(f"{API}/health", health, secret="w" * 44), 401, "AuthenticationFailedException")
    refused(proxy.post(f"{API}/health", health, key_id="ABCDEFGHIJKLMNOPQRSTUVWX"), 401, "AuthenticationFailedException")
    refused(proxy.post(f"{API}/health", health, sign=False), 401, "AuthenticationFailedException")
    refused(proxy.post(f"{API}/health", health, service="kms"), 401, "AuthenticationFailedException")
    refused(proxy.post(f"{API}/health", health, key_id=ADMIN_KEY_ID, secret=ADMIN_SECRET), 401,
            "AuthenticationFailedException")  # a KMS access key is not an XKS proxy credential
    refused(proxy.post(f"{API}/health", health, tamper=True), 401, "AuthenticationFailedException")  # body signed
    # Paths: a wrong prefix, an unknown operation, a malformed external key id.
    refused(proxy.post("/other/kms/xks/v1/health", health), 404, "InvalidUriPathException")
    refused(proxy.post(f"{API}/keys/k/rotate", health), 404, "InvalidUriPathException")
    refused(proxy.post(f"{API}/keys/bad%20id/metadata", health), 404, "InvalidUriPathException")
    [record] = [r for r in records(proxy, "XksGetHealthStatus") if r["requestParameters"]
                and r["requestParameters"]["requestMetadata"]["kmsRequestId"] == "h-1"]
    assert record["eventSource"] == "kms-xks-proxy" and record["errorCode"] is None
    assert record["userIdentity"]["accessKeyId"] == proxy.access_key_id and record["userIdentity"]["arn"] == ROOT


def test_key_metadata_unknown_disabled_and_other_key_types(proxy: Proxy) -> None:
    key_id = proxy.new_key()
    asked = {"requestMetadata": metadata("CreateKey")}
    del asked["requestMetadata"]["kmsKeyArn"]  # KMS sends none for CreateKey
    assert proxy.post(f"{API}/keys/{key_id}/metadata", asked).json() == {
        "keySpec": "AES_256", "keyUsage": ["ENCRYPT", "DECRYPT"], "keyStatus": "ENABLED"}
    refused(proxy.post(f"{API}/keys/{uuid.uuid4()}/metadata", asked), 404, "KeyNotFoundException")
    refused(proxy.post(f"{API}/keys/not-a-key_id.1/metadata", asked), 404, "KeyNotFoundException")
    refused(proxy.post(f"{API}/keys/{key_id}/metadata", {}), 400, "ValidationException")
    refused(proxy.post(f"{API}/keys/{key_id}/metadata", {"requestMetadata": {"kmsOperation": "CreateKey"}}), 400,
            "ValidationException")
    refused(proxy.post(f"{API}/keys/{key_id}/metadata", b"not json"), 400, "ValidationException")
    hmac_key = proxy.new_key(key_spec="HMAC_256", key_usage="GENERATE_VERIFY_MAC")
    assert proxy.post(f"{API}/keys/{hmac_key}/metadata", asked).json()["keySpec"] == "HMAC_256"
    refused(proxy.post(f"{API}/keys/{hmac_key}/encrypt", encrypt_body(b"x")), 400, "InvalidKeyUsageException")
    proxy.services.keys.disable_key(proxy.call("DisableKey"), key_id)
    assert proxy.post(f"{API}/keys/{key_id}/metadata", asked).json()["keyStatus"] == "DISABLED"
    refused(proxy.post(f"{API}/keys/{key_id}/encrypt", encrypt_body(b"x")), 400, "InvalidStateException")
    record = records(proxy, "XksGetKeyMetadata")[-1]
    assert record["responseElements"]["keyStatus"] == "DISABLED"
    assert record["resources"][0]["ARN"].endswith(key_id)


def test_encrypt_decrypt_aad_integrity_value_and_tampering(proxy: Proxy) -> None:
    key_id = proxy.new_key()
    out = proxy.post(f"{API}/keys/{key_id}/encrypt", encrypt_body(b"Hello World!", ciphertextDataIntegrityValueAlgorithm="SHA_256"))
    assert out.status_code == 200, out.text
    sealed = out.json()
    raw = {name: base64.b64decode(value) for name, value in sealed.items()}
    assert len(raw["ciphertext"]) == 12 and len(raw["authenticationTag"]) == 16
    assert len(raw["initializationVector"]) in (12, 16) and len(raw["ciphertextMetadata"]) <= 20
    # Appendix C: SHA-256 over aad | ciphertextMetadata | iv | ciphertext | tag, computed here independently.
    expected = hashlib.sha256(b"project=nile" + raw["ciphertextMetadata"] + raw["initializationVector"]
                              + raw["ciphertext"] + raw["authenticationTag"]).digest()
    assert raw["ciphertextDataIntegrityValue"] == expected
    parts = {k: v for k, v in sealed.items() if k != "ciphertextDataIntegrityValue"}

    def decrypt(aad: bytes | None = b"project=nile", **changed: str) -> httpx.Response:
        body = {"requestMetadata": metadata("Decrypt"), "encryptionAlgorithm": "AES_GCM", **parts, **changed}
        if aad is not None:
            body["additionalAuthenticatedData"] = b64(aad)
        return proxy.post(f"{API}/keys/{key_id}/decrypt", body)

    assert decrypt().json() == {"plaintext": b64(b"Hello World!")}
    refused(decrypt(b"project=amazon"), 400, "InvalidCiphertextException")
    refused(decrypt(None), 400, "InvalidCiphertextException")
    flipped = bytes([raw["ciphertext"][0] ^ 1]) + raw["ciphertext"][1:]
    for name, value in (("ciphertext", b64(flipped)), ("authenticationTag", b64(b"\0" * 16)),
                        ("initializationVector", b64(b"\0" * 16)), ("ciphertextMetadata", b64(b"\1" + b"\0" * 16)),
                        ("initializationVector", b64(b"short")), ("ciphertext", "***")):
        refused(decrypt(**{name: value}), 400, "InvalidCiphertextException")
    refused(proxy.post(f"{API}/keys/{key_id}/encrypt", encrypt_body(b"x", encryptionAlgorithm="AES_CBC")), 400,
            "ValidationException")
    refused(proxy.post(f"{API}/keys/{key_id}/encrypt", encrypt_body(b"x", ciphertextDataIntegrityValueAlgorithm="MD5")),
            400, "ValidationException")
    refused(proxy.post(f"{API}/keys/{key_id}/encrypt", encrypt_body(b"x" * 8193)), 501, "UnsupportedOperationException")
    assert proxy.post(f"{API}/keys/{key_id}/encrypt", encrypt_body(b"x" * 4300, b"a" * 8192)).status_code == 200
    # Another key's ciphertext does not decrypt under this key.
    other = proxy.new_key()
    body = {"requestMetadata": metadata("Decrypt"), "encryptionAlgorithm": "AES_GCM", **parts,
            "additionalAuthenticatedData": b64(b"project=nile")}
    refused(proxy.post(f"{API}/keys/{other}/decrypt", body), 400, "InvalidCiphertextException")
    # Rotated material: the old ciphertext still decrypts (its metadata names its material).
    proxy.services.rotation.rotate_key_on_demand(proxy.call("RotateKeyOnDemand"), key_id)
    assert decrypt().json() == {"plaintext": b64(b"Hello World!")}
    # Recorded: who at AWS asked, through which KMS call; never the plaintext or the ciphertext.
    record = [r for r in records(proxy, "XksEncrypt") if r["requestParameters"]["externalKeyId"] == key_id][0]
    params = record["requestParameters"]
    assert params["requestMetadata"]["awsPrincipalArn"] == ALICE and params["externalKeyId"] == key_id
    assert params["additionalAuthenticatedDataLength"] == 12 and "plaintext" not in json.dumps(record)
    assert sealed["ciphertext"] not in json.dumps(records(proxy, "XksDecrypt"))
    usage = proxy.services.last_usage.get_key_last_usage(proxy.call("GetKeyLastUsage"), key_id)  # type: ignore[union-attr]
    assert usage["KeyLastUsage"]["Operation"] == "Decrypt"


def test_the_key_policy_decides_with_the_request_metadata(proxy: Proxy) -> None:
    key_id = proxy.new_key()
    policy = {"Version": "2012-10-17", "Statement": [
        {"Sid": "Enable IAM User Permissions", "Effect": "Allow", "Principal": {"AWS": ROOT}, "Action": "kms:*",
         "Resource": "*"},
        {"Sid": "Only Alice through XKS", "Effect": "Deny", "Principal": {"AWS": "*"}, "Action": "kms:Encrypt",
         "Resource": "*", "Condition": {"StringNotEquals": {"xks:awsPrincipalArn": ALICE}, "Null": {"xks:kmsOperation": "false"}}}]}
    proxy.services.keys.put_key_policy(proxy.call("PutKeyPolicy"), key_id, json.dumps(policy), None, False)
    assert proxy.post(f"{API}/keys/{key_id}/encrypt", encrypt_body(b"x")).status_code == 200
    bob = encrypt_body(b"x")
    bob["requestMetadata"]["awsPrincipalArn"] = "arn:aws:iam::123456789012:user/Bob"
    refused(proxy.post(f"{API}/keys/{key_id}/encrypt", bob), 403, "AccessDeniedException")
    record = records(proxy, "XksEncrypt")[-1]
    assert record["errorCode"] == "AccessDeniedException"
    assert record["requestParameters"]["requestMetadata"]["awsPrincipalArn"].endswith("user/Bob")
    # A key of another account is not this credential's: not found, whatever its policy says.
    other = proxy.services.keys.create_key(Call.operator_call(
        "CreateKey", operator=OPERATOR, at=proxy.runtime.now(), request_id=str(uuid.uuid4()), event_id=str(uuid.uuid4()),
        source="kms.amazonaws.com", region="us-east-1", account_id="444455556666"))["KeyMetadata"]["KeyId"]
    refused(proxy.post(f"{API}/keys/{other}/encrypt", encrypt_body(b"x")), 404, "KeyNotFoundException")


def test_credential_rotation_deletion_audit_and_no_secret_at_rest(proxy: Proxy) -> None:
    admin = proxy.services.xks_credential_admin
    assert admin is not None
    old_id, old_secret = proxy.access_key_id, proxy.secret
    new = admin.rotate(old_id, OPERATOR)
    health = {"requestMetadata": {"kmsRequestId": "r", "kmsOperation": "KmsHealthCheck"}}
    assert proxy.post(f"{API}/health", health, key_id=new.row.access_key_id, secret=new.secret).status_code == 200
    assert proxy.post(f"{API}/health", health).status_code == 200  # the old one works until it is deleted
    rows = {r.access_key_id: r for r in admin.rows()}
    assert rows[old_id].replaced_by == new.row.access_key_id and rows[new.row.access_key_id].replaces == old_id
    admin.delete(old_id, OPERATOR)
    refused(proxy.post(f"{API}/health", health), 401, "AuthenticationFailedException")
    proxy.access_key_id, proxy.secret = new.row.access_key_id, new.secret
    names = [r["eventName"] for r in audit_records(proxy.runtime.ledger) if r["eventSource"] == "kms-xks-proxy"]
    assert {"CreateXksProxyCredential", "RotateXksProxyCredential", "DeleteXksProxyCredential"} <= set(names)
    result = verify_ledger(proxy.runtime.ledger)
    assert result.ok, result.problem
    stored = b"".join(p.read_bytes() for p in proxy.runtime.settings.data_dir.glob("keyledger.db*"))
    stored += sqlite_states(proxy.runtime.settings.data_dir / "keyledger.db")
    log = json.dumps(list(audit_records(proxy.runtime.ledger)))
    for secret in (old_secret, new.secret):
        assert secret.encode() not in stored and secret not in log
        assert base64.b64decode(secret) not in stored
    assert isinstance(proxy.services.xks_credentials._keyring, RootKeyring)  # type: ignore[union-attr]
