"""The AWS JSON 1.1 wire protocol as a raw HTTP client sees it: SigV4 failures, unknown operations,
malformed bodies (always a 4xx, never a 500), request ids, and the unauthenticated health check."""
from __future__ import annotations

import base64
import json
import uuid

import httpx
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from tests.e2e.helpers import REGION, code, status
from tests.servers import ADMIN_KEY_ID, ADMIN_SECRET

CONTENT_TYPE = "application/x-amz-json-1.1"


def signed_post(server, target: str, body: bytes, *, region: str = REGION, key_id: str = ADMIN_KEY_ID,
                secret: str = ADMIN_SECRET, content_type: str = CONTENT_TYPE) -> httpx.Response:
    """POST / with a correct SigV4 signature over exactly these bytes."""
    url = server.endpoint + "/"
    request = AWSRequest(method="POST", url=url, data=body,
                         headers={"Content-Type": content_type, "X-Amz-Target": target})
    SigV4Auth(Credentials(key_id, secret), "kms", region).add_auth(request)
    return httpx.post(url, content=body, headers=dict(request.headers.items()), timeout=30)


def error_type(response: httpx.Response) -> str:
    document = response.json()
    assert isinstance(document, dict) and "__type" in document, response.text
    return document["__type"].rsplit("#", 1)[-1]


def assert_request_id(response: httpx.Response) -> str:
    request_id = response.headers.get("x-amzn-RequestId")
    assert request_id, f"no x-amzn-RequestId on a {response.status_code} response: {dict(response.headers)}"
    return request_id


# -- A correctly signed request works (the baseline the negative cases below vary) --------------------

def test_signed_raw_request_succeeds(shared_server):
    response = signed_post(shared_server, "TrentService.GenerateRandom", b'{"NumberOfBytes": 16}')
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith(CONTENT_TYPE)
    assert len(base64.b64decode(response.json()["Plaintext"])) == 16
    assert_request_id(response)


def test_signed_create_and_describe_key_raw(shared_server):
    created = signed_post(shared_server, "TrentService.CreateKey", b'{"Description": "raw http"}')
    assert created.status_code == 200, created.text
    key_id = created.json()["KeyMetadata"]["KeyId"]
    assert isinstance(created.json()["KeyMetadata"]["CreationDate"], (int, float))  # epoch seconds on the wire
    described = signed_post(shared_server, "TrentService.DescribeKey", json.dumps({"KeyId": key_id}).encode())
    assert described.status_code == 200
    assert described.json()["KeyMetadata"]["Description"] == "raw http"


# -- Unknown operation -------------------------------------------------------------------------------

@pytest.mark.parametrize("target", ["TrentService.NoSuchOperation", "TrentService.", "SomeOtherService.ListKeys",
                                    "TrentService.listkeys"])
def test_unknown_operation(shared_server, target):
    response = signed_post(shared_server, target, b"{}")
    assert response.status_code == 400, response.text
    assert error_type(response) == "UnknownOperationException"
    assert_request_id(response)


def test_missing_target_header(shared_server):
    url = shared_server.endpoint + "/"
    request = AWSRequest(method="POST", url=url, data=b"{}", headers={"Content-Type": CONTENT_TYPE})
    SigV4Auth(Credentials(ADMIN_KEY_ID, ADMIN_SECRET), "kms", REGION).add_auth(request)
    response = httpx.post(url, content=b"{}", headers=dict(request.headers.items()))
    assert 400 <= response.status_code < 500
    assert error_type(response) == "UnknownOperationException"
    assert_request_id(response)


# -- Malformed bodies: 400, never 500 ------------------------------------------------------------------

@pytest.mark.parametrize("body", [
    b'{"NumberOfBytes": ',
    b"{",
    b"not json at all",
    b'{"NumberOfBytes": 12,}',
    b"\xff\xfe\x00garbage",
    b"[]",
    b"null",
    b'"a string"',
    b"12",
    b'{"NumberOfBytes": NaN}',
    b"[" * 100_000,
], ids=["truncated", "open-brace", "text", "trailing-comma", "binary", "array", "null", "string", "number",
        "nan", "deep-nesting"])
def test_malformed_json_body_is_serialization_error(shared_server, body):
    response = signed_post(shared_server, "TrentService.GenerateRandom", body)
    assert response.status_code == 400, (response.status_code, response.text)
    assert error_type(response) == "SerializationException"
    assert_request_id(response)


@pytest.mark.parametrize("target,document", [
    ("TrentService.GenerateRandom", {"NumberOfBytes": "12"}),
    ("TrentService.GenerateRandom", {"NumberOfBytes": 12.5}),
    ("TrentService.GenerateRandom", {"NumberOfBytes": True}),
    ("TrentService.GenerateRandom", {"NumberOfBytes": [12]}),
    ("TrentService.DescribeKey", {"KeyId": 12345}),
    ("TrentService.DescribeKey", {"KeyId": {"id": "x"}}),
    ("TrentService.Encrypt", {"KeyId": "alias/x", "Plaintext": "not base64!!"}),
    ("TrentService.Encrypt", {"KeyId": "alias/x", "Plaintext": "YQ==", "EncryptionContext": ["a", "b"]}),
    ("TrentService.Encrypt", {"KeyId": "alias/x", "Plaintext": "YQ==", "EncryptionContext": {"a": 1}}),
    ("TrentService.ListKeys", {"Limit": 9999999999999}),
], ids=["int-as-string", "float", "bool", "list", "keyid-number", "keyid-object", "bad-base64",
        "context-list", "context-number-value", "int-overflow"])
def test_wrong_json_types_are_client_errors(shared_server, target, document):
    response = signed_post(shared_server, target, json.dumps(document).encode())
    assert response.status_code == 400, (response.status_code, response.text)
    assert error_type(response) in ("SerializationException", "ValidationException")
    assert_request_id(response)


_KEY = "00000000-0000-4000-8000-000000000000"


@pytest.mark.parametrize("target,document", [
    ("TrentService.DescribeKey", '{"KeyId": "\\ud800"}'),
    ("TrentService.DescribeKey", '{"KeyId": "abc\\u0000def"}'),
    ("TrentService.Encrypt", '{"KeyId": "%s", "Plaintext": "YQ==", "EncryptionContext": {"\\udc00": "x"}}' % _KEY),
    ("TrentService.ListKeys", '{"Limit": 1.0}'),
    ("TrentService.ListKeys", '{"Marker": "\\u00e9\\u00e9"}'),
    ("TrentService.ListKeys", '{"Marker": "bTE6zz"}'),
    ("TrentService.CreateAlias", '{"AliasName": "alias/\\u00e9", "TargetKeyId": "%s"}' % _KEY),
    ("TrentService.CreateKey", '{"Tags": [null]}'),
    ("TrentService.CreateKey", '{"Policy": "\\ud800"}'),
    ("TrentService.ScheduleKeyDeletion", '{"KeyId": "%s", "PendingWindowInDays": 2147483648}' % _KEY),
    ("TrentService.DescribeKey", '{"KeyId": "%s"}' % ("x" * 3000)),
    ("TrentService.DescribeKey", '{"KeyId": "arn:aws:kms:us-east-1:111122223333:key/"}'),
    ("TrentService.Decrypt", '{"CiphertextBlob": "AQ=="}'),
], ids=["surrogate", "nul", "surrogate-in-map-key", "float-int", "non-ascii-marker", "bad-marker",
        "non-ascii-alias", "null-tag", "surrogate-policy", "int32-overflow", "long-keyid", "empty-arn-id",
        "one-byte-blob"])
def test_odd_but_well_formed_requests_are_client_errors(shared_server, target, document):
    response = signed_post(shared_server, target, document.encode())
    assert 400 <= response.status_code < 500, (response.status_code, response.text)
    assert error_type(response) != "KMSInternalException"
    assert_request_id(response)


def test_missing_required_member_is_validation_error(shared_server):
    response = signed_post(shared_server, "TrentService.DescribeKey", b"{}")
    assert response.status_code == 400
    assert error_type(response) == "ValidationException"
    assert "keyId" in response.json()["message"]


def test_empty_body_is_accepted_for_operations_without_required_members(shared_server):
    response = signed_post(shared_server, "TrentService.ListKeys", b"")
    assert response.status_code == 200, response.text
    assert "Keys" in response.json()


# -- Authentication --------------------------------------------------------------------------------------

def test_no_authorization_header(shared_server):
    response = httpx.post(shared_server.endpoint + "/", content=b"{}",
                          headers={"Content-Type": CONTENT_TYPE, "X-Amz-Target": "TrentService.ListKeys"})
    assert 400 <= response.status_code < 500
    assert error_type(response) == "MissingAuthenticationTokenException"
    assert_request_id(response)


def test_tampered_body_after_signing(shared_server):
    url = shared_server.endpoint + "/"
    request = AWSRequest(method="POST", url=url, data=b'{"NumberOfBytes": 16}',
                         headers={"Content-Type": CONTENT_TYPE, "X-Amz-Target": "TrentService.GenerateRandom"})
    SigV4Auth(Credentials(ADMIN_KEY_ID, ADMIN_SECRET), "kms", REGION).add_auth(request)
    headers = {k: v for k, v in request.headers.items() if k.lower() != "x-amz-content-sha256"}
    response = httpx.post(url, content=b'{"NumberOfBytes": 17}', headers=headers)
    assert 400 <= response.status_code < 500
    assert error_type(response) == "InvalidSignatureException"


def test_wrong_secret_is_invalid_signature(shared_server):
    client = shared_server.client(secret="definitely-not-the-secret-0123456789abcd")
    with pytest.raises(client.exceptions.ClientError) as excinfo:
        client.list_keys()
    assert code(excinfo.value) == "InvalidSignatureException"
    assert 400 <= status(excinfo.value) < 500
    assert excinfo.value.response["ResponseMetadata"]["RequestId"]


def test_unknown_access_key_is_unrecognized_client(shared_server):
    client = shared_server.client(key_id="AKIA" + uuid.uuid4().hex[:16].upper())
    with pytest.raises(client.exceptions.ClientError) as excinfo:
        client.list_keys()
    assert code(excinfo.value) == "UnrecognizedClientException"
    assert 400 <= status(excinfo.value) < 500


def test_region_not_served_is_refused(shared_server):
    client = shared_server.client(region="xx-nowhere-1")
    with pytest.raises(client.exceptions.ClientError) as excinfo:
        client.list_keys()
    assert code(excinfo.value) == "InvalidSignatureException"
    assert 400 <= status(excinfo.value) < 500
    raw = signed_post(shared_server, "TrentService.ListKeys", b"{}", region="xx-nowhere-1")
    assert 400 <= raw.status_code < 500
    assert error_type(raw) == "InvalidSignatureException"
    assert_request_id(raw)


def test_wrong_service_in_credential_scope_is_refused(shared_server):
    url = shared_server.endpoint + "/"
    request = AWSRequest(method="POST", url=url, data=b"{}",
                         headers={"Content-Type": CONTENT_TYPE, "X-Amz-Target": "TrentService.ListKeys"})
    SigV4Auth(Credentials(ADMIN_KEY_ID, ADMIN_SECRET), "s3", REGION).add_auth(request)
    response = httpx.post(url, content=b"{}", headers=dict(request.headers.items()))
    assert 400 <= response.status_code < 500
    assert error_type(response) in ("InvalidSignatureException", "IncompleteSignatureException")


# -- Request ids and health ---------------------------------------------------------------------------

def test_every_kms_response_carries_a_request_id(shared_server):
    responses = [
        signed_post(shared_server, "TrentService.ListKeys", b"{}"),  # success
        signed_post(shared_server, "TrentService.DescribeKey",
                    b'{"KeyId": "00000000-0000-4000-8000-000000000000"}'),  # service error
        signed_post(shared_server, "TrentService.Nope", b"{}"),  # unknown operation
        signed_post(shared_server, "TrentService.ListKeys", b"{"),  # malformed
        signed_post(shared_server, "TrentService.ListKeys", b"{}", secret="wrong-secret"),  # bad signature
        httpx.post(shared_server.endpoint + "/", content=b"{}",
                   headers={"Content-Type": CONTENT_TYPE, "X-Amz-Target": "TrentService.ListKeys"}),  # unsigned
    ]
    ids = [assert_request_id(r) for r in responses]
    assert len(set(ids)) == len(ids), "request ids must be unique"
    assert [r.status_code for r in responses][0] == 200
    assert all(400 <= r.status_code < 500 for r in responses[1:]), [r.status_code for r in responses]


def test_boto3_sees_the_request_id(kms):
    response = kms.list_keys()
    assert response["ResponseMetadata"]["RequestId"]
    assert response["ResponseMetadata"]["HTTPHeaders"]["x-amzn-requestid"] == response["ResponseMetadata"]["RequestId"]


def test_healthz_needs_no_auth(shared_server):
    response = httpx.get(shared_server.endpoint + "/healthz")
    assert response.status_code == 200
    assert response.json()["status"] == "ready" and "reason" not in response.json()  # root key, stores beside it
