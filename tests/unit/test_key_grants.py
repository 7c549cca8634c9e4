"""Grants on the Key aggregate (domain/keys/grants.py): events, replay, validation as AWS KMS validates a
CreateGrant, the 50,000-grant quota, Name retries, the key-state matrix, and the shapes handed to the
authorizer (``active_grants``) and to ListGrants (``grant_entries``).

Expectations come from the AWS KMS API reference (CreateGrant, GrantConstraints), the developer guide
("Grant operations", "Key type reference", "Using grant constraints", "Resource quotas") and botocore's model.
"""
from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

import botocore.session
import pytest
from eventsourcing.application import Application
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from domain.errors import (
    DisabledError,
    InvalidArnError,
    InvalidGrantIdError,
    InvalidStateError,
    KmsError,
    LimitExceededError,
    NotFoundError,
    ValidationError,
)
from domain.identifiers import Scope
from domain.keys.grants import (
    MAX_GRANTS_PER_KEY,
    grant_entry,
    grant_operations_for,
    grants_from_entries,
    new_grant_id,
    principal_account,
)
from domain.keys.key import Key
from domain.keys.material import new_symmetric_material
from domain.policy.default_policy import default_key_policy
from domain.policy.evaluation import GRANT_OPERATIONS, Grant, can_retire

SCOPE = Scope("111122223333", "us-east-1")
T0 = datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)
ROOT = "arn:aws:iam::111122223333:root"
ALICE = "arn:aws:iam::111122223333:user/alice"
OPS = "arn:aws:iam::111122223333:role/ops"
KMS_MODEL = botocore.session.get_session().get_service_model("kms")


def at(step: int) -> datetime:
    return T0 + timedelta(minutes=step)


def new_key(key_spec: str = "SYMMETRIC_DEFAULT", key_usage: str = "ENCRYPT_DECRYPT", origin: str = "AWS_KMS") -> Key:
    key_id = uuid.uuid4()
    material = new_symmetric_material() if origin == "AWS_KMS" and key_spec == "SYMMETRIC_DEFAULT" else None
    return Key.create(key_id=key_id, scope=SCOPE, at=T0, key_spec=key_spec, key_usage=key_usage, origin=origin,
                      description="", policy=default_key_policy(SCOPE.account_id), tags={},
                      material_id=material.material_id if material else None,
                      commitment=material.commitment(str(key_id)) if material else None)


def create(key: Key, step: int = 1, **overrides: Any) -> str:
    params: dict[str, Any] = dict(grant_id=new_grant_id(), grantee_principal=ALICE, operations=["Encrypt", "Decrypt"],
                                  retiring_principal=None, constraints=None, name=None, issuing_account=ROOT,
                                  at=at(step))
    params.update(overrides)
    return key.create_grant(**params)


def fold(events: list) -> Key:
    key = None
    for event in events:
        key = event.mutate(key)
    return key


# -- events and replay -------------------------------------------------------------------------------

def test_create_retire_revoke_are_events_and_replay_to_the_same_state():
    key = new_key()
    kept = create(key, 1, retiring_principal=OPS, constraints={"EncryptionContextSubset": {"dept": "IT"}}, name="a")
    retired, revoked = create(key, 2), create(key, 3)
    key.retire_grant(retired, at(4))
    key.revoke_grant(revoked, at(5))
    assert [type(e).__name__ for e in key.pending_events] == [
        "Created", "GrantCreated", "GrantCreated", "GrantCreated", "GrantRetired", "GrantRevoked"]
    assert list(key.grants) == [kept]
    record = key.grants[kept]
    assert (record["name"], record["retiring_principal"], record["operations"], record["issuing_account"]) == (
        "a", OPS, ["Encrypt", "Decrypt"], ROOT)
    assert record["creation_date"] == at(1)

    events = key.collect_events()
    assert fold(events) == key
    app = Application(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})
    app.save(*events)
    loaded = app.repository.get(key.id)
    assert loaded == key and loaded.grant_entries() == key.grant_entries()
    assert sorted(app.repository.get(key.id, version=4).grants) == sorted([kept, retired, revoked])


def test_a_key_that_never_had_a_grant_carries_no_grant_state():
    key = new_key()
    assert dict(key.grants) == {} and "_grants" not in vars(key)  # snapshots of such keys stay as they were
    with pytest.raises(TypeError):
        key.grants["x"] = {}  # type: ignore[index]  # state changes only through events


def test_active_grants_and_entries_are_what_the_authorizer_and_list_grants_take():
    key = new_key()
    grant_id = create(key, retiring_principal=OPS, operations=["Decrypt", "RetireGrant"],
                      constraints={"EncryptionContextEquals": {"a": "1"}, "EncryptionContextSubset": {}})
    assert key.active_grants() == [Grant(grant_id, ALICE, OPS, frozenset({"Decrypt", "RetireGrant"}), {"a": "1"},
                                         None, key.arn, ROOT)]
    (entry,) = key.grant_entries()
    assert entry == {"KeyId": key.arn, "GrantId": grant_id, "Name": "", "CreationDate": at(1),
                     "GranteePrincipal": ALICE, "RetiringPrincipal": OPS, "IssuingAccount": ROOT,
                     "Operations": ["Decrypt", "RetireGrant"], "Constraints": {"EncryptionContextEquals": {"a": "1"}}}
    assert set(entry) <= set(KMS_MODEL.shape_for("GrantListEntry").members)
    assert grants_from_entries([entry]) == key.active_grants()
    assert key.pending_grant_id() == grant_id


def test_grant_ids_are_64_hex_and_unique():
    ids = {new_grant_id() for _ in range(1000)}
    assert len(ids) == 1000 and all(len(i) == 64 and int(i, 16) >= 0 for i in ids)


# -- Name: a retry returns the grant it made ---------------------------------------------------------

def test_same_name_and_parameters_is_a_retry_that_triggers_nothing():
    key = new_key()
    first = create(key, name="n", operations=["Encrypt", "Decrypt"],
                   constraints={"EncryptionContextSubset": {"a": "b"}})
    version = key.version
    again = create(key, 2, name="n", operations=["Decrypt", "Encrypt", "Decrypt"],
                   constraints={"EncryptionContextSubset": {"a": "b"}, "EncryptionContextEquals": {}})
    assert again == first and key.version == version
    differing = [dict(operations=["Encrypt"]), dict(retiring_principal=OPS), dict(grantee_principal=OPS),
                 dict(constraints={"EncryptionContextSubset": {"a": "c"}}), dict(name="m"), dict(name=None)]
    base = dict(name="n", constraints={"EncryptionContextSubset": {"a": "b"}})
    made = {create(key, 3, **{**base, **d}) for d in differing}
    assert first not in made and len(made) == len(differing)
    key.retire_grant(first, at(4))  # once retired, the same request makes a new grant
    assert create(key, 5, name="n", constraints={"EncryptionContextSubset": {"a": "b"}}) != first


# -- validation --------------------------------------------------------------------------------------

EXPECTED_OPERATIONS = {  # developer guide, "Key type reference", one row per grant operation
    ("SYMMETRIC_DEFAULT", "ENCRYPT_DECRYPT"): {"Encrypt", "Decrypt", "ReEncryptFrom", "ReEncryptTo", "GenerateDataKey",
                                               "GenerateDataKeyWithoutPlaintext", "GenerateDataKeyPair",
                                               "GenerateDataKeyPairWithoutPlaintext"},
    ("RSA_2048", "ENCRYPT_DECRYPT"): {"Encrypt", "Decrypt", "ReEncryptFrom", "ReEncryptTo", "GetPublicKey"},
    ("RSA_4096", "SIGN_VERIFY"): {"Sign", "Verify", "GetPublicKey"},
    ("ECC_NIST_P384", "SIGN_VERIFY"): {"Sign", "Verify", "GetPublicKey"},
    ("ECC_NIST_P256", "KEY_AGREEMENT"): {"DeriveSharedSecret", "GetPublicKey"},
    ("HMAC_512", "GENERATE_VERIFY_MAC"): {"GenerateMac", "VerifyMac"},
    ("ML_KEM_768", "ENCAPSULATE_DECAPSULATE"): {"Encapsulate", "Decapsulate", "GetPublicKey"},
    ("ML_DSA_65", "SIGN_VERIFY"): {"Sign", "Verify", "GetPublicKey"},
}


@pytest.mark.parametrize("spec, usage", sorted(EXPECTED_OPERATIONS))
def test_each_key_type_takes_its_own_grant_operations(spec, usage):
    expected = EXPECTED_OPERATIONS[(spec, usage)] | {"CreateGrant", "RetireGrant", "DescribeKey"}
    assert grant_operations_for(spec, usage) == expected
    assert expected <= GRANT_OPERATIONS == set(KMS_MODEL.shape_for("GrantOperation").enum)
    key = new_key(spec, usage)
    assert create(key, operations=sorted(expected))
    for refused in sorted(GRANT_OPERATIONS - expected):
        with pytest.raises(ValidationError, match=refused):
            create(key, operations=["DescribeKey", refused])


def test_operations_must_be_grant_operations_and_not_empty():
    key = new_key()
    for bad in ([], ["ScheduleKeyDeletion"], ["kms:Encrypt"], ["encrypt"]):
        with pytest.raises(ValidationError):
            create(key, operations=bad)
    assert key.version == 1


def test_constraints_only_on_symmetric_encryption_keys_and_within_limits():
    key = new_key()
    eight = {f"k{i}": "v" for i in range(8)}
    assert create(key, constraints={"EncryptionContextEquals": eight})
    assert create(key, operations=["DescribeKey", "RetireGrant"], constraints={"EncryptionContextSubset": {"a": "b"}})
    assert create(key, constraints={"EncryptionContextSubset": {"k": "v" * 383}})
    with pytest.raises(LimitExceededError, match="at most 8"):
        create(key, constraints={"EncryptionContextEquals": {**eight, "k8": "v"}})
    with pytest.raises(LimitExceededError, match="384"):
        create(key, constraints={"EncryptionContextSubset": {"k": "v" * 384}})
    for spec, usage, ops in (("RSA_2048", "ENCRYPT_DECRYPT", ["Decrypt"]), ("HMAC_256", "GENERATE_VERIFY_MAC",
                                                                            ["GenerateMac"])):
        with pytest.raises(ValidationError, match="only symmetric encryption keys"):
            create(new_key(spec, usage), operations=ops, constraints={"EncryptionContextSubset": {"a": "b"}})
    assert create(new_key("RSA_2048", "ENCRYPT_DECRYPT"), operations=["Decrypt"],
                  constraints={"EncryptionContextSubset": {}})  # an empty constraint constrains nothing


VALID_PRINCIPALS = [
    ROOT, ALICE, OPS, "arn:aws:iam::111122223333:user/division/team/bob",
    "arn:aws:iam::444455556666:role/x+y=z,a.b@c-d",
    "arn:aws:sts::111122223333:assumed-role/ops/session-1", "arn:aws:sts::111122223333:federated-user/carol",
    "arn:aws-cn:iam::111122223333:root", "arn:aws-us-gov:iam::111122223333:user/dave",
]
INVALID_PRINCIPALS = [
    "alice", "111122223333", "*", "arn:aws:iam::111122223333:group/admins", "arn:aws:iam::11112222333:root",
    "arn:aws:iam::111122223333:user/", "arn:aws:s3:::bucket", "arn:aws:kms:us-east-1:111122223333:key/x",
    "arn:aws:sts::111122223333:assumed-role/ops", "dynamodb.us-east-1.amazonaws.com", "arn:aws:iam::111122223333:root/",
]


@pytest.mark.parametrize("principal", VALID_PRINCIPALS)
def test_principal_arns_aws_accepts(principal):
    key = new_key()
    assert create(key, grantee_principal=principal, retiring_principal=principal)
    assert principal_account(principal) == principal.split(":")[4]


@pytest.mark.parametrize("principal", INVALID_PRINCIPALS)
def test_principals_that_are_not_arns_of_principals_are_invalid_arns(principal):
    key = new_key()
    with pytest.raises(InvalidArnError):
        create(key, grantee_principal=principal)
    with pytest.raises(InvalidArnError):
        create(key, retiring_principal=principal)
    assert key.version == 1 and principal_account(principal) is None


@given(st.from_regex(r"[a-zA-Z0-9:/_-]{1,256}", fullmatch=True))
@settings(max_examples=50, suppress_health_check=[HealthCheck.too_slow])
def test_names_of_the_model_charset_are_accepted(name):
    key = new_key()
    grant_id = create(key, name=name)
    assert key.grant_entries()[0]["Name"] == name and key.grants[grant_id]["name"] == name


@pytest.mark.parametrize("name", ["", "has space", "ümlaut", "a" * 257, "semi;colon"])
def test_names_outside_the_charset_are_refused(name):
    with pytest.raises(ValidationError):
        create(new_key(), name=name)


def test_the_50000th_grant_is_the_last():
    key = new_key()
    for step in range(MAX_GRANTS_PER_KEY):
        key.trigger_event(key.GrantCreated, timestamp=at(1), grant_id=f"{step:064x}", name=None,
                          grantee_principal=ALICE, retiring_principal=None, operations=["Encrypt"], constraints=None,
                          issuing_account=ROOT)
    assert len(key.grants) == MAX_GRANTS_PER_KEY
    with pytest.raises(LimitExceededError, match="50000"):
        create(key)
    key.revoke_grant(f"{7:064x}", at(2))
    assert create(key, 3)


# -- retire, revoke, lookups -------------------------------------------------------------------------

def test_retire_and_revoke_need_a_grant_in_force():
    key = new_key()
    grant_id = create(key)
    for command in (key.retire_grant, key.revoke_grant):
        with pytest.raises(InvalidGrantIdError):
            command("not-a-grant-id", at(2))
        with pytest.raises(NotFoundError, match="was not found"):
            command("0" * 64, at(2))
    key.revoke_grant(grant_id, at(2))
    with pytest.raises(NotFoundError):
        key.retire_grant(grant_id, at(3))


# -- the key-state matrix ----------------------------------------------------------------------------

def test_create_grant_follows_the_key_state_matrix_and_the_rest_work_in_every_state():
    key = new_key()
    grants = [create(key, i) for i in range(3)]
    key.disable(at(5))
    with pytest.raises(DisabledError, match="is disabled"):
        create(key, 6)
    key.retire_grant(grants[0], at(6))
    key.schedule_deletion(7, at(7))
    with pytest.raises(InvalidStateError, match="pending deletion"):
        create(key, 8)
    key.revoke_grant(grants[1], at(8))
    assert [g.grant_id for g in key.active_grants()] == [grants[2]]
    with pytest.raises(InvalidStateError, match="pending import"):
        create(new_key(origin="EXTERNAL"))
    key.delete(key.deletion_date)
    assert key.active_grants() == [] and key.grant_entries() == []
    for command in (lambda: create(key, 9), lambda: key.retire_grant(grants[2], at(9)),
                    lambda: key.revoke_grant(grants[2], at(9))):
        with pytest.raises(NotFoundError):
            command()


# -- who may retire (domain.policy.evaluation.can_retire) -------------------------------------------------

def test_can_retire_names_the_retiring_principal_a_retiring_grantee_and_the_issuing_root():
    key = new_key()
    create(key, grantee_principal=ALICE, retiring_principal=OPS, operations=["Encrypt"])
    (plain,) = key.active_grants()
    assert can_retire(plain, OPS, "111122223333").allowed
    assert can_retire(plain, "arn:aws:sts::111122223333:assumed-role/ops/s1", "111122223333").allowed
    assert can_retire(plain, ROOT, "111122223333").allowed  # the account in which the grant was created
    assert not can_retire(plain, ALICE, "111122223333").allowed  # the grant does not give her RetireGrant
    assert not can_retire(plain, "arn:aws:iam::111122223333:user/mallory", "111122223333").allowed
    assert not can_retire(plain, "arn:aws:iam::444455556666:root", "444455556666").allowed
    create(key, 2, grantee_principal=ALICE, operations=["Encrypt", "RetireGrant"], issuing_account=
           "arn:aws:iam::444455556666:root")
    retiring_grantee = [g for g in key.active_grants() if g.grant_id != plain.grant_id][0]
    assert can_retire(retiring_grantee, ALICE, "111122223333").allowed
    assert can_retire(retiring_grantee, "arn:aws:iam::444455556666:root", "444455556666").allowed
    assert not can_retire(retiring_grantee, ROOT, "111122223333").allowed  # not the issuing account


@given(st.lists(st.tuples(st.sampled_from(["create", "retire", "revoke"]), st.integers(0, 20)), max_size=30))
@settings(max_examples=40, deadline=None)
def test_entries_and_active_grants_agree_with_a_fold_of_the_events(steps):
    """Random creates, retires and revokes: the grants in force are those created and not yet ended, in every
    view the aggregate gives (records, authorizer grants, ListGrants entries), live and replayed."""
    key, alive = new_key(), []
    for step, (command, pick) in enumerate(steps, start=1):
        if command == "create":
            alive.append(create(key, step, name=f"n{pick % 3}", operations=["Encrypt"] if pick % 2 else ["Decrypt"]))
        elif alive:
            ended = alive.pop(pick % len(alive))
            (key.retire_grant if command == "retire" else key.revoke_grant)(ended, at(step))
        if len(alive) != len(set(alive)):
            alive = list(dict.fromkeys(alive))  # a Name retry returned a grant already counted
    assert sorted(key.grants) == sorted(alive)
    assert [e["GrantId"] for e in key.grant_entries()] == sorted(alive)
    assert sorted(g.grant_id for g in key.active_grants()) == sorted(alive)
    assert grants_from_entries(key.grant_entries()) == sorted(key.active_grants(), key=lambda g: g.grant_id)
    replayed = fold(key.collect_events())
    assert replayed.grant_entries() == key.grant_entries()
    assert [grant_entry(r, key.arn) for _, r in sorted(key.grants.items())] == key.grant_entries()


def test_refusals_leave_no_event():
    key = new_key()
    for overrides in (dict(operations=["Sign"]), dict(grantee_principal="x"), dict(name="a b"),
                      dict(constraints={"EncryptionContextEquals": {f"k{i}": "v" for i in range(9)}}),
                      dict(grant_id="short")):
        with pytest.raises(KmsError):
            create(key, **overrides)
    assert key.version == 1 and len(key.pending_events) == 1
