"""keyledger as the KMS side of external key stores, in process on a real runtime (SQLite file) with a programmable
XKS proxy in place of the network: AWS's error for every way a proxy call fails, per operation (the specification's
"KMS Considerations" table), the store's connection states and ConnectionErrorCodes, CreateKey's external key
checks, double encryption, and that a proxy call never starts on the event loop."""
from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path
from typing import Any, Iterator

import pytest

from application.audit.checkpoints import audit_records
from application.audit.records import new_ids
from application.calls import Call, Operator
from application.keystores.ports import MustRunInThread, XksConnection, XksProxyFailure
from domain.crypto import external_blob, xks
from domain.errors import KmsError
from infrastructure.bootstrap import Runtime, build_runtime
from infrastructure.settings import Settings
from tests.servers import ACCOUNT_ID, ADMIN_KEY_ID, ADMIN_SECRET
from tests.stored_states import sqlite_states

SECRET = "S" * 43 + "="
CREDENTIAL = {"AccessKeyId": "ABCDEFGHIJKLMNOPQRSTUVWX", "RawSecretAccessKey": SECRET}
EXTERNAL_KEY = bytes(range(32))
HEALTHY = {"xksProxyFleetSize": 1, "xksProxyVendor": "t", "xksProxyModel": "t", "ekmVendor": "t",
           "ekmFleetDetails": [{"id": "1", "model": "m", "healthStatus": "ACTIVE"}]}


class Proxy:
    """An XKS proxy that answers correctly (AES-GCM with ``EXTERNAL_KEY``) unless told to fail."""

    def __init__(self) -> None:
        self.failure: XksProxyFailure | None = None
        self.metadata = {"keySpec": "AES_256", "keyUsage": ["ENCRYPT", "DECRYPT"], "keyStatus": "ENABLED"}
        self.health = HEALTHY
        self.corrupt_integrity = False
        self.calls: list[tuple[XksConnection, str, dict[str, Any]]] = []

    def post(self, connection: XksConnection, path: str, body: dict[str, Any]) -> dict[str, Any]:
        self.calls.append((connection, path, body))
        if self.failure is not None:
            raise self.failure
        if path == "/health":
            return self.health
        if path.endswith("/metadata"):
            return self.metadata
        aad = base64.b64decode(body.get("additionalAuthenticatedData", ""))
        if path.endswith("/encrypt"):
            sealed = xks.seal(EXTERNAL_KEY, bytes(16), base64.b64decode(body["plaintext"]), aad)
            value = "AAAA" if self.corrupt_integrity else xks.integrity_value(aad, sealed)
            return {"ciphertext": b64(sealed.ciphertext), "ciphertextMetadata": b64(sealed.ciphertext_metadata),
                    "initializationVector": b64(sealed.initialization_vector),
                    "authenticationTag": b64(sealed.authentication_tag), "ciphertextDataIntegrityValue": value}
        sealed = xks.Sealed(*(base64.b64decode(body[n]) for n in (
            "ciphertext", "ciphertextMetadata", "initializationVector", "authenticationTag")))
        try:
            return {"plaintext": b64(xks.open_sealed(EXTERNAL_KEY, sealed, aad))}
        except KmsError:
            raise XksProxyFailure("refused", "400", "InvalidCiphertextException") from None

    def close(self) -> None:
        pass


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Runtime, Proxy]]:
    runtime = build_runtime(Settings.load(environ={"KEYLEDGER_ADMIN_ACCESS_KEY_ID": ADMIN_KEY_ID,
                                                   "KEYLEDGER_ADMIN_SECRET_ACCESS_KEY": ADMIN_SECRET,
                                                   "KEYLEDGER_KEY_CACHE_SECONDS": "0"},
                                          data_dir=tmp_path_factory.mktemp("external")))
    proxy = Proxy()
    assert runtime.services is not None
    runtime.services.key_stores._external._client = proxy  # type: ignore[union-attr]
    runtime.audit.start()
    try:
        yield runtime, proxy
    finally:
        runtime.close()


def call(operation: str) -> Call:
    request_id, event_id = new_ids(2)
    return Call.operator_call(operation, operator=Operator("t", "h"), at=datetime_now(), request_id=request_id,
                              event_id=event_id, source="kms.amazonaws.com", region="us-east-1", account_id=ACCOUNT_ID)


def datetime_now() -> Any:
    from datetime import datetime, timezone
    return datetime.now(timezone.utc)


def code(action: Any) -> str:
    with pytest.raises(KmsError) as refused:
        action()
    return refused.value.code


def new_store(runtime: Runtime, name: str, **more: Any) -> str:
    assert runtime.services is not None
    params = {"CustomKeyStoreName": name, "CustomKeyStoreType": "EXTERNAL_KEY_STORE",
              "XksProxyUriEndpoint": "https://xks.example.com", "XksProxyUriPath": f"/{name}/kms/xks/v1",
              "XksProxyConnectivity": "PUBLIC_ENDPOINT", "XksProxyAuthenticationCredential": CREDENTIAL, **more}
    return runtime.services.key_stores.create(call("CreateCustomKeyStore"), params)["CustomKeyStoreId"]


def entry(runtime: Runtime, store_id: str) -> dict[str, Any]:
    assert runtime.services is not None
    return runtime.services.key_stores.describe(call("DescribeCustomKeyStores"), store_id, None, None,
                                                None)["CustomKeyStores"][0]


FAILURES = {  # failure -> (Create/UpdateCustomKeyStore error, ConnectionErrorCode, CreateKey error)
    XksProxyFailure("unreachable", "refused"): ("XksProxyUriUnreachableException", "XKS_PROXY_NOT_REACHABLE",
                                                "CustomKeyStoreInvalidStateException"),
    XksProxyFailure("timeout", "slow"): ("XksProxyUriUnreachableException", "XKS_PROXY_TIMED_OUT",
                                         "CustomKeyStoreInvalidStateException"),
    XksProxyFailure("tls", "bad cert"): ("XksProxyUriUnreachableException", "XKS_PROXY_INVALID_TLS_CONFIGURATION",
                                         "CustomKeyStoreInvalidStateException"),
    XksProxyFailure("malformed", "junk"): ("XksProxyInvalidResponseException", "XKS_PROXY_INVALID_RESPONSE",
                                           "CustomKeyStoreInvalidStateException"),
    XksProxyFailure("refused", "401", "AuthenticationFailedException"): (
        "XksProxyIncorrectAuthenticationCredentialException", "INVALID_CREDENTIALS", "CustomKeyStoreInvalidStateException"),
    XksProxyFailure("refused", "404", "InvalidUriPathException"): (
        "XksProxyInvalidConfigurationException", "XKS_PROXY_INVALID_CONFIGURATION", "CustomKeyStoreInvalidStateException"),
    XksProxyFailure("refused", "403", "AccessDeniedException"): (
        "XksProxyInvalidConfigurationException", "XKS_PROXY_ACCESS_DENIED", "KMSInvalidStateException"),
    XksProxyFailure("refused", "500", "InternalException"): (
        "XksProxyInvalidResponseException", "XKS_PROXY_INVALID_RESPONSE", "CustomKeyStoreInvalidStateException"),
    XksProxyFailure("refused", "404", "KeyNotFoundException"): (
        "XksProxyInvalidResponseException", "XKS_PROXY_INVALID_RESPONSE", "XksKeyNotFoundException"),
    XksProxyFailure("refused", "400", "InvalidStateException"): (
        "XksProxyUriUnreachableException", "XKS_PROXY_NOT_REACHABLE", "XksKeyInvalidConfigurationException"),
}


def test_store_life_and_every_failure_per_operation(world: tuple[Runtime, Proxy]) -> None:
    runtime, proxy = world
    services = runtime.services
    assert services is not None
    stores = services.key_stores
    assert code(lambda: new_store(runtime, "vpc", XksProxyConnectivity="VPC_ENDPOINT_SERVICE")) == "ValidationException"
    assert code(lambda: stores.create(call("CreateCustomKeyStore"), {
        "CustomKeyStoreName": "x", "CustomKeyStoreType": "EXTERNAL_KEY_STORE"})) == "ValidationException"
    for failure, (create_error, _, _) in FAILURES.items():
        proxy.failure = failure
        assert code(lambda: new_store(runtime, "failing")) == create_error, failure.kind
    proxy.failure, proxy.health = None, {**HEALTHY, "ekmFleetDetails": [{"id": "1", "model": "m",
                                                                          "healthStatus": "UNAVAILABLE"}]}
    assert code(lambda: new_store(runtime, "failing")) == "XksProxyUriUnreachableException"
    proxy.health = HEALTHY
    store_id = new_store(runtime, "s1")
    assert proxy.calls[-1][2]["requestMetadata"]["kmsOperation"] == "CreateCustomKeyStore"
    assert code(lambda: new_store(runtime, "s2", XksProxyUriPath="/s1/kms/xks/v1")) == "XksProxyUriInUseException"
    described = entry(runtime, store_id)
    assert described["ConnectionState"] == "DISCONNECTED" and described["XksProxyConfiguration"] == {
        "Connectivity": "PUBLIC_ENDPOINT", "AccessKeyId": CREDENTIAL["AccessKeyId"],
        "UriEndpoint": "https://xks.example.com", "UriPath": "/s1/kms/xks/v1"}
    # Connecting records what the proxy answered, as AWS's ConnectionErrorCode.
    for failure, (_, connection_code, _) in FAILURES.items():
        proxy.failure = failure
        stores.connect(call("ConnectCustomKeyStore"), store_id)
        assert (entry(runtime, store_id)["ConnectionState"], entry(runtime, store_id)["ConnectionErrorCode"]) == (
            "FAILED", connection_code), failure.kind
        stores.disconnect(call("DisconnectCustomKeyStore"), store_id)
    proxy.failure = None
    stores.connect(call("ConnectCustomKeyStore"), store_id)
    assert entry(runtime, store_id)["ConnectionState"] == "CONNECTED"
    # While CONNECTED: the name, the path and the credential may change (checked against the proxy first), not
    # the endpoint; a failing check changes nothing.
    update = lambda **p: stores.update(call("UpdateCustomKeyStore"), {"CustomKeyStoreId": store_id, **p})  # noqa: E731
    update(NewCustomKeyStoreName="renamed", XksProxyAuthenticationCredential={
        "AccessKeyId": "ZYXWVUTSRQPONMLKJIHGFEDC", "RawSecretAccessKey": "N" * 44})
    assert proxy.calls[-1][0].access_key_id == "ZYXWVUTSRQPONMLKJIHGFEDC" and proxy.calls[-1][0].secret == "N" * 44
    assert code(lambda: update(XksProxyUriEndpoint="https://other.example.com")) == "CustomKeyStoreInvalidStateException"
    proxy.failure = XksProxyFailure("refused", "404", "InvalidUriPathException")
    assert code(lambda: update(XksProxyUriPath="/wrong/kms/xks/v1")) == "XksProxyInvalidConfigurationException"
    proxy.failure = None
    assert entry(runtime, store_id)["XksProxyConfiguration"]["UriPath"] == "/s1/kms/xks/v1"
    assert entry(runtime, store_id)["CustomKeyStoreName"] == "renamed"
    # No secret in any event, record or response.
    log = json.dumps(list(audit_records(runtime.ledger)), default=str)
    assert SECRET not in log and "N" * 44 not in log and SECRET not in json.dumps(entry(runtime, store_id), default=str)
    stored = b"".join(p.read_bytes() for p in Path(runtime.settings.data_dir).glob("keyledger.db*"))
    stored += sqlite_states(Path(runtime.settings.data_dir) / "keyledger.db")
    assert SECRET.encode() not in stored and b"N" * 44 not in stored


def test_keys_double_encryption_and_errors(world: tuple[Runtime, Proxy]) -> None:
    runtime, proxy = world
    services = runtime.services
    assert services is not None
    store_id = new_store(runtime, "keys")
    create = lambda xks_key_id="ext-1", **more: services.keys.create_key(  # noqa: E731
        call("CreateKey"), origin="EXTERNAL_KEY_STORE", custom_key_store_id=store_id, xks_key_id=xks_key_id, **more)
    assert code(create) == "CustomKeyStoreInvalidStateException"  # not connected yet
    services.key_stores.connect(call("ConnectCustomKeyStore"), store_id)
    assert code(lambda: services.keys.create_key(call("CreateKey"), origin="EXTERNAL_KEY_STORE",
                                                 custom_key_store_id=store_id)) == "ValidationException"
    assert code(lambda: create(key_spec="HMAC_256", key_usage="GENERATE_VERIFY_MAC")) == "UnsupportedOperationException"
    for failure, (_, _, create_key_error) in FAILURES.items():
        proxy.failure = failure
        assert code(create) == create_key_error, failure.kind
    proxy.failure = None
    for wrong in ({"keyStatus": "DISABLED"}, {"keySpec": "RSA_2048"}, {"keyUsage": ["ENCRYPT"]}):
        proxy.metadata = {"keySpec": "AES_256", "keyUsage": ["ENCRYPT", "DECRYPT"], "keyStatus": "ENABLED", **wrong}
        assert code(create) == "XksKeyInvalidConfigurationException"
    proxy.metadata = {"keySpec": "AES_256", "keyUsage": ["ENCRYPT", "DECRYPT"], "keyStatus": "ENABLED"}
    meta = create()["KeyMetadata"]
    assert (meta["Origin"], meta["CustomKeyStoreId"], meta["XksKeyConfiguration"]) == (
        "EXTERNAL_KEY_STORE", store_id, {"Id": "ext-1"}) and "CloudHsmClusterId" not in meta
    assert code(create) == "XksKeyAlreadyInUseException"
    key_id = meta["KeyId"]
    crypto = services.crypto
    blob = crypto.encrypt(call("Encrypt"), key_id, b"secret data", {"purpose": "test"})["CiphertextBlob"]
    sent = proxy.calls[-1][2]
    assert sent["requestMetadata"]["kmsKeyArn"] == meta["Arn"] and sent["requestMetadata"]["kmsOperation"] == "Encrypt"
    assert base64.b64decode(sent["plaintext"])[0] == 1  # the proxy sees keyledger's own ciphertext, not the data
    assert b"secret data" not in base64.b64decode(sent["plaintext"])
    assert crypto.decrypt(call("Decrypt"), blob, context={"purpose": "test"})["Plaintext"] == b"secret data"
    assert code(lambda: crypto.decrypt(call("Decrypt"), blob, context={"purpose": "other"})) == "KMSInvalidStateException"
    prefix, _ = external_blob.parse(blob)
    assert prefix[0] == 4 and prefix[1:17].hex() == key_id.replace("-", "")
    assert code(lambda: crypto.decrypt(call("Decrypt"), blob[:-1] + bytes([blob[-1] ^ 1]),
                                       context={"purpose": "test"})) == "KMSInvalidStateException"
    data_key = crypto.generate_data_key(call("GenerateDataKey"), key_id, key_spec="AES_256")
    assert crypto.decrypt(call("Decrypt"), data_key["CiphertextBlob"])["Plaintext"] == data_key["Plaintext"]
    assert "Plaintext" not in crypto.generate_data_key(call("GenerateDataKeyWithoutPlaintext"), key_id,
                                                       number_of_bytes=32, with_plaintext=False)
    # The proxy failing a cryptographic operation: KMSInvalidStateException with the specification's message.
    for failure in FAILURES:
        proxy.failure = failure
        with pytest.raises(KmsError) as refused:
            crypto.encrypt(call("Encrypt"), key_id, b"x")
        assert refused.value.code == "KMSInvalidStateException" and "external key" in refused.value.message
    proxy.failure, proxy.corrupt_integrity = None, True
    assert code(lambda: crypto.encrypt(call("Encrypt"), key_id, b"x")) == "KMSInvalidStateException"
    proxy.corrupt_integrity = False
    # Rotation, imports and GenerateRandom are not for keys and stores of this kind, as at AWS.
    assert code(lambda: services.rotation.enable_key_rotation(call("EnableKeyRotation"), key_id, None)) == \
        "UnsupportedOperationException"
    assert code(lambda: crypto.generate_random(call("GenerateRandom"), 16, store_id)) == "UnsupportedOperationException"
    # A proxy call never starts on the event loop: the KMS front runs it again in a worker thread.

    async def on_the_loop() -> None:
        crypto.encrypt(call("Encrypt"), key_id, b"x")
    with pytest.raises(MustRunInThread):
        asyncio.run(on_the_loop())
    # Disconnected: the key is Unavailable (KMSInvalidStateException), and no proxy call is made.
    services.key_stores.disconnect(call("DisconnectCustomKeyStore"), store_id)
    calls = len(proxy.calls)
    assert code(lambda: crypto.decrypt(call("Decrypt"), blob, context={"purpose": "test"})) == "KMSInvalidStateException"
    assert services.keys.describe_key(call("DescribeKey"), key_id)["KeyMetadata"]["KeyState"] == "Unavailable"
    assert len(proxy.calls) == calls
    # Deletion does not wait for the store: keyledger's own layer is shredded, the external key is not touched.
    services.keys.schedule_key_deletion(call("ScheduleKeyDeletion"), key_id, 7)
    runtime.clock_service.advance(8 * 86400)
    assert key_id in services.maintenance.run_once().deleted
    assert services.key_stores.delete(call("DeleteCustomKeyStore"), store_id) == {}
