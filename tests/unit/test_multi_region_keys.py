"""Multi-Region keys (decisions 155-164): the Key aggregate's multi-Region events and state transitions, driven
through its commands; then the services on a real SQLite file (tests/unit/test_point_in_time.py's World): point in
time and replay of a replica, a replica made again after deletion, and ListAliases' predefined aliases."""
from __future__ import annotations

import json
import os
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Iterator

import pytest

from domain.errors import (
    AccessDeniedError,
    AlreadyExistsError,
    DisabledError,
    IncorrectKeyMaterialError,
    InvalidStateError,
    UnsupportedOperationError,
    ValidationError,
)
from domain.identifiers import Scope, key_storage_id, new_multi_region_key_id
from domain.keys.import_events import KEY_MATERIAL_DOES_NOT_EXPIRE, NEW_KEY_MATERIAL, PENDING_ROTATION
from domain.keys.key import Key
from domain.keys.material import Material, new_material_id, new_symmetric_material
from domain.keys.states import KeyState
from domain.policy.default_policy import default_key_policy
from projections import replay
from tests.calls import api_call
from tests.unit.test_domain_key import at, popo_app
from tests.unit.test_point_in_time import SCOPE, World, fold

US, EU, AP = "us-east-1", "eu-west-1", "ap-southeast-2"
SERVED = (US, EU, AP)
EU_SCOPE, AP_SCOPE = Scope(SCOPE.account_id, EU), Scope(SCOPE.account_id, AP)


def primary(origin: str = "AWS_KMS") -> Key:
    key_id = new_multi_region_key_id()
    material = new_symmetric_material() if origin == "AWS_KMS" else None
    return Key.create(key_id=uuid.UUID(key_storage_id(key_id, US)), scope=SCOPE, at=at(0),
                      key_spec="SYMMETRIC_DEFAULT", key_usage="ENCRYPT_DECRYPT", origin=origin, description="p",
                      policy=default_key_policy(SCOPE.account_id), tags={},
                      material_id=material.material_id if material else None,
                      commitment=material.commitment(key_id) if material else None, multi_region_key_id=key_id)


def replicate(key: Key, region: str, step: int = 1) -> Key:
    key.replicate(region, SERVED, at(step))
    return Key.replicate_from(key, storage_id=uuid.UUID(key_storage_id(key.key_id, region)), region=region,
                              at=at(step), description=f"in {region}", policy=key.policy, tags={"site": region})


def test_a_replica_shares_id_material_and_configuration_and_keeps_its_own_properties() -> None:
    key = primary()
    replica = replicate(key, EU)
    assert key.key_id.startswith("mrk-") and replica.key_id == key.key_id and replica.storage_id != key.storage_id
    assert replica.arn == key.arn.replace(US, EU)
    assert (replica.current_material_id, replica.materials) == (key.current_material_id, key.materials)
    assert (replica.description, replica.tags, replica.key_state) == (f"in {EU}", {"site": EU}, KeyState.ENABLED)
    assert key.is_multi_region_primary and replica.is_replica and not replica.is_multi_region_primary
    config = replica.metadata()["MultiRegionConfiguration"]
    assert config["MultiRegionKeyType"] == "REPLICA" and config["PrimaryKey"]["Region"] == US
    assert config["ReplicaKeys"] == key.metadata()["MultiRegionConfiguration"]["ReplicaKeys"]
    assert [r["Region"] for r in config["ReplicaKeys"]] == [EU]
    # The events round-trip through an event store: the replica's first event carries what it starts from.
    app = popo_app()
    app.save(key, replica)
    assert app.repository.get(replica.id).metadata() == replica.metadata()


def test_replicate_refuses_what_aws_refuses() -> None:
    key = primary()
    replica = replicate(key, EU)
    with pytest.raises(UnsupportedOperationError, match="not a multi-Region primary key"):
        replica.replicate(AP, SERVED, at(2))
    with pytest.raises(AlreadyExistsError):
        key.replicate(EU, SERVED, at(2))
    with pytest.raises(ValidationError, match="different Region"):
        key.replicate(US, SERVED, at(2))
    with pytest.raises(ValidationError, match="serves"):
        key.replicate("me-south-1", SERVED, at(2))
    key.disable(at(3))
    with pytest.raises(DisabledError):
        key.replicate(AP, SERVED, at(4))


def test_rotation_of_the_primary_is_taken_by_each_replica_and_replicas_refuse_it() -> None:
    key = primary()
    replica = replicate(key, EU)
    key.enable_rotation(90, at(2))
    material = new_symmetric_material()
    key.rotate_on_demand(material.material_id, material.commitment(key.key_id), at(3))
    for event in key.shared_changes():
        replica.mirror(event)
    assert (replica.rotation_enabled, replica.rotation_period_days) == (True, 90)
    assert replica.current_material_id == key.current_material_id == material.material_id
    assert replica.on_demand_rotations == key.on_demand_rotations == 1
    for command in (lambda: replica.enable_rotation(None, at(4)), lambda: replica.disable_rotation(at(4)),
                    lambda: replica.rotate_on_demand(material.material_id, "", at(4))):
        with pytest.raises(UnsupportedOperationError, match="replica key"):
            command()
    far = at(0) + timedelta(days=400)
    assert key.is_due_for_rotation(far) and not replica.is_due_for_rotation(far)


def test_a_primary_with_replicas_waits_for_them_before_its_waiting_period() -> None:
    key = primary()
    replicate(key, EU)
    replicate(key, AP, 2)
    key.schedule_deletion(7, at(3))
    meta = key.metadata()
    assert key.key_state is KeyState.PENDING_REPLICA_DELETION and "DeletionDate" not in meta
    assert meta["PendingDeletionWindowInDays"] == 7 and meta["Enabled"] is False
    with pytest.raises(InvalidStateError, match="pending replica deletion"):
        key.replicate("eu-central-1", (*SERVED, "eu-central-1"), at(4))
    key.cancel_deletion(at(4))
    assert key.key_state is KeyState.DISABLED and key.pending_window_days is None
    key.schedule_deletion(7, at(5))
    key.forget_replica(EU, at(6))
    assert key.key_state is KeyState.PENDING_REPLICA_DELETION
    key.forget_replica(AP, at(7))
    assert key.key_state is KeyState.PENDING_DELETION and key.deletion_date == at(7) + timedelta(days=7)
    assert "PendingDeletionWindowInDays" not in key.metadata()
    key.cancel_deletion(at(8))
    assert key.key_state is KeyState.DISABLED  # canceled from PendingDeletion too: Disabled, as AWS answers
    lone = primary()
    lone.schedule_deletion(None, at(1))
    assert lone.key_state is KeyState.PENDING_DELETION and lone.pending_window_days == 30


def test_update_primary_region_swaps_the_roles_on_every_related_key() -> None:
    key = primary()
    eu, ap = replicate(key, EU), replicate(key, AP, 2)
    ap.learn_replica(AP, at(2))  # what ReplicateKey tells keys made before (idempotent for the new one)
    eu.learn_replica(AP, at(2))
    for related in (key, eu, ap):
        related.update_primary_region(EU, at(3))
    assert eu.is_multi_region_primary and key.is_replica and ap.is_replica
    for related in (key, eu, ap):
        config = related.multi_region_configuration()
        assert config["PrimaryKey"]["Region"] == EU and [r["Region"] for r in config["ReplicaKeys"]] == [AP, US]
    with pytest.raises(UnsupportedOperationError):
        key.enable_rotation(None, at(4))
    eu.enable_rotation(None, at(4))


def _import(key: Key, secret: bytes, step: int, import_type: str | None = None) -> str:
    return key.import_material(Material(new_material_id(), secret), os.urandom(16).hex(), None,
                               KEY_MATERIAL_DOES_NOT_EXPIRE, at(step), import_type=import_type)


def test_a_replica_of_imported_material_takes_only_its_primarys_material() -> None:
    key = primary("EXTERNAL")
    secret = os.urandom(32)
    material_id = _import(key, secret, 1)
    replica = replicate(key, EU, 2)
    assert replica.key_state is KeyState.PENDING_IMPORT and replica.designated_material_id == material_id
    assert not replica.material(material_id)["present"]
    with pytest.raises(UnsupportedOperationError, match="cannot import new key material"):
        _import(replica, os.urandom(32), 3, NEW_KEY_MATERIAL)
    with pytest.raises(IncorrectKeyMaterialError):
        _import(replica, os.urandom(32), 3)
    assert _import(replica, secret, 4) == material_id
    assert replica.key_state is KeyState.ENABLED and replica.current_material_id == material_id
    # New material for on-demand rotation: the primary's is PENDING_ROTATION; each replica learns it, then takes it.
    later = os.urandom(32)
    pending_id = _import(key, later, 5, NEW_KEY_MATERIAL)
    replica.expect_material(pending_id, key.material(pending_id)["commitment"], True, at(5))
    assert replica.material_state(replica.material(pending_id)) == PENDING_ROTATION
    assert replica.current_material_id == material_id
    assert _import(replica, later, 6) == pending_id and replica.material(pending_id)["present"]
    key.rotate_on_demand(None, None, at(7))
    for event in key.shared_changes():
        replica.mirror(event)
    assert replica.current_material_id == key.current_material_id == pending_id


# -- the services, on a real SQLite file -------------------------------------------------------------------

@pytest.fixture
def w(tmp_path: Path) -> Iterator[World]:
    with World(tmp_path) as instance:
        yield instance


def test_point_in_time_and_replay_cover_a_replica(w: World) -> None:
    key_id = w.create_key(multi_region=True, description="primary")
    before_replica = w.mark(60)
    w.do("multi_region.replicate_key", key_id, EU, description="replica", tags={"site": "eu"})
    replicated = w.mark(60)
    w.do("keys.tag_resource", key_id, {"later": "yes"}, scope=EU_SCOPE)
    w.do("rotation.rotate_key_on_demand", key_id)
    w.do("multi_region.update_primary_region", key_id, EU)
    moved = w.mark(60)
    stored = key_storage_id(key_id, EU)
    for moment in (replicated, moved):
        answer = w.history.key_at(EU_SCOPE, key_id, moment)
        assert answer["KeyMetadata"] == fold(w, uuid.UUID(stored), moment).metadata()
    assert w.history.key_at(EU_SCOPE, key_id, replicated)["Tags"] == [{"TagKey": "site", "TagValue": "eu"}]
    assert w.history.key_at(EU_SCOPE, key_id, moved)["KeyMetadata"]["MultiRegionConfiguration"][
        "MultiRegionKeyType"] == "PRIMARY"
    with pytest.raises(Exception, match="did not exist"):
        w.history.key_at(EU_SCOPE, key_id, before_replica)
    # The same key id in two Regions: the history keeps them apart.
    at_now = {(a["KeyMetadata"]["Arn"], a["KeyMetadata"]["MultiRegionConfiguration"]["MultiRegionKeyType"])
              for a in w.history.keys_at(moved) if a["KeyMetadata"]["KeyId"] == key_id}
    assert at_now == {(SCOPE.key_arn(key_id), "REPLICA"), (EU_SCOPE.key_arn(key_id), "PRIMARY")}
    timeline = w.history.timeline(EU_SCOPE.key_arn(key_id))
    assert [e["EventType"] for e in timeline][:1] == ["ReplicaCreated"] and timeline[0]["EventName"] == "ReplicateKey"
    assert "PrimaryRegionUpdated" in [e["EventType"] for e in timeline]
    assert replay.rebuild(w.rt.ledger, w.engine, "replay_").events > 0
    assert replay.compare(w.engine, "", "replay_") == []
    target = f"sqlite:///{w.data_dir / 'past.db'}"
    replay.rebuild_until(w.rt.ledger, replicated, target)
    import sqlalchemy as sa

    engine = sa.create_engine(target)
    try:
        assert replay.differences_from_answers(engine, w.history.keys_at(replicated)) == []
    finally:
        engine.dispose()


def test_a_deleted_replica_can_be_made_again_and_old_ciphertext_still_decrypts(w: World) -> None:
    key_id = w.create_key(multi_region=True)
    blob = w.do("crypto.encrypt", key_id, b"kept")["CiphertextBlob"]
    w.do("multi_region.replicate_key", key_id, EU, tags={"first": "life"})
    w.do("keys.schedule_key_deletion", key_id, 7, scope=EU_SCOPE)
    w.advance(8 * 86400)
    w.maintain()
    assert w.do("keys.describe_key", key_id)["KeyMetadata"]["MultiRegionConfiguration"]["ReplicaKeys"] == []
    again = w.do("multi_region.replicate_key", key_id, EU, description="second life")
    assert again["ReplicaKeyMetadata"]["KeyState"] == "Enabled" and again["ReplicaTags"] == []
    assert w.do("crypto.decrypt", blob, scope=EU_SCOPE)["Plaintext"] == b"kept"
    assert w.do("keys.list_resource_tags", key_id, None, None, scope=EU_SCOPE)["Tags"] == []


def test_list_aliases_shows_predefined_aliases_until_their_key_is_made(w: World) -> None:
    listed = w.do("aliases.list_aliases", None, None, None)["Aliases"]
    predefined = {a["AliasName"]: a for a in listed if a["AliasName"].startswith("alias/aws/")}
    assert predefined["alias/aws/s3"] == {"AliasName": "alias/aws/s3", "AliasArn": SCOPE.alias_arn("alias/aws/s3")}
    key_id = w.do("keys.describe_key", "alias/aws/s3")["KeyMetadata"]["KeyId"]  # first use makes the key
    pages, marker = [], None
    while True:
        page = w.do("aliases.list_aliases", None, 3, marker)
        pages += page["Aliases"]
        if not page["Truncated"]:
            break
        marker = page["NextMarker"]
    names = [a["AliasName"] for a in pages]
    assert names == sorted(set(names)) and set(predefined) <= set(names)
    s3 = next(a for a in pages if a["AliasName"] == "alias/aws/s3")
    assert s3["TargetKeyId"] == key_id and "CreationDate" in s3
    assert w.do("aliases.list_aliases", key_id, None, None)["Aliases"][0]["AliasName"] == "alias/aws/s3"


def test_condition_keys_of_multi_region_keys(w: World) -> None:
    """kms:ReplicaRegion on ReplicateKey, kms:MultiRegion and kms:MultiRegionKeyType on every key operation."""
    root = f"arn:aws:iam::{SCOPE.account_id}:root"

    def policy(deny: dict) -> str:
        return json.dumps({"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Principal": {"AWS": root}, "Action": "kms:*", "Resource": "*"},
            {"Effect": "Deny", "Principal": {"AWS": root}, "Resource": "*", **deny}]})

    key_id = w.create_key(multi_region=True, policy=policy({"Action": "kms:ReplicateKey", "Condition": {
        "StringEquals": {"kms:ReplicaRegion": AP}}}))
    replicate_to_ap = api_call("ReplicateKey", root, SCOPE, at=w.now(),
                               parameters={"KeyId": key_id, "ReplicaRegion": AP})  # as the pipeline parses it
    with pytest.raises(AccessDeniedError):
        w.rt.services.multi_region.replicate_key(replicate_to_ap, key_id, AP)
    w.do("multi_region.replicate_key", key_id, EU, policy=policy({"Action": "kms:Encrypt", "Condition": {
        "StringEquals": {"kms:MultiRegionKeyType": "REPLICA"}, "Bool": {"kms:MultiRegion": "true"}}}))
    w.do("crypto.encrypt", key_id, b"primary")
    with pytest.raises(AccessDeniedError):
        w.do("crypto.encrypt", key_id, b"replica", scope=EU_SCOPE)
