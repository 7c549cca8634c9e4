"""Aliases end to end: CreateAlias / UpdateAlias / DeleteAlias / ListAliases and aliases as KeyId in
crypto calls, on a real server for both backends."""
from __future__ import annotations

import pytest
from botocore.exceptions import ClientError

from tests.e2e.helpers import alias_arn, code, create_key, key_arn, unique_alias

UNKNOWN_KEY_ID = "00000000-0000-4000-8000-000000000000"


def _aliases_of(kms, **kwargs) -> dict[str, dict]:
    """Every alias (all pages) as {name: entry}; fails on a duplicate."""
    out: dict[str, dict] = {}
    marker = None
    for _ in range(1000):
        page = kms.list_aliases(**kwargs, **({"Marker": marker} if marker else {}))
        for entry in page["Aliases"]:
            assert entry["AliasName"] not in out, f"alias {entry['AliasName']} listed twice"
            out[entry["AliasName"]] = entry
        if not page["Truncated"]:
            assert "NextMarker" not in page
            return out
        marker = page["NextMarker"]
    raise AssertionError("ListAliases pagination does not terminate")


def test_create_alias_and_use_it(kms):
    key_id = create_key(kms)["KeyId"]
    alias = unique_alias()
    kms.create_alias(AliasName=alias, TargetKeyId=key_id)
    assert kms.describe_key(KeyId=alias)["KeyMetadata"]["KeyId"] == key_id
    entry = _aliases_of(kms)[alias]
    assert entry["AliasArn"] == alias_arn(alias)
    assert entry["TargetKeyId"] == key_id
    assert entry["CreationDate"] and entry["LastUpdatedDate"]


def test_create_alias_targeting_key_arn(kms):
    key_id = create_key(kms)["KeyId"]
    alias = unique_alias()
    kms.create_alias(AliasName=alias, TargetKeyId=key_arn(key_id))
    assert kms.describe_key(KeyId=alias)["KeyMetadata"]["KeyId"] == key_id


def test_duplicate_alias_is_refused(kms):
    first, second = create_key(kms)["KeyId"], create_key(kms)["KeyId"]
    alias = unique_alias()
    kms.create_alias(AliasName=alias, TargetKeyId=first)
    with pytest.raises(kms.exceptions.AlreadyExistsException):
        kms.create_alias(AliasName=alias, TargetKeyId=second)
    with pytest.raises(kms.exceptions.AlreadyExistsException):
        kms.create_alias(AliasName=alias, TargetKeyId=first)
    assert kms.describe_key(KeyId=alias)["KeyMetadata"]["KeyId"] == first


@pytest.mark.parametrize("name", ["no-prefix", "aliasfoo", "alias/has space", "alias/", "alias/bad*char", "alias/dot.name"])
def test_invalid_alias_names_are_validation_errors(kms, name):
    key_id = create_key(kms)["KeyId"]
    with pytest.raises(ClientError) as excinfo:
        kms.create_alias(AliasName=name, TargetKeyId=key_id)
    assert code(excinfo.value) == "ValidationException"


@pytest.mark.parametrize("name", ["alias/aws/x", "alias/aws/ebs", "alias/aws/my-key"])
def test_reserved_aws_alias_prefix_is_refused(kms, name):
    # alias/aws/ is reserved for AWS managed keys. The botocore model lists InvalidAliasNameException
    # for CreateAlias ("the specified alias name is not valid"); AWS has also been observed (and moto
    # copies it) to answer NotAuthorizedException. Either is an AWS refusal; success or a generic
    # ValidationException is not.
    key_id = create_key(kms)["KeyId"]
    with pytest.raises(ClientError) as excinfo:
        kms.create_alias(AliasName=name, TargetKeyId=key_id)
    assert code(excinfo.value) in ("InvalidAliasNameException", "NotAuthorizedException")
    if name == "alias/aws/ebs":  # an AWS managed key's alias: naming it makes that key, never the caller's
        meta = kms.describe_key(KeyId=name)["KeyMetadata"]
        assert meta["KeyManager"] == "AWS" and meta["KeyId"] != key_id
        return
    with pytest.raises(kms.exceptions.NotFoundException):
        kms.describe_key(KeyId=name)


def test_alias_must_target_a_key_not_an_alias(kms):
    key_id = create_key(kms)["KeyId"]
    alias = unique_alias()
    kms.create_alias(AliasName=alias, TargetKeyId=key_id)
    with pytest.raises(ClientError) as excinfo:
        kms.create_alias(AliasName=unique_alias(), TargetKeyId=alias)
    assert code(excinfo.value) in ("ValidationException", "NotFoundException")


def test_create_alias_for_unknown_key_is_not_found(kms):
    with pytest.raises(kms.exceptions.NotFoundException):
        kms.create_alias(AliasName=unique_alias(), TargetKeyId=UNKNOWN_KEY_ID)


def test_create_alias_for_key_pending_deletion_is_invalid_state(kms):
    key_id = create_key(kms)["KeyId"]
    kms.schedule_key_deletion(KeyId=key_id, PendingWindowInDays=7)
    with pytest.raises(kms.exceptions.KMSInvalidStateException):
        kms.create_alias(AliasName=unique_alias(), TargetKeyId=key_id)


def test_update_alias_retargets_encrypt(kms):
    old, new = create_key(kms)["KeyId"], create_key(kms)["KeyId"]
    alias = unique_alias()
    kms.create_alias(AliasName=alias, TargetKeyId=old)
    before = kms.encrypt(KeyId=alias, Plaintext=b"before")
    assert before["KeyId"] == key_arn(old)

    kms.update_alias(AliasName=alias, TargetKeyId=new)
    after = kms.encrypt(KeyId=alias, Plaintext=b"after")
    assert after["KeyId"] == key_arn(new)
    assert kms.describe_key(KeyId=alias)["KeyMetadata"]["KeyId"] == new
    assert _aliases_of(kms)[alias]["TargetKeyId"] == new

    # The new ciphertext belongs to the new key, the old one still to the old key.
    assert kms.decrypt(CiphertextBlob=after["CiphertextBlob"], KeyId=new)["Plaintext"] == b"after"
    with pytest.raises(kms.exceptions.IncorrectKeyException):
        kms.decrypt(CiphertextBlob=after["CiphertextBlob"], KeyId=old)
    assert kms.decrypt(CiphertextBlob=before["CiphertextBlob"])["KeyId"] == key_arn(old)
    # Decrypting the old ciphertext naming the alias now names the wrong key.
    with pytest.raises(kms.exceptions.IncorrectKeyException):
        kms.decrypt(CiphertextBlob=before["CiphertextBlob"], KeyId=alias)


def test_update_alias_to_key_pending_deletion_is_invalid_state(kms):
    current, doomed = create_key(kms)["KeyId"], create_key(kms)["KeyId"]
    alias = unique_alias()
    kms.create_alias(AliasName=alias, TargetKeyId=current)
    kms.schedule_key_deletion(KeyId=doomed, PendingWindowInDays=7)
    with pytest.raises(kms.exceptions.KMSInvalidStateException):
        kms.update_alias(AliasName=alias, TargetKeyId=doomed)
    assert kms.describe_key(KeyId=alias)["KeyMetadata"]["KeyId"] == current


def test_alias_of_key_pending_deletion_can_be_moved_and_deleted(kms):
    # AWS: the *source* key of UpdateAlias may be pending deletion; DeleteAlias works in every key state.
    doomed, other = create_key(kms)["KeyId"], create_key(kms)["KeyId"]
    moved, deleted = unique_alias(), unique_alias()
    kms.create_alias(AliasName=moved, TargetKeyId=doomed)
    kms.create_alias(AliasName=deleted, TargetKeyId=doomed)
    kms.schedule_key_deletion(KeyId=doomed, PendingWindowInDays=7)
    kms.update_alias(AliasName=moved, TargetKeyId=other)
    assert kms.describe_key(KeyId=moved)["KeyMetadata"]["KeyId"] == other
    kms.delete_alias(AliasName=deleted)
    with pytest.raises(kms.exceptions.NotFoundException):
        kms.describe_key(KeyId=deleted)


def test_update_missing_alias_is_not_found(kms):
    key_id = create_key(kms)["KeyId"]
    with pytest.raises(kms.exceptions.NotFoundException):
        kms.update_alias(AliasName=unique_alias(), TargetKeyId=key_id)


def test_delete_alias_then_recreate(kms):
    first, second = create_key(kms)["KeyId"], create_key(kms)["KeyId"]
    alias = unique_alias()
    kms.create_alias(AliasName=alias, TargetKeyId=first)
    kms.delete_alias(AliasName=alias)

    with pytest.raises(kms.exceptions.NotFoundException):
        kms.describe_key(KeyId=alias)
    with pytest.raises(kms.exceptions.NotFoundException):
        kms.encrypt(KeyId=alias, Plaintext=b"x")
    with pytest.raises(kms.exceptions.NotFoundException):
        kms.delete_alias(AliasName=alias)
    assert alias not in _aliases_of(kms)
    # Deleting the alias does not touch its key.
    assert kms.describe_key(KeyId=first)["KeyMetadata"]["KeyState"] == "Enabled"

    kms.create_alias(AliasName=alias, TargetKeyId=second)
    assert kms.describe_key(KeyId=alias)["KeyMetadata"]["KeyId"] == second
    assert kms.encrypt(KeyId=alias, Plaintext=b"x")["KeyId"] == key_arn(second)
    assert _aliases_of(kms)[alias]["TargetKeyId"] == second


def test_delete_missing_alias_is_not_found(kms):
    with pytest.raises(kms.exceptions.NotFoundException):
        kms.delete_alias(AliasName=unique_alias())


def test_list_aliases_filtered_by_key(kms):
    key_a, key_b = create_key(kms)["KeyId"], create_key(kms)["KeyId"]
    names_a = {unique_alias("a") for _ in range(2)}
    name_b = unique_alias("b")
    for name in names_a:
        kms.create_alias(AliasName=name, TargetKeyId=key_a)
    kms.create_alias(AliasName=name_b, TargetKeyId=key_b)

    by_id = _aliases_of(kms, KeyId=key_a)
    assert set(by_id) == names_a
    assert all(e["TargetKeyId"] == key_a for e in by_id.values())
    assert set(_aliases_of(kms, KeyId=key_arn(key_a))) == names_a
    assert set(_aliases_of(kms, KeyId=key_b)) == {name_b}
    assert _aliases_of(kms, KeyId=create_key(kms)["KeyId"]) == {}

    everything = _aliases_of(kms)
    assert names_a | {name_b} <= set(everything)


def test_list_aliases_for_unknown_key_is_not_found(kms):
    with pytest.raises(kms.exceptions.NotFoundException):
        kms.list_aliases(KeyId=UNKNOWN_KEY_ID)


def test_list_aliases_pagination(kms):
    key_id = create_key(kms)["KeyId"]
    names = {unique_alias("page") for _ in range(5)}
    for name in names:
        kms.create_alias(AliasName=name, TargetKeyId=key_id)

    # Filtered to one key: exactly 5 aliases in pages of 2, 2, 1.
    pages, marker = [], None
    while True:
        page = kms.list_aliases(KeyId=key_id, Limit=2, **({"Marker": marker} if marker else {}))
        pages.append([a["AliasName"] for a in page["Aliases"]])
        if not page["Truncated"]:
            assert "NextMarker" not in page
            break
        assert page["NextMarker"]
        marker = page["NextMarker"]
        assert len(pages) < 10
    assert [len(p) for p in pages] == [2, 2, 1]
    flat = [n for p in pages for n in p]
    assert len(flat) == len(set(flat)) and set(flat) == names

    # Unfiltered, in pages of 2: ours each appear exactly once.
    everything = _aliases_of(kms, Limit=2)
    assert names <= set(everything)

    with pytest.raises(kms.exceptions.InvalidMarkerException):
        kms.list_aliases(Marker="garbage")


def test_alias_arn_works_in_encrypt_and_decrypt(kms):
    key_id = create_key(kms)["KeyId"]
    alias = unique_alias()
    kms.create_alias(AliasName=alias, TargetKeyId=key_id)
    encrypted = kms.encrypt(KeyId=alias_arn(alias), Plaintext=b"via alias arn")
    assert encrypted["KeyId"] == key_arn(key_id)
    decrypted = kms.decrypt(CiphertextBlob=encrypted["CiphertextBlob"], KeyId=alias_arn(alias))
    assert decrypted["Plaintext"] == b"via alias arn"
    assert decrypted["KeyId"] == key_arn(key_id)
    data_key = kms.generate_data_key(KeyId=alias_arn(alias), KeySpec="AES_256")
    assert data_key["KeyId"] == key_arn(key_id)


def test_alias_of_another_region_is_not_visible(kms, shared_server):
    key_id = create_key(kms)["KeyId"]
    alias = unique_alias()
    kms.create_alias(AliasName=alias, TargetKeyId=key_id)
    other = shared_server.client(region="eu-west-1")
    with pytest.raises(other.exceptions.NotFoundException):
        other.describe_key(KeyId=alias)
    assert alias not in {a["AliasName"] for a in other.list_aliases(Limit=100)["Aliases"]}
    # The same name is free in the other region (aliases are per account and region).
    other_key = other.create_key()["KeyMetadata"]["KeyId"]
    other.create_alias(AliasName=alias, TargetKeyId=other_key)
    assert other.describe_key(KeyId=alias)["KeyMetadata"]["KeyId"] == other_key
    assert kms.describe_key(KeyId=alias)["KeyMetadata"]["KeyId"] == key_id
