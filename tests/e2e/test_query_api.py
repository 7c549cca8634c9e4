"""The /v1 query API: key state at an instant, timelines, the audit log; SigV4-authenticated, audited and
metered; every KeyId form the KMS API accepts, URL-encoded or not."""
from __future__ import annotations

import time
import uuid
from urllib.parse import quote

import httpx
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.helpers import alias_arn, key_arn, unique_alias
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


def _forms(key_id: str, alias: str) -> dict[str, str]:
    """Every way the KMS API lets a caller name a key, as a /v1 path segment: as is, and URL-encoded."""
    plain = {"key id": key_id, "key ARN": key_arn(key_id), "alias name": alias, "alias ARN": alias_arn(alias)}
    return {**plain, **{f"{form}, encoded": quote(ref, safe="") for form, ref in plain.items() if form != "key id"}}


def test_every_key_form_names_the_key(shared_server):
    kms = shared_server.client()
    key_id = kms.create_key(Description="forms")["KeyMetadata"]["KeyId"]
    alias = unique_alias("v1")
    kms.create_alias(AliasName=alias, TargetKeyId=key_id)
    for form, ref in _forms(key_id, alias).items():
        state = get(shared_server, f"/v1/keys/{ref}")
        assert state.status_code == 200, f"{form}: {state.text}"
        assert state.json()["KeyMetadata"]["KeyId"] == key_id and state.json()["Aliases"] == [alias], form
        events = get(shared_server, f"/v1/keys/{ref}/timeline").json()["Events"]
        assert [e["EventName"] for e in events] == ["CreateKey"], form
        access = get(shared_server, f"/v1/keys/{ref}/access", operation="Encrypt").json()
        assert access["KeyArn"] == key_arn(key_id) and access["KeyStateAllows"], form
    for form, ref in _forms(key_id, alias).items():
        if not form.endswith("encoded"):  # a query parameter is encoded by the client anyway
            records = get(shared_server, "/v1/audit", key=ref).json()["Records"]
            assert "CreateKey" in [r["eventName"] for r in records], form


def test_an_alias_names_the_key_it_named_at_the_instant_asked_about(shared_server):
    kms = shared_server.client()
    first, second = (kms.create_key()["KeyMetadata"]["KeyId"] for _ in range(2))
    alias = unique_alias("moving")
    kms.create_alias(AliasName=alias, TargetKeyId=first)
    time.sleep(0.05)
    then = time.time()
    time.sleep(0.05)
    kms.update_alias(AliasName=alias, TargetKeyId=second)
    for ref in (alias, quote(alias, safe=""), alias_arn(alias)):
        assert get(shared_server, f"/v1/keys/{ref}", at=str(then)).json()["KeyMetadata"]["KeyId"] == first
        assert get(shared_server, f"/v1/keys/{ref}").json()["KeyMetadata"]["KeyId"] == second
        assert get(shared_server, f"/v1/keys/{ref}/access", operation="Encrypt",
                   at=str(then)).json()["KeyArn"] == key_arn(first)
        assert get(shared_server, f"/v1/keys/{ref}/timeline").json()["Events"][0]["Version"] == 1
    before = get(shared_server, f"/v1/keys/{alias}", at="2000-01-01T00:00:00Z").json()
    assert before["__type"] == "NotFoundException" and "did not exist" in before["message"]


def test_key_forms_that_name_nothing_here_are_not_found(shared_server):
    missing = {
        "unknown alias": "alias/never-made", "unknown alias ARN": alias_arn("alias/never-made"),
        "another account's key": key_arn(str(uuid.uuid4()), account="444455556666"),
        "another region's key": key_arn(str(uuid.uuid4()), region="eu-north-1"),
        "not a key": "not-a-key-id",
    }
    for what, ref in missing.items():
        for path in (f"/v1/keys/{ref}", f"/v1/keys/{ref}/timeline"):
            answer = get(shared_server, path)
            assert answer.status_code == 400 and answer.json()["__type"] == "NotFoundException", (what, answer.text)


def test_v1_calls_are_counted_in_the_metrics(shared_server):
    def counted() -> float:
        text = httpx.get(shared_server.endpoint + "/metrics", timeout=10).text
        return sum(s.value for f in text_string_to_metric_families(text) for s in f.samples
                   if s.name == "keyledger_requests_total" and s.labels == {"operation": "ListKeysAt", "error_code": ""})

    before = counted()
    assert get(shared_server, "/v1/keys").status_code == 200
    assert counted() == before + 1


def test_other_methods_on_the_kms_path_are_not_allowed(shared_server):
    for method in ("GET", "HEAD", "PUT", "DELETE"):
        answer = httpx.request(method, shared_server.endpoint + "/", timeout=10)
        assert answer.status_code == 405 and answer.headers["allow"] == "POST", method
