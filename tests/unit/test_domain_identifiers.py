"""The four forms of KeyId (key id, key ARN, alias name, alias ARN), alias-name rules and alias ids.

AWS facts (reference/aws-kms.md section 0 and 2): key ARN ``arn:<partition>:kms:<region>:<acct>:key/<id>``;
an ARN this scope cannot see is NotFoundException; AliasName 1-256 characters, must begin ``alias/``,
letters, digits, ``/``, ``_`` and ``-``; ``alias/aws/`` is reserved for AWS managed keys (CreateAlias:
InvalidAliasNameException).
"""
from __future__ import annotations

import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.errors import InvalidAliasNameError, KmsError, NotFoundError, ValidationError
from domain.identifiers import KeyReference, Scope, alias_aggregate_id, parse_key_reference, validate_alias_name

SCOPE = Scope("111122223333", "us-east-1")
KEY_ID = "1234abcd-12ab-34cd-56ef-1234567890ab"
KEY_ARN = f"arn:aws:kms:us-east-1:111122223333:key/{KEY_ID}"


# --- parse_key_reference ----------------------------------------------------------------------------------


def test_key_id():
    assert parse_key_reference(KEY_ID, SCOPE) == KeyReference(key_id=KEY_ID)


def test_key_arn():
    assert parse_key_reference(KEY_ARN, SCOPE) == KeyReference(key_id=KEY_ID)


def test_alias_name():
    assert parse_key_reference("alias/my-app/prod_1", SCOPE) == KeyReference(alias_name="alias/my-app/prod_1")


def test_alias_arn():
    ref = parse_key_reference("arn:aws:kms:us-east-1:111122223333:alias/my-app", SCOPE)
    assert ref == KeyReference(alias_name="alias/my-app")


def test_scope_builds_the_arns_it_parses():
    assert SCOPE.key_arn(KEY_ID) == KEY_ARN
    assert SCOPE.alias_arn("alias/x") == "arn:aws:kms:us-east-1:111122223333:alias/x"
    assert parse_key_reference(SCOPE.key_arn(KEY_ID), SCOPE).key_id == KEY_ID
    assert parse_key_reference(SCOPE.alias_arn("alias/x"), SCOPE).alias_name == "alias/x"


def test_other_partition_scope():
    scope = Scope("111122223333", "cn-north-1", partition="aws-cn")
    arn = f"arn:aws-cn:kms:cn-north-1:111122223333:key/{KEY_ID}"
    assert scope.key_arn(KEY_ID) == arn
    assert parse_key_reference(arn, scope).key_id == KEY_ID


@pytest.mark.parametrize("value", [
    f"arn:aws:kms:eu-west-1:111122223333:key/{KEY_ID}",
    "arn:aws:kms:eu-west-1:111122223333:alias/my-app",
])
def test_arn_of_other_region_is_not_found(value):
    with pytest.raises(KmsError) as info:
        parse_key_reference(value, SCOPE)
    assert type(info.value) is NotFoundError


def test_arn_of_other_account_is_a_cross_account_reference():
    key = parse_key_reference(f"arn:aws:kms:us-east-1:444455556666:key/{KEY_ID}", SCOPE)
    alias = parse_key_reference("arn:aws:kms:us-east-1:444455556666:alias/my-app", SCOPE)
    assert (key.key_id, key.account_id) == (KEY_ID, "444455556666")
    assert (alias.alias_name, alias.account_id) == ("alias/my-app", "444455556666")
    assert key.home(SCOPE) == Scope("444455556666", "us-east-1")
    own = parse_key_reference(f"arn:aws:kms:us-east-1:111122223333:key/{KEY_ID}", SCOPE)
    assert own.account_id is None and own.home(SCOPE) is SCOPE


@pytest.mark.parametrize("value", [
    f"arn:aws-cn:kms:us-east-1:111122223333:key/{KEY_ID}",
    f"arn:aws-us-gov:kms:us-east-1:111122223333:key/{KEY_ID}",
    "arn:aws-cn:kms:us-east-1:111122223333:alias/my-app",
])
def test_arn_of_other_partition_is_not_found(value):
    """A key ARN carries its partition; a key of the 'aws' partition is not named by an 'aws-cn' ARN."""
    with pytest.raises(KmsError) as info:
        parse_key_reference(value, SCOPE)
    assert type(info.value) is NotFoundError


@pytest.mark.parametrize("value", [
    "not-a-key",
    "1234abcd",
    KEY_ID + "0",
    KEY_ID[:-1],
    KEY_ID.replace("-", ""),
    " " + KEY_ID,
    KEY_ID + "\n",  # a trailing newline is not part of a key id ...
    KEY_ARN + "\n",  # ... nor of an ARN
    "key/" + KEY_ID,
    "arn:aws:kms:us-east-1:111122223333:key/not-a-uuid",
    "arn:aws:kms:us-east-1:111122223333:key/",
    "arn:aws:kms:us-east-1:111122223333:" + KEY_ID,
    "arn:aws:kms:us-east-1:111122223333:grant/abc",
    "arn:aws:kms:us-east-1:1111:key/" + KEY_ID,
    "arn:aws:s3:::bucket",
    "arn:aws:iam::111122223333:root",
    "arn:",
    "arn:aws:kms",
    "☃",
])
def test_garbage_is_not_found(value):
    with pytest.raises(KmsError) as info:
        parse_key_reference(value, SCOPE)
    assert type(info.value) is NotFoundError
    assert info.value.code == "NotFoundException"


@given(st.text(max_size=60))
def test_parse_never_raises_anything_but_not_found(value):
    try:
        ref = parse_key_reference(value, SCOPE)
    except KmsError as error:
        assert type(error) is NotFoundError
    else:
        assert (ref.key_id is None) != (ref.alias_name is None)


@given(st.uuids())
def test_every_uuid_parses_in_both_forms(key_uuid):
    key_id = str(key_uuid)
    assert parse_key_reference(key_id, SCOPE).key_id == key_id
    assert parse_key_reference(SCOPE.key_arn(key_id), SCOPE).key_id == key_id


# --- validate_alias_name -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", [
    "alias/a", "alias/my-app", "alias/My_App-2", "alias/team/app/prod", "alias/" + "x" * 250, "alias/aws",
    "alias/awsome",
])
@pytest.mark.parametrize("for_create", [True, False])
def test_valid_alias_names(name, for_create):
    validate_alias_name(name, for_create=for_create)


@pytest.mark.parametrize("name", ["my-app", "Alias/my-app", "ALIAS/x", "aliases/x", "/alias/x", "", "alias"])
def test_alias_name_must_begin_with_alias_prefix(name):
    for for_create in (True, False):
        with pytest.raises(KmsError) as info:
            validate_alias_name(name, for_create=for_create)
        assert type(info.value) is ValidationError


@pytest.mark.parametrize("name", [
    "alias/", "alias/with space", "alias/with.dot", "alias/star*", "alias/ü", "alias/tab\t", "alias/new\nline",
    "alias/a:b", "alias/" + "x" * 251, "alias/x\n",
])
def test_alias_name_characters_and_length(name):
    with pytest.raises(KmsError) as info:
        validate_alias_name(name, for_create=True)
    assert type(info.value) is ValidationError


@pytest.mark.parametrize("name", ["alias/aws/s3", "alias/aws/ebs", "alias/aws/x/y"])
def test_reserved_aws_prefix_is_invalid_alias_name_on_create(name):
    with pytest.raises(KmsError) as info:
        validate_alias_name(name, for_create=True)
    assert type(info.value) is InvalidAliasNameError
    assert info.value.code == "InvalidAliasNameException"
    assert "alias/aws/" in info.value.message


@pytest.mark.parametrize("name", ["alias/aws/s3", "alias/aws/ebs"])
def test_reserved_names_may_be_named_outside_create(name):
    """Naming an AWS managed key's alias (e.g. as a KeyId) is legal; only creating one is refused."""
    validate_alias_name(name, for_create=False)


# --- alias_aggregate_id ----------------------------------------------------------------------------------


def test_alias_aggregate_id_is_deterministic():
    a = alias_aggregate_id(SCOPE, "alias/app")
    assert a == alias_aggregate_id(Scope("111122223333", "us-east-1"), "alias/app")
    assert isinstance(a, uuid.UUID)
    assert a.version == 5


@pytest.mark.parametrize("other_scope, other_name", [
    (Scope("444455556666", "us-east-1"), "alias/app"),
    (Scope("111122223333", "eu-west-1"), "alias/app"),
    (Scope("111122223333", "us-east-1", partition="aws-cn"), "alias/app"),
    (Scope("111122223333", "us-east-1"), "alias/App"),
    (Scope("111122223333", "us-east-1"), "alias/app2"),
])
def test_alias_aggregate_id_depends_on_scope_and_name(other_scope, other_name):
    assert alias_aggregate_id(SCOPE, "alias/app") != alias_aggregate_id(other_scope, other_name)


@given(account=st.from_regex(r"\A\d{12}\Z"), region=st.sampled_from(["us-east-1", "eu-west-1", "ap-south-1"]),
       names=st.lists(st.from_regex(r"\Aalias/[a-zA-Z0-9/_-]{1,20}\Z"), min_size=2, max_size=2, unique=True))
def test_distinct_names_get_distinct_ids(account, region, names):
    scope = Scope(account, region)
    a, b = (alias_aggregate_id(scope, n) for n in names)
    assert a != b
    assert a == alias_aggregate_id(Scope(account, region), names[0])
