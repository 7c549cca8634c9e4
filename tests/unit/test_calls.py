"""The typed Call (application/calls.py) and what follows from it: authorization fails closed for a call with
no caller, operator and service calls are allowed by rule and their records say so, no service acts for an
unauthenticated call, and the CloudTrail record made from a Call keeps CloudTrail's field order."""
from __future__ import annotations

import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterator

import pytest

from application.audit.records import cloudtrail_record
from application.authorization.authorizer import Authorizer, KeyFacts
from application.calls import Call, Operator
from application.principals.audit import operator_call
from domain.errors import AccessDeniedError, InternalError
from domain.identifiers import Scope
from domain.policy.evaluation import Decision
from infrastructure.bootstrap import Runtime, build_runtime
from infrastructure.settings import Settings
from tests.calls import api_call

ACCOUNT = "111122223333"
SCOPE = Scope(ACCOUNT, "us-east-1")
ROOT = f"arn:aws:iam::{ACCOUNT}:root"
STRANGER = "arn:aws:iam::444455556666:user/mallory"
KEY_ARN = SCOPE.key_arn("1234abcd-12ab-34cd-56ef-1234567890ab")
FACTS = KeyFacts(KEY_ARN, ACCOUNT, "SYMMETRIC_DEFAULT", "ENCRYPT_DECRYPT", "AWS_KMS",
                 '{"Version": "2012-10-17", "Statement": []}', ())
AT = datetime(2026, 11, 24, 10, 0, tzinfo=timezone.utc)
CLOUDTRAIL_FIELDS = [
    "eventVersion", "eventTime", "eventSource", "eventName", "awsRegion", "userIdentity", "sourceIPAddress",
    "userAgent", "requestParameters", "responseElements", "errorCode", "errorMessage", "requestID", "eventID",
    "readOnly", "resources", "eventType", "managementEvent", "eventCategory"]


def unauthenticated(operation: str = "Encrypt") -> Call:
    return Call.api(operation, at=AT, request_id="r", event_id="e", source_ip="192.0.2.1", user_agent="tests")


def service_call() -> Call:
    return Call.service("RotateKey", at=AT, request_id="r", event_id="e", scope=SCOPE)


def an_operator_call() -> Call:
    return operator_call(event_name="CreateUser", at=AT, operator=Operator("ops", "host"), account_id=ACCOUNT,
                         request_parameters={"userName": "alice"})


CHECKS: dict[str, Callable[[Authorizer, Call], None]] = {
    "authorize_call": lambda a, c: a.authorize_call(c),
    "authorize_key": lambda a, c: a.authorize_key(c, FACTS),
    "authorize_by_policy": lambda a, c: a.authorize_by_policy(c, FACTS, "Encrypt"),
    "authorize_query": lambda a, c: a.authorize_query(c, "kms:DescribeKey", KEY_ARN),
    "authorize_alias": lambda a, c: a.authorize_alias(c),
    "mark_authorized": lambda a, c: a.mark_authorized(c, Decision(True, "the grant allows it")),
}


@pytest.mark.parametrize("check", sorted(CHECKS))
def test_every_check_refuses_a_call_with_no_caller(check: str) -> None:
    call = unauthenticated("CreateKey" if check == "authorize_call" else "Encrypt")
    with pytest.raises(InternalError, match="without an authenticated caller"):
        CHECKS[check](Authorizer(), call)
    assert not call.authorized


@pytest.mark.parametrize("check", sorted(CHECKS))
@pytest.mark.parametrize("make", [service_call, an_operator_call], ids=["service", "operator"])
def test_operator_and_service_calls_are_allowed_by_rule_and_say_so(check: str, make: Callable[[], Call]) -> None:
    call = make()
    CHECKS[check](Authorizer(), call)
    assert call.authorized and call.authorized_by_rule
    assert cloudtrail_record(call)["additionalEventData"]["authorizedByRule"] == call.kind.value


def test_an_api_call_is_judged_by_policy_and_its_record_claims_no_rule() -> None:
    refused = api_call("Encrypt", STRANGER, Scope("444455556666", "us-east-1"))
    with pytest.raises(AccessDeniedError):
        Authorizer().authorize_key(refused, FACTS)
    assert not refused.authorized and not refused.authorized_by_rule
    allowed = api_call("CreateKey", ROOT, SCOPE)
    Authorizer().authorize_call(allowed)
    assert allowed.authorized and not allowed.authorized_by_rule
    assert "additionalEventData" not in cloudtrail_record(allowed)


@pytest.mark.parametrize("call", [unauthenticated(), api_call("Encrypt", ROOT, SCOPE), service_call(),
                                  an_operator_call()], ids=["unauthenticated", "api", "service", "operator"])
def test_records_keep_cloudtrails_field_order(call: Call) -> None:
    record = cloudtrail_record(call)
    assert list(record)[:len(CLOUDTRAIL_FIELDS)] == CLOUDTRAIL_FIELDS
    assert list(record)[len(CLOUDTRAIL_FIELDS):] in ([], ["recipientAccountId"])


@pytest.fixture(scope="module")
def runtime(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runtime]:
    rt = build_runtime(Settings.load(environ={}, data_dir=Path(tmp_path_factory.mktemp("calls"))))
    try:
        yield rt
    finally:
        rt.close()


def test_no_service_acts_for_an_unauthenticated_call(runtime: Runtime) -> None:
    services = runtime.services
    assert services is not None
    key_id = services.keys.create_key(api_call("CreateKey", ROOT, SCOPE))["KeyMetadata"]["KeyId"]
    attempts: dict[str, Callable[[Call], object]] = {
        "CreateKey": lambda c: services.keys.create_key(c),
        "ListKeys": lambda c: services.keys.list_keys(c, None, None),
        "DescribeKey": lambda c: services.keys.describe_key(c, key_id),
        "DisableKey": lambda c: services.keys.disable_key(c, key_id),
        "Encrypt": lambda c: services.crypto.encrypt(c, key_id, b"secret"),
        "CreateAlias": lambda c: services.aliases.create_alias(c, f"alias/{uuid.uuid4()}", key_id),
        "CreateGrant": lambda c: services.grants.create_grant(c, key_id, operations=["Encrypt"],
                                                              grantee_principal=ROOT),
        "RotateKeyOnDemand": lambda c: services.rotation.rotate_key_on_demand(c, key_id),
    }
    for operation, attempt in attempts.items():
        call = unauthenticated(operation)
        with pytest.raises(InternalError):
            attempt(call)
        assert not call.authorized and not call.committed, operation
    described = services.keys.describe_key(api_call("DescribeKey", ROOT, SCOPE), key_id)
    assert described["KeyMetadata"]["KeyState"] == "Enabled"  # DisableKey did nothing


def test_an_api_call_enters_unauthenticated_with_what_the_request_said() -> None:
    call = Call.api("Encrypt", at=AT, request_id="r", event_id="e", source_ip="192.0.2.9", user_agent="ua/1",
                    secure_transport=True)
    assert (call.operation, call.at, call.request_id, call.event_id) == ("Encrypt", AT, "r", "e")
    assert (call.source_ip, call.user_agent, call.secure_transport) == ("192.0.2.9", "ua/1", True)
    assert call.caller is None and call.scope is None and call.region is None and call.source == "kms.amazonaws.com"
    assert call.parameters == {} and call.resources == [] and not (call.authorized or call.committed)
    with pytest.raises(InternalError):
        call.required_caller()
