"""Every audit record is bounded (application/audit/bounds.py): whatever text a request carried, the record as
stored (canonical JSON) fits its bound, every cut value is marked and named, a small record is left as it was,
and bounding twice changes nothing more."""
from __future__ import annotations

import copy
from datetime import datetime, timezone
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from application.audit.bounds import (
    FIELD_CHARS,
    MAX_RECORD_BYTES,
    MAX_UNAUTHENTICATED_RECORD_BYTES,
    TRUNCATED_MARK,
    bound_record,
)
from application.audit.records import cloudtrail_record
from application.calls import Call, Caller
from domain.identifiers import Scope
from domain.audit.chain import canonical

AT = datetime(2026, 11, 1, tzinfo=timezone.utc)


def call_record(*, user_agent: str = "Boto3/1.35 md/Botocore#1.35", event_name: str = "Encrypt",
                identified: bool = True) -> dict[str, Any]:
    call = Call.api(event_name, at=AT, source_ip="203.0.113.9", user_agent=user_agent, request_id="r" * 36,
                    event_id="e" * 36)
    if identified:
        call.authenticate(Caller("arn:aws:iam::111122223333:user/alice", "111122223333", "AKIAEXAMPLEEXAMPLE00",
                                 unique_id="AIDAEXAMPLE"), Scope("111122223333", "us-east-1"))
    call.add_resource("arn:aws:kms:us-east-1:111122223333:key/12345678-1234-1234-1234-123456789012")
    return cloudtrail_record(call)


def strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in [k, *strings(v)]]
    if isinstance(value, list):
        return [s for v in value for s in strings(v)]
    return []


def test_a_small_record_is_left_as_it_was() -> None:
    record = call_record()
    record["requestParameters"] = {"keyId": "alias/app", "encryptionContext": {"tenant": "t1"}}
    before = copy.deepcopy(record)
    assert bound_record(record) == before


def test_a_4_mb_user_agent_is_cut_marked_and_named() -> None:
    record = bound_record(call_record(user_agent="x" * 4_000_000, identified=False))
    assert record["userAgent"] == "x" * FIELD_CHARS + TRUNCATED_MARK
    assert record["additionalEventData"] == {"truncatedFields": ["userAgent"], "truncatedFieldCount": 1}
    assert len(canonical(record)) <= MAX_UNAUTHENTICATED_RECORD_BYTES


def test_long_values_inside_request_parameters_are_cut_where_they_are() -> None:
    record = call_record(event_name="CreateKey")
    record["requestParameters"] = {"description": "d" * 8192, "tags": [{"tagKey": "k", "tagValue": "v" * 2000}],
                                   "keyUsage": "ENCRYPT_DECRYPT"}
    bounded = bound_record(record)
    assert bounded["requestParameters"]["description"] == "d" * FIELD_CHARS + TRUNCATED_MARK
    assert bounded["requestParameters"]["tags"][0]["tagValue"].endswith(TRUNCATED_MARK)
    assert bounded["requestParameters"]["keyUsage"] == "ENCRYPT_DECRYPT"
    assert bounded["additionalEventData"]["truncatedFields"] == [
        "requestParameters.description", "requestParameters.tags[0].tagValue"]


def test_long_encryption_context_keys_stay_distinct() -> None:
    record = call_record()
    record["requestParameters"] = {"encryptionContext": {"a" * 2000 + "1": "x", "a" * 2000 + "2": "y"}}
    context = bound_record(record)["requestParameters"]["encryptionContext"]
    assert len(context) == 2 and sorted(context.values()) == ["x", "y"]
    assert all(len(key) <= FIELD_CHARS + len(TRUNCATED_MARK) + 1 for key in context)


def test_a_record_of_many_values_is_cut_harder_then_omitted() -> None:
    record = call_record(event_name="TagResource")
    record["requestParameters"] = {"keyId": "alias/app",
                                   "tags": [{"tagKey": f"k{i}" * 40, "tagValue": "\x01" * 900} for i in range(50)]}
    bounded = bound_record(record)
    assert len(canonical(bounded)) <= MAX_RECORD_BYTES
    assert bounded["requestParameters"] == {"keyId": "alias/app", "omitted": True}
    assert bounded["additionalEventData"]["truncatedFieldCount"] >= 50


text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=3000)
json_values = st.recursive(st.none() | st.booleans() | st.integers() | text,
                           lambda inner: st.lists(inner, max_size=8) | st.dictionaries(text, inner, max_size=8),
                           max_leaves=40)


@settings(max_examples=300, deadline=None)
@given(user_agent=text, event_name=text, error=text, identified=st.booleans(), parameters=json_values,
       response=json_values, region=text)
def test_any_record_fits_its_bound_and_bounding_twice_changes_nothing(
        user_agent: str, event_name: str, error: str, identified: bool, parameters: Any, response: Any,
        region: str) -> None:
    record = call_record(user_agent=user_agent, event_name=event_name, identified=identified)
    record.update(errorMessage=error, requestParameters=parameters, responseElements=response, awsRegion=region)
    bounded = bound_record(record)
    limit = MAX_RECORD_BYTES if identified else MAX_UNAUTHENTICATED_RECORD_BYTES
    assert len(canonical(bounded)) <= limit
    assert all(len(s) <= FIELD_CHARS + len(TRUNCATED_MARK) + 8 for s in strings(bounded))
    again = copy.deepcopy(bounded)
    assert bound_record(again) == bounded
