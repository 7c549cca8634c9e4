"""The /v1 query API: key state at an instant, timelines, the audit log; SigV4-authenticated and audited."""
from __future__ import annotations

import time

import httpx
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from tests.servers import ADMIN_KEY_ID, ADMIN_SECRET


def get(server, path: str, secret: str = ADMIN_SECRET, **params: str) -> httpx.Response:
    request = AWSRequest(method="GET", url=server.endpoint + path, params=params)
    SigV4Auth(Credentials(ADMIN_KEY_ID, secret), "kms", "us-east-1").add_auth(request)
    prepared = request.prepare()
    return httpx.get(prepared.url, headers=dict(prepared.headers), timeout=30)


def test_key_state_at_an_instant_and_timeline(shared_server):
    kms = shared_server.client()
    key_id = kms.create_key(Description="first")["KeyMetadata"]["KeyId"]
    before_changes = time.time()
    time.sleep(0.05)
    kms.update_key_description(KeyId=key_id, Description="second")
    kms.disable_key(KeyId=key_id)

    then = get(shared_server, f"/v1/keys/{key_id}", at=str(before_changes)).json()["KeyMetadata"]
    now = get(shared_server, f"/v1/keys/{key_id}").json()["KeyMetadata"]
    assert (then["Description"], then["KeyState"]) == ("first", "Enabled")
    assert (now["Description"], now["KeyState"]) == ("second", "Disabled")

    listed = get(shared_server, "/v1/keys", at=str(before_changes), state="Enabled").json()["Keys"]
    assert key_id in {k["KeyMetadata"]["KeyId"] for k in listed}

    events = get(shared_server, f"/v1/keys/{key_id}/timeline").json()["Events"]
    assert [(e["EventType"], e["EventName"]) for e in events] == [
        ("Created", "CreateKey"), ("DescriptionUpdated", "UpdateKeyDescription"), ("Disabled", "DisableKey")]


def test_refusals(shared_server):
    key_id = shared_server.client().create_key()["KeyMetadata"]["KeyId"]
    before = get(shared_server, f"/v1/keys/{key_id}", at="2000-01-01T00:00:00Z")
    assert before.json()["__type"] == "NotFoundException" and "did not exist" in before.json()["message"]
    assert get(shared_server, f"/v1/keys/{key_id}", at="2999-01-01T00:00:00Z").json()["__type"] == "ValidationException"
    assert get(shared_server, f"/v1/keys/{key_id}", at="yesterday").json()["__type"] == "ValidationException"
    assert httpx.get(shared_server.endpoint + f"/v1/keys/{key_id}").json()["__type"] == "MissingAuthenticationTokenException"
    assert get(shared_server, f"/v1/keys/{key_id}", secret="wrong").json()["__type"] == "InvalidSignatureException"


def test_audit_pages_filters_and_queries_are_audited(shared_server):
    key_id = shared_server.client().create_key(Description="audited")["KeyMetadata"]["KeyId"]
    answer = get(shared_server, f"/v1/keys/{key_id}")
    request_id = answer.headers["x-amzn-RequestId"]

    mine = get(shared_server, "/v1/audit", key=key_id).json()["Records"]
    assert [r["eventName"] for r in mine][:1] == ["CreateKey"]
    queries = get(shared_server, "/v1/audit", event="GetKeyStateAt").json()["Records"]
    assert request_id in {r["requestID"] for r in queries}
    assert all(r["readOnly"] for r in queries)

    first = get(shared_server, "/v1/audit", limit="2").json()
    assert first["Truncated"] and len(first["Records"]) == 2
    second = get(shared_server, "/v1/audit", limit="2", marker=str(first["NextMarker"])).json()
    assert second["Records"][0]["seq"] > first["Records"][-1]["seq"]


def test_who_could_use_the_key_at_an_instant(shared_server):
    kms = shared_server.client()
    key_id = kms.create_key()["KeyMetadata"]["KeyId"]
    grantee = "arn:aws:iam::111122223333:user/grantee"
    grant_id = kms.create_grant(KeyId=key_id, GranteePrincipal=grantee, Operations=["Encrypt"])["GrantId"]
    time.sleep(0.05)
    enabled_at = time.time()
    time.sleep(0.05)
    kms.disable_key(KeyId=key_id)
    kms.revoke_grant(KeyId=key_id, GrantId=grant_id)

    then = get(shared_server, f"/v1/keys/{key_id}/access", operation="Encrypt", at=str(enabled_at)).json()
    assert then["KeyStateAllows"] is True
    root = {p["Principal"]: p for p in then["Principals"]}["arn:aws:iam::111122223333:root"]
    assert root["Allowed"] is True and "key policy" in root["Reason"]
    by_grant = {p["Principal"]: p for p in then["Principals"]}[grantee]
    assert by_grant["Allowed"] is True and grant_id in by_grant["Reason"]
    assert [g["GrantId"] for g in get(shared_server, f"/v1/keys/{key_id}", at=str(enabled_at)).json()["Grants"]] == \
        [grant_id]
    assert get(shared_server, f"/v1/keys/{key_id}").json()["Grants"] == []
    stranger = get(shared_server, f"/v1/keys/{key_id}/access", operation="Encrypt", at=str(enabled_at),
                   principal="arn:aws:iam::444455556666:user/mallory").json()["Principals"][0]
    assert stranger["Allowed"] is False

    now = get(shared_server, f"/v1/keys/{key_id}/access", operation="Encrypt").json()
    assert now["KeyStateAllows"] is False and "disabled" in now["Reason"] and now["Principals"] == []
    assert get(shared_server, f"/v1/keys/{key_id}/access", operation="Nope").json()["__type"] == "ValidationException"
