"""The audit log end to end, on SQLite and PostgreSQL: every call (allowed or refused) yields exactly one
CloudTrail-shaped record, in order, with the requestID the caller was given; secrets never reach a record;
export / tail filter and format as documented; maintenance actions are recorded as AwsServiceEvents."""
from __future__ import annotations

import base64
import json
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.e2e.helpers import REGION, code, key_arn, secret_forms
from tests.e2e.test_audit_support import (
    FIRST_START,
    audit,
    calls_only,
    checkpoint,
    export_jsonl,
    kms_client,
    run,
    signed_post,
    verify,
)
from tests.servers import ACCOUNT_ID, ADMIN_KEY_ID, ADMIN_SECRET, Server

CLOUDTRAIL_FIELDS = (
    "eventVersion", "eventTime", "eventSource", "eventName", "awsRegion", "userIdentity", "sourceIPAddress",
    "userAgent", "requestParameters", "responseElements", "errorCode", "errorMessage", "requestID", "eventID",
    "readOnly", "resources", "eventType", "managementEvent", "eventCategory",
)
IDENTITY_FIELDS = ("type", "principalId", "arn", "accountId", "accessKeyId")
READ_ONLY = {"Encrypt", "Decrypt", "DescribeKey", "GenerateDataKey", "GenerateRandom", "ListKeys"}
MUTATING = {"CreateKey", "DisableKey", "EnableKey", "ScheduleKeyDeletion", "EnableKeyRotation"}


def client(server: Server, key_id: str = ADMIN_KEY_ID, secret: str = ADMIN_SECRET) -> Any:
    return kms_client(server, key_id=key_id, secret=secret)


class Session:
    """Makes calls and remembers, per call, what the audit log must say about it."""

    def __init__(self) -> None:
        self.expected: list[dict[str, Any]] = []

    def ok(self, event_name: str, call, *args: Any, key: str | None = None, **kwargs: Any) -> dict[str, Any]:
        response = call(*args, **kwargs)
        self.expected.append({"eventName": event_name, "errorCode": None, "key": key,
                              "requestID": response["ResponseMetadata"]["RequestId"]})
        return response

    def fails(self, event_name: str, error: str, call, *args: Any, **kwargs: Any) -> ClientError:
        with pytest.raises(ClientError) as info:
            call(*args, **kwargs)
        assert code(info.value) == error, f"{event_name}: expected {error}, got {info.value.response['Error']}"
        self.expected.append({"eventName": event_name, "errorCode": error, "key": None,
                              "requestID": info.value.response["ResponseMetadata"]["RequestId"]})
        return info.value

    def raw(self, event_name: str, error: str, response) -> None:
        assert response.status_code >= 400, response.text
        assert response.json()["__type"] == error, response.text
        self.expected.append({"eventName": event_name, "errorCode": error, "key": None,
                              "requestID": response.headers["x-amzn-RequestId"]})


def scripted_session(server: Server) -> tuple[Session, dict[str, Any]]:
    """A mixed session: successes and each kind of refusal. Returns the session and the secrets it saw."""
    kms, loose = client(server), kms_client(server, validate=False)
    s = Session()
    context = {"purpose": f"audit-ctx-{uuid.uuid4().hex[:8]}", "tenant": "acme"}
    plaintext = f"audit-plaintext-{uuid.uuid4().hex}".encode()
    plaintext2 = f"audit-plaintext-{uuid.uuid4().hex}".encode()

    key = s.ok("CreateKey", kms.create_key, Description="audit session")["KeyMetadata"]["KeyId"]
    s.expected[-1]["key"] = key
    s.ok("DescribeKey", kms.describe_key, KeyId=key, key=key)
    blob = s.ok("Encrypt", kms.encrypt, KeyId=key, Plaintext=plaintext, EncryptionContext=context,
                key=key)["CiphertextBlob"]
    decrypted = s.ok("Decrypt", kms.decrypt, CiphertextBlob=blob, EncryptionContext=context, key=key)
    assert decrypted["Plaintext"] == plaintext
    data_key = s.ok("GenerateDataKey", kms.generate_data_key, KeyId=key, KeySpec="AES_256",
                    EncryptionContext=context, key=key)
    s.fails("GenerateRandom", "ValidationException", loose.generate_random, NumberOfBytes=0)
    s.fails("DescribeKey", "NotFoundException", kms.describe_key, KeyId=str(uuid.uuid4()))
    key2 = s.ok("CreateKey", kms.create_key)["KeyMetadata"]["KeyId"]
    s.expected[-1]["key"] = key2
    s.ok("DisableKey", kms.disable_key, KeyId=key2, key=key2)
    s.fails("Encrypt", "DisabledException", kms.encrypt, KeyId=key2, Plaintext=plaintext2)
    s.fails("Decrypt", "InvalidCiphertextException", kms.decrypt, CiphertextBlob=b"\x01" * 80)
    s.fails("Encrypt", "InvalidSignatureException", client(server, secret=ADMIN_SECRET[::-1]).encrypt,
            KeyId=key, Plaintext=plaintext2)
    s.fails("Encrypt", "UnrecognizedClientException", client(server, key_id="AKIAUNKNOWNKEY000000").encrypt,
            KeyId=key, Plaintext=plaintext2)
    s.raw("NoSuchOperation", "UnknownOperationException",
          signed_post(server, "TrentService.NoSuchOperation", {"KeyId": key}))
    s.ok("EnableKey", kms.enable_key, KeyId=key2, key=key2)
    blob2 = s.ok("Encrypt", kms.encrypt, KeyId=key2, Plaintext=plaintext2, key=key2)["CiphertextBlob"]
    random_bytes = s.ok("GenerateRandom", kms.generate_random, NumberOfBytes=32)["Plaintext"]
    s.ok("ListKeys", kms.list_keys)
    secrets = {"plaintext": plaintext, "plaintext2": plaintext2, "data key": data_key["Plaintext"],
               "data key ciphertext": data_key["CiphertextBlob"], "ciphertext": blob, "ciphertext2": blob2,
               "random": random_bytes, "context": context, "key": key, "key2": key2}
    return s, secrets


def test_every_call_has_exactly_one_record_in_order(servers) -> None:
    server = servers.start()
    session, _ = scripted_session(server)
    records = calls_only(export_jsonl(server))
    n = len(session.expected)

    summary = [(r.get("eventName"), r.get("errorCode")) for r in records]
    assert len(records) == n, f"{n} calls made, {len(records)} records: {summary}"
    assert [r["seq"] for r in records] == list(range(FIRST_START + 1, FIRST_START + n + 1))
    for i, (record, expected) in enumerate(zip(records, session.expected), start=FIRST_START + 1):
        where = f"record seq {i} ({record.get('eventName')}, {record.get('errorCode')})"
        assert record["requestID"] == expected["requestID"], f"{where}: requestID is not the response's header"
        assert record["eventName"] == expected["eventName"], where
        assert record["errorCode"] == expected["errorCode"], where
        if expected["errorCode"]:
            assert record["errorMessage"], f"{where}: a refused call's record has no errorMessage"
        else:
            assert record["errorMessage"] is None, where
        if expected["key"]:
            arns = [r["ARN"] for r in record["resources"]]
            assert key_arn(expected["key"]) in arns, f"{where}: resources {record['resources']} do not name the key"
    assert len({r["eventID"] for r in records}) == n, "eventIDs are not unique"
    assert verify(server).ok


def test_records_have_the_cloudtrail_shape(servers) -> None:
    server = servers.start()
    session, secrets = scripted_session(server)
    records = calls_only(export_jsonl(server))
    assert len(records) == len(session.expected)
    authenticated_failures = {"InvalidSignatureException", "UnrecognizedClientException"}
    for record in records:
        where = f"record seq {record.get('seq')} ({record.get('eventName')}, {record.get('errorCode')})"
        missing = [f for f in CLOUDTRAIL_FIELDS if f not in record]
        assert not missing, f"{where}: missing {missing}"
        assert record["eventSource"] == "kms.amazonaws.com", where
        assert record["eventType"] == "AwsApiCall", where
        assert record["managementEvent"] is True, where
        assert record["eventCategory"] == "Management", where
        if record["errorCode"] not in authenticated_failures:  # see test_refused_signatures_name_the_region
            assert record["awsRegion"] == REGION, where
        assert record["sourceIPAddress"] == "127.0.0.1", where
        assert record["userAgent"], where
        assert isinstance(record["eventVersion"], str) and record["eventVersion"], where
        moment = datetime.strptime(record["eventTime"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
        assert abs(moment - datetime.now(tz=UTC)) < timedelta(hours=1), where  # service clock not advanced
        uuid.UUID(record["eventID"])
        uuid.UUID(record["requestID"])
        assert isinstance(record["resources"], list), where
        for resource in record["resources"]:
            assert set(resource) >= {"accountId", "type", "ARN"}, where
            assert resource["type"] == "AWS::KMS::Key", where
            assert resource["accountId"] == ACCOUNT_ID, where
            assert resource["ARN"].startswith(f"arn:aws:kms:{REGION}:{ACCOUNT_ID}:key/"), where
        identity = record["userIdentity"]
        assert isinstance(identity, dict) and "type" in identity, where
        if record["errorCode"] not in authenticated_failures:
            missing = [f for f in IDENTITY_FIELDS if f not in identity]
            assert not missing, f"{where}: userIdentity {identity} lacks {missing}"
            assert identity["accountId"] == ACCOUNT_ID, where
            assert identity["accessKeyId"] == ADMIN_KEY_ID, where
            assert identity["arn"] == f"arn:aws:iam::{ACCOUNT_ID}:root", where
            assert identity["type"] == "Root", where
        name = record["eventName"]
        if name in READ_ONLY:
            assert record["readOnly"] is True, f"{where}: readOnly should be true"
        if name in MUTATING:
            assert record["readOnly"] is False, f"{where}: readOnly should be false"

    by_name = {}
    for record in records:
        by_name.setdefault((record["eventName"], record["errorCode"]), []).append(record)
    # Encryption context is not secret: CloudTrail keeps it, and so must the record.
    for name in ("Encrypt", "Decrypt", "GenerateDataKey"):
        first = by_name[(name, None)][0]
        assert first["requestParameters"]["encryptionContext"] == secrets["context"], f"{name}: {first['requestParameters']}"
        if name != "Decrypt":
            assert first["requestParameters"]["keyId"] == secrets["key"], f"{name}: {first['requestParameters']}"
    assert by_name[("GenerateDataKey", None)][0]["requestParameters"]["keySpec"] == "AES_256"
    assert by_name[("GenerateRandom", None)][0]["requestParameters"]["numberOfBytes"] == 32
    create = by_name[("CreateKey", None)][0]
    assert create["resources"] == [{"accountId": ACCOUNT_ID, "type": "AWS::KMS::Key", "ARN": key_arn(secrets["key"])}]


def test_refused_signatures_name_the_region(servers) -> None:
    """A call refused for its signature or access key was still made to one region (its credential scope
    names it, and CloudTrail always fills awsRegion): the record must say which."""
    server = servers.start()
    scripted_session(server)
    refused = [r for r in export_jsonl(server)
               if r["errorCode"] in ("InvalidSignatureException", "UnrecognizedClientException")]
    assert len(refused) == 2
    for record in refused:
        assert record["awsRegion"] == REGION, (
            f"{record['eventName']} refused with {record['errorCode']}: awsRegion is {record['awsRegion']!r}")


def test_lifecycle_records_echo_their_response(servers) -> None:
    """CloudTrail keeps the response of lifecycle calls (CreateKey's keyMetadata, ScheduleKeyDeletion's
    deletion date...), and keyledger says it does too (api/http.py _ECHO_RESPONSE); crypto responses are
    never echoed."""
    server = servers.start()
    kms = client(server)
    key = kms.create_key(Description="echo me")["KeyMetadata"]["KeyId"]
    kms.schedule_key_deletion(KeyId=key, PendingWindowInDays=7)
    kms.cancel_key_deletion(KeyId=key)
    records = {r["eventName"]: r for r in export_jsonl(server)}
    create = records["CreateKey"]
    assert create["requestParameters"]["description"] == "echo me", create["requestParameters"]
    assert create["responseElements"], "CreateKey record has no responseElements"
    assert create["responseElements"]["keyMetadata"]["keyId"] == key, create["responseElements"]
    assert create["responseElements"]["keyMetadata"]["arn"] == key_arn(key)
    schedule = records["ScheduleKeyDeletion"]
    assert schedule["responseElements"], "ScheduleKeyDeletion record has no responseElements"
    assert key in schedule["responseElements"]["keyId"], schedule["responseElements"]
    assert "deletionDate" in schedule["responseElements"], schedule["responseElements"]
    cancel = records["CancelKeyDeletion"]
    assert cancel["responseElements"], "CancelKeyDeletion record has no responseElements"
    assert key in cancel["responseElements"]["keyId"], cancel["responseElements"]


def test_secrets_never_reach_a_record(servers) -> None:
    server = servers.start()
    session, secrets = scripted_session(server)
    n = str(len(session.expected))  # tail follows the log: ask for exactly what is there
    outputs = {
        "jsonl": audit(server, "export", "--format", "jsonl").stdout.encode(),
        "cloudtrail": audit(server, "export", "--format", "cloudtrail").stdout.encode(),
        "tail": audit(server, "tail", "--count", n, "--from-seq", "0").stdout.encode(),
    }
    for record in export_jsonl(server):
        if record["eventName"] in ("Encrypt", "Decrypt", "GenerateDataKey", "GenerateRandom"):
            assert record["responseElements"] is None, f"{record['eventName']} response echoed: {record['responseElements']}"
    hunted = {name: secrets[name] for name in ("plaintext", "plaintext2", "data key", "random")}
    forms = {name: secret_forms(value) for name, value in hunted.items()}
    for name in ("data key ciphertext", "ciphertext", "ciphertext2"):
        b64 = base64.b64encode(secrets[name])
        forms[name] = [b64, b64.rstrip(b"="), b64[:40]]
    forms["admin secret"] = [ADMIN_SECRET.encode(), base64.b64encode(ADMIN_SECRET.encode())]
    for where, text in outputs.items():
        assert text.strip(), where
        for name, variants in forms.items():
            for variant in variants:
                assert variant not in text, f"the {name} appears in `audit {where}` output"
        # ...but encryption context is kept
        assert secrets["context"]["purpose"].encode() in text, f"encryption context missing from {where}"


def test_export_formats_and_key_filter(servers) -> None:
    server = servers.start()
    _, secrets = scripted_session(server)
    records = export_jsonl(server)
    ct = json.loads(audit(server, "export", "--format", "cloudtrail").stdout)
    assert set(ct) == {"Records"}
    assert ct["Records"] == records

    default = json.loads(audit(server, "export").stdout)  # cloudtrail is the default format
    assert default == ct

    for key_name in ("key", "key2"):
        key = secrets[key_name]
        naming = [r for r in records if key_arn(key) in [x["ARN"] for x in r["resources"]]]
        assert naming, f"no record names {key_name}"
        by_id = json.loads(audit(server, "export", "--key", key).stdout)["Records"]
        by_arn = export_jsonl(server, "--key", key_arn(key))
        assert by_id == naming
        assert by_arn == naming
        for record in by_id:
            assert key_arn(key) in [x["ARN"] for x in record["resources"]]
    assert export_jsonl(server, "--key", str(uuid.uuid4())) == []


def test_tail_prints_the_first_records(servers) -> None:
    server = servers.start()
    session, _ = scripted_session(server)
    out = audit(server, "tail", "--count", "2", "--from-seq", str(FIRST_START)).stdout
    lines = [json.loads(line) for line in out.splitlines() if line.strip()]
    assert [r["seq"] for r in lines] == [FIRST_START + 1, FIRST_START + 2]
    assert [r["requestID"] for r in lines] == [e["requestID"] for e in session.expected[:2]]
    assert lines == export_jsonl(server)[FIRST_START:FIRST_START + 2]
    later = [json.loads(line) for line in audit(server, "tail", "--count", "3", "--from-seq", "5").stdout.splitlines()
             if line.strip()]
    assert [r["seq"] for r in later] == [6, 7, 8]


def _await_service_clock(kms: Any, at_least: datetime) -> None:
    """The server re-reads the shared clock offset about once a second: wait (bounded) until it has."""
    for _ in range(60):
        created = kms.create_key(Description="clock probe")["KeyMetadata"]["CreationDate"]
        if created >= at_least:
            return
        time.sleep(0.25)
    raise AssertionError("the server never picked up the advanced service clock")


def test_export_time_filter(servers) -> None:
    server = servers.start()
    kms = client(server)
    early = [kms.create_key()["KeyMetadata"]["KeyId"] for _ in range(2)]
    before_advance = datetime.now(tz=UTC)
    run(server, "clock", "advance", "--days", "2")
    _await_service_clock(kms, before_advance + timedelta(days=1))
    late = kms.create_key()["KeyMetadata"]["KeyId"]
    kms.describe_key(KeyId=late)

    records = export_jsonl(server)
    cut = before_advance + timedelta(days=1)
    cut_text = cut.strftime("%Y-%m-%dT%H:%M:%SZ")
    times = {r["seq"]: datetime.strptime(r["eventTime"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
             for r in records}
    before = [r for r in records if times[r["seq"]] <= cut]
    after = [r for r in records if times[r["seq"]] >= cut]
    assert before and after
    assert {key_arn(k) for k in early} <= {x["ARN"] for r in before for x in r["resources"]}
    assert key_arn(late) in {x["ARN"] for r in after for x in r["resources"]}

    assert export_jsonl(server, "--to", cut_text) == before
    assert export_jsonl(server, "--from", cut_text) == after
    assert export_jsonl(server, "--from", str(int(cut.timestamp()))) == after  # epoch seconds
    assert export_jsonl(server, "--from", str(int(cut.timestamp())), "--key", late) == [
        r for r in after if key_arn(late) in [x["ARN"] for x in r["resources"]]]
    far = (cut + timedelta(days=30)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert export_jsonl(server, "--from", far) == []
    assert export_jsonl(server, "--from", (before_advance - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ"),
                        "--to", far) == records


def _service_events(records: list[dict[str, Any]], name: str, key: str) -> list[dict[str, Any]]:
    return [r for r in records if r["eventName"] == name and key_arn(key) in [x["ARN"] for x in r["resources"]]]


def test_maintenance_actions_are_service_events(servers) -> None:
    server = servers.start()
    kms = client(server)
    doomed = kms.create_key()["KeyMetadata"]["KeyId"]
    rotated = kms.create_key()["KeyMetadata"]["KeyId"]
    kms.schedule_key_deletion(KeyId=doomed, PendingWindowInDays=7)
    kms.enable_key_rotation(KeyId=rotated, RotationPeriodInDays=90)

    run(server, "clock", "advance", "--days", "8")
    run(server, "maintenance")
    records = export_jsonl(server)
    deletes = _service_events(records, "DeleteKey", doomed)
    assert len(deletes) == 1, f"expected one DeleteKey record for {doomed}: {deletes}"
    delete = deletes[0]
    assert delete["eventType"] == "AwsServiceEvent"
    assert delete["errorCode"] is None
    assert delete["readOnly"] is False
    assert delete["eventSource"] == "kms.amazonaws.com"
    assert delete["awsRegion"] == REGION
    assert delete["userIdentity"].get("accountId") == ACCOUNT_ID
    assert delete["userIdentity"].get("invokedBy") == "kms.amazonaws.com"
    assert delete["requestParameters"] == {"keyId": doomed}
    assert delete["resources"] == [{"accountId": ACCOUNT_ID, "type": "AWS::KMS::Key", "ARN": key_arn(doomed)}]
    assert delete["additionalEventData"] == {"authorizedByRule": "service"}  # the service's own act: no policy asked
    assert not _service_events(records, "RotateKey", rotated)
    with pytest.raises(ClientError) as info:
        kms.describe_key(KeyId=doomed)
    assert code(info.value) == "NotFoundException"

    run(server, "clock", "advance", "--days", "83")  # 91 days after EnableKeyRotation
    run(server, "maintenance")
    records = export_jsonl(server)
    rotations = _service_events(records, "RotateKey", rotated)
    assert len(rotations) == 1, f"expected one RotateKey record for {rotated}: {rotations}"
    rotation = rotations[0]
    assert rotation["eventType"] == "AwsServiceEvent"
    assert rotation["errorCode"] is None
    assert rotation["userIdentity"].get("invokedBy") == "kms.amazonaws.com"
    assert rotation["requestParameters"] == {"keyId": rotated}
    assert len(_service_events(records, "DeleteKey", doomed)) == 1
    # Service events never look like API calls, and API calls never like service events.
    for record in calls_only(records):
        if record["eventName"] in ("DeleteKey", "RotateKey"):
            assert record["eventType"] == "AwsServiceEvent"
        else:
            assert record["eventType"] == "AwsApiCall"

    # The server keeps appending after records written by other processes; the chain stays whole.
    kms.describe_key(KeyId=rotated)
    kms.encrypt(KeyId=rotated, Plaintext=b"after maintenance")
    final = export_jsonl(server)
    assert [r["seq"] for r in final] == list(range(1, len(final) + 1))
    assert final[-1]["eventName"] == "Encrypt"
    # The clock jumped days ahead: the records made before the jump are "old" at once, before the server's next
    # checkpoint pass can cover them. An operator signs one, as after any jump of the service clock.
    checkpoint(server)
    verdict = verify(server)
    assert verdict.ok, verdict.output
