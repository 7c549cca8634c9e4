"""Key lifecycle end to end, against a real `keyledger serve` on SQLite and PostgreSQL: CreateKey,
DescribeKey (all four KeyId forms), ListKeys pagination, enable/disable, description, deletion
scheduling, tags, key policy, and the NotFound answers for keys outside the caller's account/region."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest
from botocore.exceptions import ClientError

from tests.e2e.helpers import alias_arn, all_key_forms, code, create_key, key_arn, unique_alias, unvalidated_client
from tests.servers import ACCOUNT_ID

UNKNOWN_KEY_ID = "00000000-0000-4000-8000-000000000000"


# -- CreateKey -------------------------------------------------------------------------------------

def test_create_key_defaults_to_symmetric_default(kms):
    meta = create_key(kms)
    assert meta["KeySpec"] == "SYMMETRIC_DEFAULT"
    assert meta["CustomerMasterKeySpec"] == "SYMMETRIC_DEFAULT"
    assert meta["KeyUsage"] == "ENCRYPT_DECRYPT"
    assert meta["KeyState"] == "Enabled"
    assert meta["Enabled"] is True
    assert meta["Origin"] == "AWS_KMS"
    assert meta["KeyManager"] == "CUSTOMER"
    assert meta["AWSAccountId"] == ACCOUNT_ID
    assert meta["EncryptionAlgorithms"] == ["SYMMETRIC_DEFAULT"]
    assert meta["Arn"] == key_arn(meta["KeyId"])
    assert "DeletionDate" not in meta


def test_create_key_with_description_and_tags(kms):
    tags = [{"TagKey": "team", "TagValue": "payments"}, {"TagKey": "env", "TagValue": ""}]
    meta = create_key(kms, Description="payments master key", Tags=tags)
    assert meta["Description"] == "payments master key"
    assert kms.describe_key(KeyId=meta["KeyId"])["KeyMetadata"]["Description"] == "payments master key"
    listed = kms.list_resource_tags(KeyId=meta["KeyId"])
    assert sorted(listed["Tags"], key=lambda t: t["TagKey"]) == sorted(tags, key=lambda t: t["TagKey"])
    assert listed["Truncated"] is False


def test_create_key_policy_is_stored_exactly_as_given(kms):
    # Unusual but valid formatting: the policy must come back byte for byte, not re-serialized.
    policy = ('{"Version":"2012-10-17",  "Id":"custom-policy",\n "Statement":[{"Sid":"Root","Effect":"Allow",'
              '"Principal":{"AWS":"arn:aws:iam::111122223333:root"},"Action":"kms:*","Resource":"*"}] }')
    meta = create_key(kms, Policy=policy)
    got = kms.get_key_policy(KeyId=meta["KeyId"], PolicyName="default")
    assert got["Policy"] == policy
    assert got["PolicyName"] == "default"
    assert kms.get_key_policy(KeyId=meta["KeyId"])["Policy"] == policy


def test_policy_with_tabs_and_latin1_is_stored_exactly(kms):
    # The Policy charset is [\t\n\r\x20-\xFF]: tabs, CRLF and Latin-1 letters must survive unchanged.
    policy = ('{\r\n\t"Version": "2012-10-17",\r\n\t"Statement": [{"Sid": "Caf\u00e9 \u00fcber \u00bd",\t'
              '"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::111122223333:root"}, "Action": "kms:*", '
              '"Resource": "*"}]\r\n}')
    key_id = create_key(kms, Policy=policy)["KeyId"]
    assert kms.get_key_policy(KeyId=key_id, PolicyName="default")["Policy"] == policy


@pytest.mark.parametrize("policy", ["{not json", '{"Version": "2012-10-17", "Statement": [', "[]", "42"])
def test_create_key_with_malformed_policy_is_refused(kms, policy):
    before = {k["KeyId"] for k in kms.list_keys(Limit=1000)["Keys"]}
    with pytest.raises(kms.exceptions.MalformedPolicyDocumentException):
        kms.create_key(Policy=policy)
    assert {k["KeyId"] for k in kms.list_keys(Limit=1000)["Keys"]} == before  # no key was created


@pytest.mark.parametrize("policy", [
    "[" * 3000 + "]" * 3000,
    '{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "kms:*", '
    '"Resource": "*", "Condition": ' + '{"a": ' * 2000 + "1" + "}" * 2000 + "}]}",
], ids=["nested-arrays", "nested-condition"])
def test_deeply_nested_policy_is_malformed_not_an_internal_error(kms, policy):
    # Well under the 32 KB policy limit, valid JSON, but nested deeper than any policy grammar allows.
    assert len(policy.encode()) < 32768
    with pytest.raises(ClientError) as excinfo:
        kms.create_key(Policy=policy)
    assert code(excinfo.value) == "MalformedPolicyDocumentException"
    assert excinfo.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400


def test_default_key_policy_is_the_aws_default(kms):
    meta = create_key(kms)
    response = kms.get_key_policy(KeyId=meta["KeyId"], PolicyName="default")
    document = json.loads(response["Policy"])
    assert document["Version"] == "2012-10-17"
    statements = document["Statement"]
    assert isinstance(statements, list) and len(statements) == 1
    (statement,) = statements
    assert statement["Effect"] == "Allow"
    assert statement["Principal"] == {"AWS": f"arn:aws:iam::{ACCOUNT_ID}:root"}
    assert statement["Action"] == "kms:*"
    assert statement["Resource"] == "*"


# -- DescribeKey -------------------------------------------------------------------------------------

def test_describe_key_by_all_four_forms(kms):
    meta = create_key(kms, Description="four forms")
    forms = all_key_forms(kms, meta["KeyId"])
    for form, value in forms.items():
        described = kms.describe_key(KeyId=value)["KeyMetadata"]
        assert described["KeyId"] == meta["KeyId"], form
        assert described["Arn"] == key_arn(meta["KeyId"]), form
        assert described["Description"] == "four forms", form
        assert described["CreationDate"] == meta["CreationDate"], form


def test_describe_unknown_key_is_not_found(kms):
    with pytest.raises(kms.exceptions.NotFoundException):
        kms.describe_key(KeyId=UNKNOWN_KEY_ID)
    with pytest.raises(kms.exceptions.NotFoundException):
        kms.describe_key(KeyId=key_arn(UNKNOWN_KEY_ID))
    with pytest.raises(kms.exceptions.NotFoundException):
        kms.describe_key(KeyId=unique_alias("missing"))
    with pytest.raises(kms.exceptions.NotFoundException):
        kms.describe_key(KeyId=alias_arn(unique_alias("missing")))


@pytest.mark.parametrize("key_ref", ["not-a-uuid", "1234", "key/" + UNKNOWN_KEY_ID, "alias"])
def test_malformed_key_id_is_not_found(kms, key_ref):
    with pytest.raises(kms.exceptions.NotFoundException):
        kms.describe_key(KeyId=key_ref)


def test_key_from_another_region_is_not_found(kms, shared_server):
    meta = create_key(kms)
    other_region = shared_server.client(region="eu-west-1")
    with pytest.raises(other_region.exceptions.NotFoundException):
        other_region.describe_key(KeyId=meta["KeyId"])
    # The us-east-1 ARN asked in eu-west-1 names a key that region cannot see either.
    with pytest.raises(other_region.exceptions.NotFoundException):
        other_region.describe_key(KeyId=meta["Arn"])
    with pytest.raises(other_region.exceptions.NotFoundException):
        other_region.encrypt(KeyId=meta["KeyId"], Plaintext=b"x")
    other_ids = {k["KeyId"] for k in other_region.list_keys(Limit=1000)["Keys"]}
    assert meta["KeyId"] not in other_ids
    # ... and the key is untouched in its own region.
    assert kms.describe_key(KeyId=meta["KeyId"])["KeyMetadata"]["KeyState"] == "Enabled"


def test_key_arn_of_another_account_is_not_found(kms):
    meta = create_key(kms)
    foreign = key_arn(meta["KeyId"], account="999999999999")
    with pytest.raises(kms.exceptions.NotFoundException):
        kms.describe_key(KeyId=foreign)
    with pytest.raises(kms.exceptions.NotFoundException):
        kms.encrypt(KeyId=foreign, Plaintext=b"x")


# -- ListKeys ----------------------------------------------------------------------------------------

def _list_all_keys(kms, limit: int) -> list[dict]:
    pages, marker = [], None
    while True:
        kwargs = {"Limit": limit} | ({"Marker": marker} if marker else {})
        page = kms.list_keys(**kwargs)
        pages.append(page)
        assert len(page["Keys"]) <= limit
        if not page["Truncated"]:
            assert "NextMarker" not in page
            return pages
        assert len(page["Keys"]) == limit
        assert page["NextMarker"]
        marker = page["NextMarker"]
        assert len(pages) < 1000, "ListKeys pagination does not terminate"


def test_list_keys_pagination_sees_every_key_exactly_once(kms):
    created = {create_key(kms)["KeyId"] for _ in range(7)}
    pages = _list_all_keys(kms, limit=3)
    seen = [k["KeyId"] for page in pages for k in page["Keys"]]
    assert len(seen) == len(set(seen)), "a key was listed twice"
    assert created <= set(seen)
    assert len(pages) >= 3  # at least 7 keys in pages of 3
    for page in pages:
        for entry in page["Keys"]:
            assert entry["KeyArn"] == key_arn(entry["KeyId"])
    # The unpaginated listing agrees with the paginated one.
    everything = kms.list_keys(Limit=1000)
    assert everything["Truncated"] is False
    assert {k["KeyId"] for k in everything["Keys"]} == set(seen)


@pytest.mark.parametrize("limit", [0, 1001])
def test_list_keys_limit_out_of_range(shared_server, limit):
    raw = unvalidated_client(shared_server)
    with pytest.raises(raw.exceptions.ClientError) as excinfo:
        raw.list_keys(Limit=limit)
    assert code(excinfo.value) == "ValidationException"


def test_list_keys_with_garbage_marker(kms):
    create_key(kms)
    for marker in ["garbage", "not-a-marker!!", "AAAA"]:
        with pytest.raises(kms.exceptions.InvalidMarkerException):
            kms.list_keys(Marker=marker)


# -- EnableKey / DisableKey / UpdateKeyDescription -----------------------------------------------------

def test_disable_and_enable_key(kms):
    key_id = create_key(kms)["KeyId"]
    kms.disable_key(KeyId=key_id)
    meta = kms.describe_key(KeyId=key_id)["KeyMetadata"]
    assert (meta["Enabled"], meta["KeyState"]) == (False, "Disabled")
    kms.disable_key(KeyId=key_id)  # idempotent
    assert kms.describe_key(KeyId=key_id)["KeyMetadata"]["KeyState"] == "Disabled"
    kms.enable_key(KeyId=key_id)
    meta = kms.describe_key(KeyId=key_id)["KeyMetadata"]
    assert (meta["Enabled"], meta["KeyState"]) == (True, "Enabled")
    kms.enable_key(KeyId=key_id)  # idempotent
    assert kms.describe_key(KeyId=key_id)["KeyMetadata"]["KeyState"] == "Enabled"


def test_enable_disable_by_alias_and_arn(kms):
    key_id = create_key(kms)["KeyId"]
    forms = all_key_forms(kms, key_id)
    kms.disable_key(KeyId=forms["alias name"])
    assert kms.describe_key(KeyId=key_id)["KeyMetadata"]["KeyState"] == "Disabled"
    kms.enable_key(KeyId=forms["key ARN"])
    assert kms.describe_key(KeyId=key_id)["KeyMetadata"]["KeyState"] == "Enabled"


def test_enable_unknown_key_is_not_found(kms):
    with pytest.raises(kms.exceptions.NotFoundException):
        kms.enable_key(KeyId=UNKNOWN_KEY_ID)
    with pytest.raises(kms.exceptions.NotFoundException):
        kms.disable_key(KeyId=UNKNOWN_KEY_ID)


def test_update_key_description(kms):
    key_id = create_key(kms, Description="before")["KeyId"]
    kms.update_key_description(KeyId=key_id, Description="after")
    assert kms.describe_key(KeyId=key_id)["KeyMetadata"]["Description"] == "after"
    kms.update_key_description(KeyId=key_id, Description="")
    assert kms.describe_key(KeyId=key_id)["KeyMetadata"]["Description"] == ""


# -- ScheduleKeyDeletion / CancelKeyDeletion -----------------------------------------------------------

def _assert_deletion_date(actual: datetime, days: int) -> None:
    expected = datetime.now(timezone.utc) + timedelta(days=days)
    assert abs(actual - expected) < timedelta(hours=1), (actual, expected)


def test_schedule_key_deletion_defaults_to_30_days(kms):
    key_id = create_key(kms)["KeyId"]
    response = kms.schedule_key_deletion(KeyId=key_id)
    assert response["KeyId"] == key_arn(key_id)
    assert response["KeyState"] == "PendingDeletion"
    assert response["PendingWindowInDays"] == 30
    _assert_deletion_date(response["DeletionDate"], 30)
    meta = kms.describe_key(KeyId=key_id)["KeyMetadata"]
    assert meta["KeyState"] == "PendingDeletion"
    assert meta["Enabled"] is False
    # botocore's model: PendingDeletionWindowInDays is present only in PendingReplicaDeletion (multi-Region
    # primaries); a single-Region key shows its DeletionDate instead.
    assert "PendingDeletionWindowInDays" not in meta
    _assert_deletion_date(meta["DeletionDate"], 30)


@pytest.mark.parametrize("days", [7, 30])
def test_schedule_key_deletion_window_bounds_accepted(kms, days):
    key_id = create_key(kms)["KeyId"]
    response = kms.schedule_key_deletion(KeyId=key_id, PendingWindowInDays=days)
    assert response["PendingWindowInDays"] == days
    _assert_deletion_date(response["DeletionDate"], days)
    meta = kms.describe_key(KeyId=key_id)["KeyMetadata"]
    assert meta["KeyState"] == "PendingDeletion"
    _assert_deletion_date(meta["DeletionDate"], days)


@pytest.mark.parametrize("days", [6, 31, 1, 365])
def test_schedule_key_deletion_window_out_of_range(kms, days):
    key_id = create_key(kms)["KeyId"]
    with pytest.raises(kms.exceptions.ClientError) as excinfo:
        kms.schedule_key_deletion(KeyId=key_id, PendingWindowInDays=days)
    assert code(excinfo.value) == "ValidationException"
    assert kms.describe_key(KeyId=key_id)["KeyMetadata"]["KeyState"] == "Enabled"


def test_cancel_key_deletion_leaves_key_disabled(kms):
    key_id = create_key(kms)["KeyId"]
    kms.schedule_key_deletion(KeyId=key_id, PendingWindowInDays=7)
    response = kms.cancel_key_deletion(KeyId=key_id)
    assert response["KeyId"] == key_arn(key_id)
    meta = kms.describe_key(KeyId=key_id)["KeyMetadata"]
    assert meta["KeyState"] == "Disabled"
    assert meta["Enabled"] is False
    assert "DeletionDate" not in meta
    kms.enable_key(KeyId=key_id)
    assert kms.describe_key(KeyId=key_id)["KeyMetadata"]["KeyState"] == "Enabled"


@pytest.mark.parametrize("disable_first", [False, True], ids=["enabled", "disabled"])
def test_cancel_key_deletion_of_key_not_pending_deletion(kms, disable_first):
    key_id = create_key(kms)["KeyId"]
    if disable_first:
        kms.disable_key(KeyId=key_id)
    with pytest.raises(kms.exceptions.KMSInvalidStateException):
        kms.cancel_key_deletion(KeyId=key_id)


def test_key_pending_deletion_refuses_state_changes(kms):
    key_id = create_key(kms)["KeyId"]
    kms.schedule_key_deletion(KeyId=key_id, PendingWindowInDays=7)
    with pytest.raises(kms.exceptions.KMSInvalidStateException):
        kms.enable_key(KeyId=key_id)
    with pytest.raises(kms.exceptions.KMSInvalidStateException):
        kms.disable_key(KeyId=key_id)
    with pytest.raises(kms.exceptions.KMSInvalidStateException):
        kms.schedule_key_deletion(KeyId=key_id, PendingWindowInDays=7)
    with pytest.raises(kms.exceptions.KMSInvalidStateException):
        kms.update_key_description(KeyId=key_id, Description="x")
    with pytest.raises(kms.exceptions.KMSInvalidStateException):
        kms.tag_resource(KeyId=key_id, Tags=[{"TagKey": "k", "TagValue": "v"}])
    # Reads still work in PendingDeletion.
    assert kms.describe_key(KeyId=key_id)["KeyMetadata"]["KeyState"] == "PendingDeletion"
    kms.get_key_policy(KeyId=key_id, PolicyName="default")
    kms.list_resource_tags(KeyId=key_id)


def test_schedule_deletion_of_unknown_key_is_not_found(kms):
    with pytest.raises(kms.exceptions.NotFoundException):
        kms.schedule_key_deletion(KeyId=UNKNOWN_KEY_ID, PendingWindowInDays=7)
    with pytest.raises(kms.exceptions.NotFoundException):
        kms.cancel_key_deletion(KeyId=UNKNOWN_KEY_ID)


# -- Tags --------------------------------------------------------------------------------------------

def test_tag_untag_and_list(kms):
    key_id = create_key(kms, Tags=[{"TagKey": "a", "TagValue": "1"}])["KeyId"]
    kms.tag_resource(KeyId=key_id, Tags=[{"TagKey": "b", "TagValue": "2"}, {"TagKey": "a", "TagValue": "one"}])
    tags = {t["TagKey"]: t["TagValue"] for t in kms.list_resource_tags(KeyId=key_id)["Tags"]}
    assert tags == {"a": "one", "b": "2"}
    kms.untag_resource(KeyId=key_id, TagKeys=["a", "does-not-exist"])
    tags = {t["TagKey"]: t["TagValue"] for t in kms.list_resource_tags(KeyId=key_id)["Tags"]}
    assert tags == {"b": "2"}


def test_list_resource_tags_pagination(kms):
    expected = {f"tag-{i:02d}": f"value-{i}" for i in range(7)}
    key_id = create_key(kms, Tags=[{"TagKey": k, "TagValue": v} for k, v in expected.items()])["KeyId"]
    seen: list[tuple[str, str]] = []
    marker = None
    pages = 0
    while True:
        page = kms.list_resource_tags(KeyId=key_id, Limit=3, **({"Marker": marker} if marker else {}))
        pages += 1
        assert len(page["Tags"]) <= 3
        seen += [(t["TagKey"], t["TagValue"]) for t in page["Tags"]]
        if not page["Truncated"]:
            assert "NextMarker" not in page
            break
        assert len(page["Tags"]) == 3 and page["NextMarker"]
        marker = page["NextMarker"]
        assert pages < 20
    assert pages == 3
    assert len(seen) == len(set(seen)) == 7
    assert dict(seen) == expected
    with pytest.raises(kms.exceptions.InvalidMarkerException):
        kms.list_resource_tags(KeyId=key_id, Marker="garbage")


@pytest.mark.parametrize("tag_key", ["aws:reserved", "AWS:Reserved", "aws:"])
def test_aws_prefixed_tag_key_is_refused(kms, tag_key):
    key_id = create_key(kms)["KeyId"]
    with pytest.raises(kms.exceptions.TagException):
        kms.tag_resource(KeyId=key_id, Tags=[{"TagKey": tag_key, "TagValue": "v"}])
    assert kms.list_resource_tags(KeyId=key_id)["Tags"] == []


def test_create_key_with_aws_prefixed_tag_is_refused(kms):
    with pytest.raises(kms.exceptions.TagException):
        kms.create_key(Tags=[{"TagKey": "aws:owner", "TagValue": "me"}])


def test_tags_on_unknown_key_are_not_found(kms):
    with pytest.raises(kms.exceptions.NotFoundException):
        kms.tag_resource(KeyId=UNKNOWN_KEY_ID, Tags=[{"TagKey": "a", "TagValue": "b"}])
    with pytest.raises(kms.exceptions.NotFoundException):
        kms.list_resource_tags(KeyId=UNKNOWN_KEY_ID)
    with pytest.raises(kms.exceptions.NotFoundException):
        kms.get_key_policy(KeyId=UNKNOWN_KEY_ID, PolicyName="default")


def test_errors_are_client_errors_with_messages(kms):
    """Every refusal above is an AWS-shaped error: a code and a human message."""
    with pytest.raises(ClientError) as excinfo:
        kms.describe_key(KeyId=UNKNOWN_KEY_ID)
    error = excinfo.value.response["Error"]
    assert error["Code"] == "NotFoundException"
    assert error["Message"]
    assert excinfo.value.response["ResponseMetadata"]["RequestId"]
