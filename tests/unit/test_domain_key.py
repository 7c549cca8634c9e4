"""The Key and Alias aggregates: commands, events, replay, and KeyMetadata's shape.

Expectations come from AWS KMS (reference/aws-kms.md 1.1, botocore's KMS model) and docs/decisions.md.
No mocks: aggregates are driven through their commands and rebuilt from their events, both by folding the
events with ``mutate`` and through an in-memory (popo) eventsourcing Application.
"""
from __future__ import annotations

import base64
import copy
import re
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any, Callable

import botocore.session
import pytest
from eventsourcing.application import Application
from eventsourcing.persistence import IntegrityError
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from domain.errors import InvalidStateError, KmsError, LimitExceededError, TagError, ValidationError
from domain.identifiers import Scope, alias_aggregate_id
from domain.keys.alias import Alias
from domain.keys.key import Key
from domain.keys.material import Material, new_symmetric_material
from domain.keys.specs import KEY_SPECS
from domain.keys.states import KeyState
from domain.policy.default_policy import default_key_policy

SCOPE = Scope("111122223333", "us-east-1")
T0 = datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)
ENABLED, DISABLED, PENDING_DELETION, PENDING_IMPORT = (
    KeyState.ENABLED.value, KeyState.DISABLED.value, KeyState.PENDING_DELETION.value, KeyState.PENDING_IMPORT.value)

KMS_MODEL = botocore.session.get_session().get_service_model("kms")
KEY_METADATA = KMS_MODEL.shape_for("KeyMetadata")


def at(step: int) -> datetime:
    return T0 + timedelta(minutes=step)


def new_key(*, origin: str = "AWS_KMS", key_spec: str = "SYMMETRIC_DEFAULT", key_usage: str = "ENCRYPT_DECRYPT",
            tags: dict[str, str] | None = None, description: str = "test key") -> tuple[Key, Material | None]:
    key_id = uuid.uuid4()
    material = new_symmetric_material() if origin == "AWS_KMS" and key_spec == "SYMMETRIC_DEFAULT" else None
    key = Key.create(
        key_id=key_id, scope=SCOPE, at=T0, key_spec=key_spec, key_usage=key_usage, origin=origin,
        description=description, policy=default_key_policy(SCOPE.account_id), tags=tags or {},
        material_id=material.material_id if material else None,
        commitment=material.commitment(str(key_id)) if material else None,
    )
    return key, material


def popo_app() -> Application:
    return Application(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})


def rebuilt_by_mutate(events) -> Any:
    aggregate = None
    for event in events:
        aggregate = event.mutate(aggregate)
    return aggregate


def state_of(aggregate) -> dict[str, Any]:
    """Everything an aggregate knows except its list of not-yet-saved events."""
    return {k: v for k, v in aggregate.__dict__.items() if k != "_pending_events"}


def assert_refused(key: Key, command: Callable[[], Any], error_class: type[KmsError] | tuple) -> KmsError:
    """A refused command raises ``error_class`` and leaves version, pending events and state untouched."""
    version = key.version
    pending = list(key.pending_events)
    before = copy.deepcopy(state_of(key))
    with pytest.raises(KmsError) as info:
        command()
    allowed = error_class if isinstance(error_class, tuple) else (error_class,)
    assert type(info.value) in allowed, f"{type(info.value).__name__}: {info.value}"
    assert key.version == version
    assert len(key.pending_events) == len(pending)
    assert all(a is b for a, b in zip(key.pending_events, pending))
    assert state_of(key) == before
    return info.value


# --- creation and simple transitions -----------------------------------------------------------------


def test_create_starts_enabled_at_version_1_with_one_created_event():
    key, material = new_key(tags={"team": "a"})
    assert key.version == 1
    assert [type(e) for e in key.pending_events] == [Key.Created]
    assert key.state == ENABLED and key.key_state is KeyState.ENABLED
    assert key.arn == f"arn:aws:kms:us-east-1:111122223333:key/{key.id}"
    assert key.tags == {"team": "a"}
    assert key.current_material_id == material.material_id


def test_create_external_origin_starts_pending_import():
    key, _ = new_key(origin="EXTERNAL")
    assert key.state == PENDING_IMPORT
    assert key.metadata()["Enabled"] is False


def test_create_refuses_reserved_tag_keys():
    with pytest.raises(TagError):
        new_key(tags={"aws:owner": "x"})


def test_versions_increment_by_one_per_event():
    key, _ = new_key()
    commands = [
        lambda: key.disable(at(1)),
        lambda: key.enable(at(2)),
        lambda: key.update_description("new", at(3)),
        lambda: key.put_policy("default", default_key_policy(SCOPE.account_id), at(4)),
        lambda: key.tag({"a": "1"}, at(5)),
        lambda: key.untag(["a"], at(6)),
        lambda: key.schedule_deletion(None, at(7)),
        lambda: key.cancel_deletion(at(8)),
    ]
    for expected_version, command in enumerate(commands, start=2):
        command()
        assert key.version == expected_version
        assert len(key.pending_events) == expected_version
    assert [e.originator_version for e in key.pending_events] == list(range(1, len(commands) + 2))
    assert [type(e).__name__ for e in key.pending_events] == [
        "Created", "Disabled", "Enabled", "DescriptionUpdated", "PolicyPut", "Tagged", "Untagged",
        "DeletionScheduled", "DeletionCanceled"]
    assert all(e.originator_id == key.id for e in key.pending_events)


def test_enable_on_enabled_triggers_no_event():
    key, _ = new_key()
    before = copy.deepcopy(state_of(key))
    key.enable(at(1))
    assert key.version == 1 and len(key.pending_events) == 1
    assert state_of(key) == before


def test_disable_on_disabled_triggers_no_event():
    key, _ = new_key()
    key.disable(at(1))
    key.disable(at(2))
    assert key.version == 2 and key.state == DISABLED


def test_disable_then_enable():
    key, _ = new_key()
    key.disable(at(1))
    assert key.state == DISABLED and key.metadata()["Enabled"] is False
    key.enable(at(2))
    assert key.state == ENABLED and key.metadata()["Enabled"] is True


def test_update_description_put_policy_tag_untag():
    key, _ = new_key(tags={"keep": "1"})
    key.update_description("described", at(1))
    key.put_policy("default", '{"Statement": []}', at(2))
    key.tag({"env": "prod", "keep": "2"}, at(3))
    key.untag(["env", "absent"], at(4))
    assert key.description == "described"
    assert key.policy == '{"Statement": []}'
    assert key.tags == {"keep": "2"}
    assert key.metadata()["Description"] == "described"


@pytest.mark.parametrize("days", [None, 7, 8, 29, 30])
def test_schedule_deletion_accepts_7_to_30_days_default_30(days):
    key, _ = new_key()
    key.schedule_deletion(days, at(1))
    expected_days = 30 if days is None else days
    assert key.state == PENDING_DELETION
    assert key.version == 2
    assert key.deletion_date == at(1) + timedelta(days=expected_days)
    meta = key.metadata()
    assert meta["KeyState"] == "PendingDeletion" and meta["Enabled"] is False
    assert meta["DeletionDate"] == at(1) + timedelta(days=expected_days)


@pytest.mark.parametrize("days", [-1, 0, 1, 6, 31, 365])
def test_schedule_deletion_outside_7_to_30_is_validation_error_and_leaves_no_trace(days):
    key, _ = new_key()
    key.disable(at(1))
    assert_refused(key, lambda: key.schedule_deletion(days, at(2)), ValidationError)
    assert key.state == DISABLED


def test_schedule_deletion_from_disabled_and_cancel_goes_to_disabled():
    key, _ = new_key()
    key.disable(at(1))
    key.schedule_deletion(7, at(2))
    key.cancel_deletion(at(3))
    assert key.state == DISABLED
    assert key.deletion_date is None
    meta = key.metadata()
    assert "DeletionDate" not in meta and "PendingDeletionWindowInDays" not in meta
    assert meta["Enabled"] is False


def test_cancel_deletion_of_an_enabled_key_goes_to_disabled_not_enabled():
    key, _ = new_key()
    key.schedule_deletion(None, at(1))
    key.cancel_deletion(at(2))
    assert key.state == DISABLED
    assert key.version == 3


# --- refused commands leave no trace -------------------------------------------------------------------


@pytest.mark.parametrize("setup", ["enabled", "disabled"])
def test_cancel_deletion_when_not_pending_deletion_is_refused(setup):
    key, _ = new_key()
    if setup == "disabled":
        key.disable(at(1))
    error = assert_refused(key, lambda: key.cancel_deletion(at(2)), InvalidStateError)
    assert key.arn in error.message


@pytest.mark.parametrize("command", [
    "enable", "disable", "update_description", "tag", "untag", "schedule_deletion", "schedule_deletion_invalid_days",
])
def test_commands_refused_while_pending_deletion(command):
    key, _ = new_key(tags={"a": "1"})
    key.schedule_deletion(None, at(1))
    calls = {
        "enable": lambda: key.enable(at(2)),
        "disable": lambda: key.disable(at(2)),
        "update_description": lambda: key.update_description("x", at(2)),
        "tag": lambda: key.tag({"b": "2"}, at(2)),
        "untag": lambda: key.untag(["a"], at(2)),
        "schedule_deletion": lambda: key.schedule_deletion(7, at(2)),
        "schedule_deletion_invalid_days": lambda: key.schedule_deletion(6, at(2)),
    }
    # A key pending deletion refuses these with KMSInvalidStateException (reference footnote 3). An invalid
    # window on such a key may be refused for either reason.
    expected = (InvalidStateError, ValidationError) if command == "schedule_deletion_invalid_days" else InvalidStateError
    error = assert_refused(key, calls[command], expected)
    if isinstance(error, InvalidStateError):
        assert key.arn in error.message
    assert key.state == PENDING_DELETION


def test_put_policy_is_allowed_while_pending_deletion():
    key, _ = new_key()
    key.schedule_deletion(None, at(1))
    key.put_policy("default", "{}", at(2))
    assert key.version == 3 and key.policy == "{}"


@pytest.mark.parametrize("command", ["enable", "disable"])
def test_enable_disable_refused_while_pending_import(command):
    key, _ = new_key(origin="EXTERNAL")
    error = assert_refused(key, lambda: getattr(key, command)(at(1)), InvalidStateError)
    assert "pending import" in error.message and key.arn in error.message


def test_tag_with_reserved_prefix_is_refused_without_trace():
    key, _ = new_key()
    assert_refused(key, lambda: key.tag({"ok": "1", "aws:x": "2"}, at(1)), TagError)
    assert_refused(key, lambda: key.tag({"AWS:x": "2"}, at(1)), TagError)


def test_more_than_50_tags_is_refused_without_trace():
    key, _ = new_key(tags={f"k{i}": "v" for i in range(49)})
    key.tag({"k49": "v"}, at(1))  # 50 is the limit
    assert len(key.tags) == 50
    key.tag({"k0": "replaced"}, at(2))  # overwriting does not add
    assert_refused(key, lambda: key.tag({"k50": "v"}, at(3)), LimitExceededError)
    assert len(key.tags) == 50


# --- replay --------------------------------------------------------------------------------------------


def _busy_key() -> Key:
    key, _ = new_key(tags={"a": "1"})
    key.disable(at(1))
    key.enable(at(2))
    key.update_description("described", at(3))
    key.put_policy("default", default_key_policy(SCOPE.account_id), at(4))
    key.tag({"b": "2", "c": "3"}, at(5))
    key.untag(["a"], at(6))
    key.schedule_deletion(9, at(7))
    key.cancel_deletion(at(8))
    key.schedule_deletion(None, at(9))
    return key


def test_replay_by_mutate_gives_an_equal_key():
    key = _busy_key()
    events = key.collect_events()
    rebuilt = rebuilt_by_mutate(events)
    assert rebuilt == key
    assert rebuilt.metadata() == key.metadata()


def test_replay_through_popo_application_gives_an_equal_key():
    key = _busy_key()
    app = popo_app()
    app.save(key)
    loaded = app.repository.get(key.id)
    assert loaded == key
    assert state_of(loaded) == state_of(key)
    assert loaded.metadata() == key.metadata()
    # point in time: an older version is the state as it was
    at_version_2 = app.repository.get(key.id, version=2)
    assert at_version_2.state == DISABLED and at_version_2.version == 2


# --- no key material in events --------------------------------------------------------------------------

_LONG_HEX = re.compile(r"^[0-9a-fA-F]{32,}$")


def _walk(value: Any, path: str):
    yield path, value
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _walk(k, f"{path}.<key>")
            yield from _walk(v, f"{path}.{k}")
    elif isinstance(value, (list, tuple, set, frozenset)):
        for i, v in enumerate(value):
            yield from _walk(v, f"{path}[{i}]")


def test_no_event_contains_key_material():
    key = _busy_key()
    events = list(key.pending_events)
    material_id = key.current_material_id
    assert re.fullmatch(r"[0-9a-f]{32}", material_id)
    for event in events:
        for path, value in _walk(event.__dict__, type(event).__name__):
            assert not isinstance(value, (bytes, bytearray, memoryview)), f"{path} holds bytes"
            if isinstance(value, str) and _LONG_HEX.match(value):
                field = path.rsplit(".", 1)[-1]
                assert field in ("material_id", "commitment"), f"{path} looks like key material: {value}"
                assert len(value) == (32 if field == "material_id" else 64)


def test_created_event_carries_only_material_id_and_commitment():
    key, material = new_key()
    (created,) = key.pending_events
    assert created.material_id == material.material_id
    assert re.fullmatch(r"[0-9a-f]{32}", created.material_id)
    assert created.commitment == material.commitment(key.key_id)
    assert re.fullmatch(r"[0-9a-f]{64}", created.commitment)
    secret = material.secret
    text = repr(created.__dict__)
    for form in (secret.hex(), secret.hex().upper(), base64.b64encode(secret).decode(), repr(secret)):
        assert form not in text
    # nor in the aggregate's state (what a snapshot would hold)
    state_text = repr(state_of(key))
    for form in (secret.hex(), base64.b64encode(secret).decode(), repr(secret)):
        assert form not in state_text
    assert not any(isinstance(v, (bytes, bytearray)) for _, v in _walk(state_of(key), "key"))


# --- KeyMetadata -----------------------------------------------------------------------------------------


def _metadata_in_every_state():
    enabled, _ = new_key()
    disabled, _ = new_key()
    disabled.disable(at(1))
    pending, _ = new_key()
    pending.schedule_deletion(7, at(1))
    canceled, _ = new_key()
    canceled.schedule_deletion(7, at(1))
    canceled.cancel_deletion(at(2))
    external, _ = new_key(origin="EXTERNAL")
    return {"Enabled": enabled, "Disabled": disabled, "PendingDeletion": pending, "Canceled": canceled,
            "PendingImport": external}


@pytest.mark.parametrize("name", ["Enabled", "Disabled", "PendingDeletion", "Canceled", "PendingImport"])
def test_metadata_uses_only_botocore_key_metadata_members(name):
    key = _metadata_in_every_state()[name]
    meta = key.metadata()
    members = set(KEY_METADATA.members)
    assert set(meta) <= members, sorted(set(meta) - members)
    for required in KEY_METADATA.required_members:
        assert required in meta
    _check_metadata_values(key, meta)


def _check_metadata_values(key: Key, meta: dict[str, Any]) -> None:
    for member, value in meta.items():
        shape = KEY_METADATA.members[member]
        if shape.type_name == "string":
            assert isinstance(value, str), member
            if shape.enum:
                assert value in shape.enum, (member, value)
            if "pattern" in shape.metadata:
                assert re.fullmatch(shape.metadata["pattern"].strip("^$"), value), (member, value)
            if "min" in shape.metadata:
                assert shape.metadata["min"] <= len(value) <= shape.metadata.get("max", 10**9), (member, value)
        elif shape.type_name == "boolean":
            assert isinstance(value, bool), member
        elif shape.type_name == "timestamp":
            assert isinstance(value, datetime) and value.tzinfo is not None, member
        elif shape.type_name == "integer":
            assert isinstance(value, int) and not isinstance(value, bool), member
        elif shape.type_name == "list":
            assert isinstance(value, list), member
            if shape.member.enum:
                assert set(value) <= set(shape.member.enum), (member, value)
    assert meta["KeyId"] == key.key_id
    assert meta["Arn"] == key.arn
    assert meta["AWSAccountId"] == SCOPE.account_id
    assert meta["Enabled"] is (meta["KeyState"] == "Enabled")
    assert ("DeletionDate" in meta) is (meta["KeyState"] == "PendingDeletion")


@pytest.mark.parametrize(("spec", "usage"), [
    (spec, usage) for spec, info in sorted(KEY_SPECS.items())
    for usage in (getattr(info, "usages", None) or {})
])
def test_metadata_values_fit_the_model_for_every_spec_and_usage(spec, usage):
    key, _ = new_key(key_spec=spec, key_usage=usage)
    meta = key.metadata()
    assert set(meta) <= set(KEY_METADATA.members), sorted(set(meta) - set(KEY_METADATA.members))
    _check_metadata_values(key, meta)
    assert meta["KeySpec"] == spec and meta["KeyUsage"] == usage


def test_pending_deletion_window_is_not_in_metadata_of_a_single_region_key():
    """botocore's KeyMetadata: PendingDeletionWindowInDays 'is present only when the KeyState of the KMS
    key is PendingReplicaDeletion' (a multi-Region primary with replicas). A single-Region key pending
    deletion shows DeletionDate only."""
    key, _ = new_key()
    key.schedule_deletion(7, at(1))
    meta = key.metadata()
    assert meta["DeletionDate"] == at(1) + timedelta(days=7)
    assert "PendingDeletionWindowInDays" not in meta


def test_metadata_current_key_material_id_is_64_hex_and_not_the_material_id():
    key, material = new_key()
    meta = key.metadata()
    assert re.fullmatch(r"[0-9a-f]{64}", meta["CurrentKeyMaterialId"])
    assert material.material_id not in meta["CurrentKeyMaterialId"]
    assert material.secret.hex() not in meta["CurrentKeyMaterialId"]


# --- Alias aggregate -------------------------------------------------------------------------------------


def _alias(name: str = "alias/app", target: str | None = None) -> Alias:
    return Alias.create(alias_id=alias_aggregate_id(SCOPE, name), alias_name=name, account_id=SCOPE.account_id,
                        region=SCOPE.region, target_key_id=target or str(uuid.uuid4()), at=T0)


def test_alias_create_retarget_delete_recreate():
    first, second, third = (str(uuid.uuid4()) for _ in range(3))
    alias = _alias(target=first)
    assert alias.id == alias_aggregate_id(SCOPE, "alias/app")
    assert (alias.version, alias.target_key_id, alias.deleted) == (1, first, False)
    assert alias.creation_date == T0

    alias.retarget(second, at(1))
    assert (alias.version, alias.target_key_id, alias.deleted) == (2, second, False)
    assert alias.creation_date == T0

    alias.delete(at(2))
    assert (alias.version, alias.deleted) == (3, True)

    alias.recreate(third, at(3))
    assert (alias.version, alias.target_key_id, alias.deleted) == (4, third, False)
    assert alias.creation_date == at(3)
    assert [type(e).__name__ for e in alias.pending_events] == ["Created", "Retargeted", "Deleted", "Recreated"]

    app = popo_app()
    app.save(alias)
    loaded = app.repository.get(alias.id)
    assert loaded == alias
    assert loaded.creation_date == at(3)
    assert app.repository.get(alias.id, version=3).deleted is True


def test_alias_replay_by_mutate():
    alias = _alias()
    alias.retarget(str(uuid.uuid4()), at(1))
    alias.delete(at(2))
    alias.recreate(str(uuid.uuid4()), at(3))
    assert rebuilt_by_mutate(alias.collect_events()) == alias


def test_alias_name_is_unique_in_the_store():
    """Alias id = uuid5 of the name (domain/keys/alias.py), so a second Created for the same name collides."""
    app = popo_app()
    app.save(_alias("alias/same"))
    with pytest.raises(IntegrityError):
        app.save(_alias("alias/same"))
    app.save(_alias("alias/other"))


# --- stateful: any command sequence replays to the same state ------------------------------------------

tag_keys = st.one_of(st.sampled_from(["a", "b", "c", "Env", "aws:x", "AWS:y"]), st.text(min_size=1, max_size=6))
tag_values = st.text(max_size=6)


class KeyCommands(RuleBasedStateMachine):
    """Random command sequences on one key. After each step: the key equals its rebuilt self (popo
    Application save + repository.get, and a fold of all events), it is in Enabled/Disabled/PendingDeletion,
    and it agrees with a small model written from the AWS rules; refused commands leave no trace."""

    @initialize(tags=st.dictionaries(st.sampled_from(["a", "b", "c"]), tag_values, max_size=3))
    def create(self, tags):
        self.step = 0
        self.key, _ = new_key(tags=tags)
        self.app = popo_app()
        self.events = list(self.key.pending_events)
        self.model = {"state": ENABLED, "tags": dict(tags), "description": "test key",
                      "policy": self.key.policy, "deletion_date": None, "version": 1}

    def _now(self) -> datetime:
        self.step += 1
        return at(self.step)

    def _run(self, command: Callable[[], Any], refusal: type[KmsError] | tuple | None, events: int) -> bool:
        """Runs a command. ``refusal`` is the error the model expects (None: succeeds), ``events`` the number
        of events a success adds."""
        version, before = self.key.version, copy.deepcopy(state_of(self.key))
        pending = list(self.key.pending_events)
        try:
            command()
        except KmsError as error:
            assert refusal is not None, f"unexpected {type(error).__name__}: {error}"
            allowed = refusal if isinstance(refusal, tuple) else (refusal,)
            assert type(error) in allowed, f"{type(error).__name__}, expected {allowed}"
            assert self.key.version == version
            assert self.key.pending_events == pending
            assert state_of(self.key) == before
            return False
        assert refusal is None, f"expected {refusal}"
        assert self.key.version == version + events
        new = self.key.pending_events[len(pending):]
        assert len(new) == events
        assert [e.originator_version for e in new] == list(range(version + 1, version + events + 1))
        self.events.extend(new)
        self.model["version"] += events
        return True

    @rule()
    def enable(self):
        state = self.model["state"]
        refused = InvalidStateError if state == PENDING_DELETION else None
        if self._run(lambda: self.key.enable(self._now()), refused, 0 if state == ENABLED else 1):
            self.model["state"] = ENABLED

    @rule()
    def disable(self):
        state = self.model["state"]
        refused = InvalidStateError if state == PENDING_DELETION else None
        if self._run(lambda: self.key.disable(self._now()), refused, 0 if state == DISABLED else 1):
            self.model["state"] = DISABLED

    @rule(description=st.text(max_size=20))
    def update_description(self, description):
        refused = InvalidStateError if self.model["state"] == PENDING_DELETION else None
        if self._run(lambda: self.key.update_description(description, self._now()), refused, 1):
            self.model["description"] = description

    @rule(policy=st.text(max_size=20))
    def put_policy(self, policy):
        if self._run(lambda: self.key.put_policy("default", policy, self._now()), None, 1):
            self.model["policy"] = policy

    @rule(tags=st.dictionaries(tag_keys, tag_values, max_size=4))
    def tag(self, tags):
        merged = {**self.model["tags"], **tags}
        if self.model["state"] == PENDING_DELETION:
            refused = InvalidStateError
        elif any(k.lower().startswith("aws:") for k in tags):
            refused = TagError
        elif len(merged) > 50:
            refused = LimitExceededError
        else:
            refused = None
        if self._run(lambda: self.key.tag(tags, self._now()), refused, 1):
            self.model["tags"] = merged

    @rule(keys=st.lists(st.sampled_from(["a", "b", "c", "Env", "zz"]), max_size=3))
    def untag(self, keys):
        refused = InvalidStateError if self.model["state"] == PENDING_DELETION else None
        if self._run(lambda: self.key.untag(keys, self._now()), refused, 1):
            self.model["tags"] = {k: v for k, v in self.model["tags"].items() if k not in keys}

    @rule(days=st.one_of(st.none(), st.integers(min_value=0, max_value=40)))
    def schedule_deletion(self, days):
        effective = 30 if days is None else days
        in_range = 7 <= effective <= 30
        if self.model["state"] == PENDING_DELETION:
            refused = InvalidStateError if in_range else (InvalidStateError, ValidationError)
        else:
            refused = None if in_range else ValidationError
        now = self._now()
        if self._run(lambda: self.key.schedule_deletion(days, now), refused, 1):
            self.model["state"] = PENDING_DELETION
            self.model["deletion_date"] = now + timedelta(days=effective)

    @rule()
    def cancel_deletion(self):
        refused = None if self.model["state"] == PENDING_DELETION else InvalidStateError
        if self._run(lambda: self.key.cancel_deletion(self._now()), refused, 1):
            self.model["state"] = DISABLED
            self.model["deletion_date"] = None

    @invariant()
    def state_is_a_lifecycle_state(self):
        assert self.key.state in (ENABLED, DISABLED, PENDING_DELETION)

    @invariant()
    def agrees_with_model(self):
        assert self.key.state == self.model["state"]
        assert self.key.tags == self.model["tags"]
        assert self.key.description == self.model["description"]
        assert self.key.policy == self.model["policy"]
        assert self.key.deletion_date == self.model["deletion_date"]
        assert self.key.version == self.model["version"]
        meta = self.key.metadata()
        assert meta["KeyState"] == self.model["state"]
        assert meta["Enabled"] is (self.model["state"] == ENABLED)

    @invariant()
    def rebuilt_state_equals_live_state(self):
        # A fold of every event so far.
        assert state_of(rebuilt_by_mutate(self.events)) == state_of(self.key)
        # Through the event store: save what is new, load the key back from its stored events.
        self.app.save(self.key)
        assert self.key.pending_events == []
        loaded = self.app.repository.get(self.key.id)
        assert loaded == self.key
        assert loaded.metadata() == self.key.metadata()


TestKeyCommands = KeyCommands.TestCase
TestKeyCommands.settings = settings(max_examples=60, stateful_step_count=25, deadline=None,
                                    suppress_health_check=[HealthCheck.too_slow])
