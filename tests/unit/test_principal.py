"""The Principal aggregate and principal ARNs: commands, events, replay, and IAM's rules (names, quotas,
DeleteConflict), driven through commands and rebuilt from events, in memory and through an eventsourcing
Application (popo storage) with snapshots. No mocks."""
from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from eventsourcing.application import Application
from eventsourcing.persistence import IntegrityError
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.errors import (
    DeleteConflictError,
    EntityAlreadyExistsError,
    IamLimitExceededError,
    IamValidationError,
    MalformedIdentityPolicyError,
    NoSuchEntityError,
)
from domain.policy.document import policy_size
from domain.principals.arns import ROLE, ROOT, SESSION, USER, acting_arn, parse_principal_arn
from domain.principals.principal import ACTIVE, INACTIVE, MAX_ACCESS_KEYS, Principal

ACCOUNT = "111122223333"
T0 = datetime(2025, 3, 1, 9, 0, tzinfo=timezone.utc)
ALICE = f"arn:aws:iam::{ACCOUNT}:user/alice"
DEPLOY = f"arn:aws:iam::{ACCOUNT}:role/ops/deploy"
ROOT_ARN = f"arn:aws:iam::{ACCOUNT}:root"


def policy(*statements: dict[str, Any]) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements) or
                       [{"Effect": "Allow", "Action": "kms:Encrypt", "Resource": "*"}]})


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def replayed(principal: Principal) -> Principal:
    """The aggregate rebuilt from its own events, as the event store would."""
    rebuilt: Any = None
    for event in principal.collect_events():
        rebuilt = event.mutate(rebuilt)
    return rebuilt


def state(principal: Principal) -> dict[str, Any]:
    return {k: v for k, v in principal.__dict__.items() if not k.startswith("_")} | {"version": principal.version}


# -- ARNs -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("arn, kind, name, path", [
    (ROOT_ARN, ROOT, "", "/"),
    (ALICE, USER, "alice", "/"),
    (DEPLOY, ROLE, "deploy", "/ops/"),
    (f"arn:aws:iam::{ACCOUNT}:user/a/b/c+=,.@_-9", USER, "c+=,.@_-9", "/a/b/"),
    (f"arn:aws:sts::{ACCOUNT}:assumed-role/deploy/AKIAEXAMPLE", SESSION, "deploy", "/"),
])
def test_principal_arns_parse(arn, kind, name, path):
    parsed = parse_principal_arn(arn)
    assert (parsed.kind, parsed.name, parsed.path, parsed.account_id, parsed.arn) == (kind, name, path, ACCOUNT, arn)


@pytest.mark.parametrize("arn, message", [
    ("alice", "is not a principal ARN"),
    ("arn:aws:iam::1111:user/alice", "is not a principal ARN"),
    ("arn:aws:iam:us-east-1:111122223333:user/alice", "is not a principal ARN"),
    ("arn:aws:kms::111122223333:user/alice", "is not a principal ARN"),
    (f"arn:aws:iam::{ACCOUNT}:group/admins", "neither a user, a role nor the account root"),
    (f"arn:aws:iam::{ACCOUNT}:user/", "neither a user"),
    (f"arn:aws:iam::{ACCOUNT}:user/al ice", "name is 1 to 64"),
    (f"arn:aws:iam::{ACCOUNT}:user/" + "a" * 65, "name is 1 to 64"),
    (f"arn:aws:iam::{ACCOUNT}:user//alice", "the path '//'"),
    (f"arn:aws:sts::{ACCOUNT}:assumed-role/deploy", "not a role session ARN"),
    (f"arn:aws:sts::{ACCOUNT}:federated-user/bob", "not a role session ARN"),
])
def test_bad_principal_arns_say_why(arn, message):
    with pytest.raises(IamValidationError) as info:
        parse_principal_arn(arn)
    assert message in info.value.message and info.value.code == "ValidationError"


def test_names_are_unique_in_an_account_whatever_their_case_and_path():
    ids = {parse_principal_arn(a).aggregate_id for a in
           (ALICE, f"arn:aws:iam::{ACCOUNT}:user/ALICE", f"arn:aws:iam::{ACCOUNT}:user/team/alice")}
    assert len(ids) == 1
    others = {parse_principal_arn(a).aggregate_id for a in
              (ALICE, f"arn:aws:iam::{ACCOUNT}:role/alice", "arn:aws:iam::444455556666:user/alice", ROOT_ARN)}
    assert len(others) == 4


def test_a_session_belongs_to_its_role_and_a_role_key_acts_as_a_session():
    session = acting_arn(DEPLOY, "AKIAEXAMPLEKEY000001")
    assert session == f"arn:aws:sts::{ACCOUNT}:assumed-role/deploy/AKIAEXAMPLEKEY000001"
    assert parse_principal_arn(session).aggregate_id == parse_principal_arn(DEPLOY).aggregate_id
    assert acting_arn(ALICE, "AKIAX") == ALICE and acting_arn(ROOT_ARN, "AKIAX") == ROOT_ARN


NAMES = st.text(st.sampled_from("abcXYZ019+=,.@_-"), min_size=1, max_size=64)
PATHS = st.lists(st.text(st.sampled_from("abc-_09"), min_size=1, max_size=8), max_size=3)


@given(kind=st.sampled_from([USER, ROLE]), name=NAMES, path=PATHS, account=st.from_regex(r"\d{12}", fullmatch=True))
def test_every_valid_user_or_role_arn_parses_back_to_its_parts(kind, name, path, account):
    arn = f"arn:aws:iam::{account}:{kind}/{''.join(p + '/' for p in path)}{name}"
    parsed = parse_principal_arn(arn)
    assert (parsed.kind, parsed.name, parsed.account_id) == (kind, name, account)
    assert parsed.path == "/" + "".join(p + "/" for p in path)
    shouted = parse_principal_arn(f"arn:aws:iam::{account}:{kind}/{name.upper()}")  # another case, no path
    assert shouted.aggregate_id == parsed.aggregate_id


# -- the aggregate ----------------------------------------------------------------------------------

def test_create_and_recreate_a_user():
    alice = Principal.create(parse_principal_arn(ALICE), T0)
    assert (alice.arn, alice.kind, alice.name, alice.deleted) == (ALICE, USER, "alice", False)
    assert alice.unique_id.startswith("AIDA") and len(alice.unique_id) == 21
    assert alice.id == parse_principal_arn(ALICE).aggregate_id
    with pytest.raises(EntityAlreadyExistsError):
        alice.recreate(parse_principal_arn(ALICE), at(1))
    first_id = alice.unique_id
    alice.put_policy("use", policy(), at(1))
    alice.add_access_key("AKIAFIRST", at(2))
    alice.delete(at(3), force=True)
    alice.recreate(parse_principal_arn(f"arn:aws:iam::{ACCOUNT}:user/team/Alice"), at(4))
    assert (alice.deleted, alice.policies, alice.access_keys) == (False, {}, {})
    assert (alice.arn, alice.name, alice.path) == (f"arn:aws:iam::{ACCOUNT}:user/team/Alice", "Alice", "/team/")
    assert alice.unique_id != first_id and alice.creation_date == at(4)
    assert state(replayed(alice)) == state(alice)


def test_roles_get_role_ids_and_roots_their_account():
    role = Principal.create(parse_principal_arn(DEPLOY), T0)
    root = Principal.create(parse_principal_arn(ROOT_ARN), T0)
    assert role.unique_id.startswith("AROA") and root.unique_id == ACCOUNT
    with pytest.raises(IamValidationError):
        Principal.create(parse_principal_arn(f"arn:aws:sts::{ACCOUNT}:assumed-role/deploy/s1"), T0)


def test_identity_policies_are_attached_replaced_and_detached_as_events():
    alice = Principal.create(parse_principal_arn(ALICE), T0)
    assert alice.put_policy("use", policy(), at(1)) is True
    assert alice.put_policy("use", policy(), at(2)) is False  # the same document: nothing changes
    other = policy({"Effect": "Deny", "Action": "kms:Decrypt", "Resource": "*"})
    assert alice.put_policy("use", other, at(3)) is True
    alice.put_policy("more", policy(), at(4))
    alice.delete_policy("more", at(5))
    assert [type(e).__name__ for e in alice.pending_events] == [
        "Created", "PolicyAttached", "PolicyReplaced", "PolicyAttached", "PolicyDetached"]
    assert alice.policies == {"use": other}
    assert [d.statements[0].effect for d in alice.policy_documents()] == ["Deny"]
    with pytest.raises(NoSuchEntityError):
        alice.delete_policy("more", at(6))
    assert state(replayed(alice)) == state(alice)


@pytest.mark.parametrize("name", ["", "a" * 129, "has space", "a/b", "a\\b", "a*", "a?", "é"])
def test_bad_policy_names_are_refused(name):
    with pytest.raises(IamValidationError):
        Principal.create(parse_principal_arn(ALICE), T0).put_policy(name, policy(), at(1))


def test_malformed_identity_policies_are_refused_with_iams_code_and_the_policy_named():
    alice = Principal.create(parse_principal_arn(ALICE), T0)
    with pytest.raises(MalformedIdentityPolicyError) as info:
        alice.put_policy("keys", policy({"Effect": "Allow", "Action": "kms:Encrypt"}), at(1))
    assert info.value.code == "MalformedPolicyDocument"
    assert info.value.message == "Policy 'keys': Statement 1 needs 'Resource' or 'NotResource'."
    with pytest.raises(MalformedIdentityPolicyError, match="must not name a Principal"):
        alice.put_policy("keys", policy({"Effect": "Allow", "Principal": "*", "Action": "kms:*", "Resource": "*"}),
                         at(1))
    assert alice.policies == {}


def test_inline_policies_together_fit_iams_quota_for_users_and_roles():
    def sized(n: int) -> str:  # a policy of exactly n characters without white space
        def text(filler: str) -> str:
            return policy({"Effect": "Allow", "Action": "kms:Encrypt", "Resource": "arn:aws:kms:*:*:key/" + filler})
        return text("a" * (n - len("".join(text("").split()))))

    assert policy_size(sized(1000)) == 1000
    alice = Principal.create(parse_principal_arn(ALICE), T0)
    alice.put_policy("one", sized(1000), at(1))
    alice.put_policy("two", sized(1048), at(2))
    with pytest.raises(IamLimitExceededError) as info:
        alice.put_policy("three", sized(100), at(3))
    assert "Maximum policy size of 2048 bytes exceeded for user alice" in info.value.message
    alice.put_policy("two", sized(1000), at(4))  # replacing counts the new document, not both
    pretty = json.dumps(json.loads(sized(1000)), indent=8)  # white space is not counted
    alice.put_policy("two", pretty, at(5))
    role = Principal.create(parse_principal_arn(DEPLOY), T0)
    for i in range(10):
        role.put_policy(f"p{i}", sized(1024), at(i))
    with pytest.raises(IamLimitExceededError, match="10240 bytes exceeded for role deploy"):
        role.put_policy("p10", sized(100), at(11))


def test_roots_have_no_identity_policies_and_cannot_be_deleted():
    root = Principal.create(parse_principal_arn(ROOT_ARN), T0)
    with pytest.raises(IamValidationError):
        root.put_policy("p", policy(), at(1))
    with pytest.raises(IamValidationError):
        root.delete(at(1), force=True)


def test_access_keys_quota_status_and_deletion():
    alice = Principal.create(parse_principal_arn(ALICE), T0)
    alice.add_access_key("AKIAONE", at(1))
    alice.add_access_key("AKIATWO", at(2))
    with pytest.raises(IamLimitExceededError, match=f"AccessKeysPerUser: {MAX_ACCESS_KEYS}"):
        alice.add_access_key("AKIATHREE", at(3))
    assert alice.set_access_key_status("AKIAONE", INACTIVE, at(4)) is True
    assert alice.set_access_key_status("AKIAONE", INACTIVE, at(5)) is False
    with pytest.raises(IamValidationError):
        alice.set_access_key_status("AKIAONE", "Disabled", at(5))
    with pytest.raises(NoSuchEntityError, match="AKIANONE"):
        alice.set_access_key_status("AKIANONE", ACTIVE, at(5))
    alice.delete_access_key("AKIATWO", at(6))
    alice.add_access_key("AKIATHREE", at(7))  # an inactive key still counts, a deleted one does not
    assert alice.access_keys == {"AKIAONE": INACTIVE, "AKIATHREE": ACTIVE}
    assert state(replayed(alice)) == state(alice)


def test_delete_conflicts_while_keys_or_policies_remain_unless_forced():
    alice = Principal.create(parse_principal_arn(ALICE), T0)
    alice.delete(at(1))
    assert alice.deleted
    bob = Principal.create(parse_principal_arn(f"arn:aws:iam::{ACCOUNT}:user/bob"), T0)
    bob.add_access_key("AKIABOB", at(1))
    bob.put_policy("use", policy(), at(2))
    with pytest.raises(DeleteConflictError) as info:
        bob.delete(at(3))
    assert "access keys (AKIABOB) and policies (use)" in info.value.message and info.value.code == "DeleteConflict"
    assert not bob.deleted
    assert bob.delete(at(4), force=True) == {"deletedAccessKeyIds": ["AKIABOB"], "deletedPolicyNames": ["use"]}
    assert [type(e).__name__ for e in bob.pending_events][-3:] == ["AccessKeyDeleted", "PolicyDetached", "Deleted"]
    with pytest.raises(NoSuchEntityError):
        bob.add_access_key("AKIALATE", at(5))
    with pytest.raises(NoSuchEntityError):
        bob.require_live(bob.arn)


def test_require_live_names_the_principal_by_its_exact_arn():
    alice = Principal.create(parse_principal_arn(f"arn:aws:iam::{ACCOUNT}:user/team/alice"), T0)
    alice.require_live(f"arn:aws:iam::{ACCOUNT}:user/team/alice")
    with pytest.raises(NoSuchEntityError, match="user/team/alice"):
        alice.require_live(ALICE)


def test_events_carry_no_secret_and_the_store_refuses_a_duplicate():
    app = Application(env={"IS_SNAPSHOTTING_ENABLED": "y"})
    alice = Principal.create(parse_principal_arn(ALICE), T0)
    secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
    alice.add_access_key("AKIAONE", at(1))  # the aggregate is never handed a secret at all
    app.save(alice)
    stored = b"".join(e.state for e in app.recorder.select_events(alice.id))
    assert b"AKIAONE" in stored and secret.encode() not in stored
    with pytest.raises(IntegrityError):
        app.save(Principal.create(parse_principal_arn(f"arn:aws:iam::{ACCOUNT}:user/ALICE"), T0))
    for i in range(60):  # past the snapshot interval: a snapshot rebuilds the same state
        alice.set_access_key_status("AKIAONE", INACTIVE if i % 2 == 0 else ACTIVE, at(2 + i))
    app.save(alice)
    app.take_snapshot(alice.id)
    assert state(app.repository.get(alice.id)) == state(alice)
    assert app.repository.get(alice.id, version=2).access_keys == {"AKIAONE": ACTIVE}


COMMANDS = st.lists(st.tuples(st.sampled_from(["key", "status", "delete-key", "put", "detach", "delete", "recreate"]),
                              st.integers(0, 3)), max_size=25)


@settings(max_examples=60, deadline=None)
@given(commands=COMMANDS)
def test_any_command_sequence_replays_to_the_same_state_and_keeps_the_quota(commands):
    principal = Principal.create(parse_principal_arn(ALICE), T0)
    for step, (command, n) in enumerate(commands, 1):
        now = at(step)
        try:
            if command == "key":
                principal.add_access_key(f"AKIA{n}", now)
            elif command == "status":
                principal.set_access_key_status(f"AKIA{n}", (ACTIVE, INACTIVE)[n % 2], now)
            elif command == "delete-key":
                principal.delete_access_key(f"AKIA{n}", now)
            elif command == "put":
                principal.put_policy(f"p{n}", policy(), now)
            elif command == "detach":
                principal.delete_policy(f"p{n}", now)
            elif command == "delete":
                principal.delete(now, force=bool(n % 2))
            else:
                principal.recreate(parse_principal_arn(ALICE), now)
        except (NoSuchEntityError, IamLimitExceededError, DeleteConflictError, EntityAlreadyExistsError):
            pass
        assert len(principal.access_keys) <= MAX_ACCESS_KEYS
        assert not principal.deleted or (principal.access_keys == {} and principal.policies == {})
    assert state(replayed(principal)) == state(principal)
    assert isinstance(principal.id, uuid.UUID)
