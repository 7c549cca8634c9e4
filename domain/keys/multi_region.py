"""Multi-Region keys (docs/decisions.md 155-164): related keys in several Regions of one partition that share a key
id (mrk- and 32 hex digits), key material, key spec, key usage, origin and rotation; policy, tags, aliases,
description, grants and key state are each key's own.

Each Region's key is an aggregate of its own, stored under an id derived from (Region, key id). What one key does
to the set is an event on every related key, committed together: the primary's ``Replicated`` and the replica's
``ReplicaCreated`` (its first event: the shared properties it starts from, and the materials it shares, by id and
commitment; the bytes are copied in the same transaction and never appear in an event). Another deployment serving
a Region could consume those events and fetch the material over its own channel: nothing here reads across Regions.
"""
from __future__ import annotations

import copy
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from eventsourcing.domain import Aggregate

from domain.errors import AlreadyExistsError, UnsupportedOperationError, ValidationError, shown
from domain.identifiers import Scope
from domain.keys.specs import ORIGIN_EXTERNAL
from domain.keys.states import KeyState

if TYPE_CHECKING:
    from domain.keys.key import Key

PRIMARY, REPLICA = "PRIMARY", "REPLICA"


def shared_state(key: Any) -> dict[str, Any]:
    """The properties a new replica starts from (ReplicaCreated's fields beyond Created's). A replica of a key with
    imported material knows the materials by id and commitment only: it takes each when the same material is
    imported into it (the CURRENT one first)."""
    external = key.origin == ORIGIN_EXTERNAL
    materials = []
    for record in key.materials:
        record = copy.deepcopy(record)
        if external:
            record.update(present=False, valid_to=None, expiration_model=None)
        materials.append(record)
    return {
        "rotation_enabled": key.rotation_enabled, "rotation_period_days": key.rotation_period_days,
        "next_rotation_date": key.next_rotation_date, "on_demand_rotations": key.on_demand_rotations,
        "rotation_anchor": getattr(key, "rotation_anchor", None),
        "materials": materials,
        "current_material_id": None if external else key.current_material_id,
        "lost_current_material_id": key.designated_material_id if external else None,
    }


def apply_shared(key: Any, *, primary_region: str, replica_regions: list[str], rotation_enabled: bool,
                 rotation_period_days: int | None, next_rotation_date: datetime | None, on_demand_rotations: int,
                 materials: list[dict[str, Any]], current_material_id: str | None,
                 lost_current_material_id: str | None, rotation_anchor: datetime | None = None) -> None:
    key.multi_region = True
    key.primary_region = primary_region
    key.replica_regions = sorted(replica_regions)
    key.rotation_enabled = rotation_enabled
    key.rotation_period_days = rotation_period_days
    key.next_rotation_date = next_rotation_date
    key.rotation_anchor = rotation_anchor  # a replica made primary later counts its rotation period from it
    key.on_demand_rotations = on_demand_rotations
    key.materials = copy.deepcopy(materials)
    key.current_material_id = current_material_id
    key.lost_current_material_id = lost_current_material_id
    if key.origin == ORIGIN_EXTERNAL:
        key.state = KeyState.PENDING_IMPORT.value


class MultiRegionKey:
    """Multi-Region events and commands of the Key aggregate."""

    class Replicated(Aggregate.Event):
        """The set gained a replica in ``replica_region``: on the primary (the ReplicateKey it answered) and on
        every other related key, so each one's MultiRegionConfiguration lists it."""

        replica_region: str

        def apply(self, key: Any) -> None:
            key.replica_regions = sorted({*key.replica_regions, self.replica_region})

    class ReplicaRemoved(Aggregate.Event):
        """The replica in ``replica_region`` was deleted (its waiting period ended)."""

        replica_region: str

        def apply(self, key: Any) -> None:
            key.replica_regions = [r for r in key.replica_regions if r != self.replica_region]

    class PrimaryRegionUpdated(Aggregate.Event):
        """UpdatePrimaryRegion, on every related key: the primary is now in ``primary_region``."""

        primary_region: str
        replica_regions: list[str]

        def apply(self, key: Any) -> None:
            key.primary_region = self.primary_region
            key.replica_regions = sorted(self.replica_regions)

    class ReplicaDeletionAwaited(Aggregate.Event):
        """ScheduleKeyDeletion of a primary that has replicas: PendingReplicaDeletion; the waiting period of
        ``pending_window_days`` starts when the last replica is deleted."""

        pending_window_days: int

        def apply(self, key: Any) -> None:
            key.state_before_deletion = key.state
            key.state = KeyState.PENDING_REPLICA_DELETION.value
            key.deletion_date = None
            key.pending_window_days = self.pending_window_days

    class ReplicaMaterialExpected(Aggregate.Event):
        """The primary took imported material (by id and commitment): this replica takes it when the same
        material is imported into it. ``pending_rotation``: new material for on-demand rotation."""

        material_id: str
        commitment: str
        pending_rotation: bool

        def apply(self, key: Any) -> None:
            from domain.keys.material import material_record

            if key.material(self.material_id) is None:
                record = material_record(self.material_id, self.commitment, self.timestamp, imported=True)
                record.update(present=False, pending_rotation=self.pending_rotation)
                key.materials.append(record)
            if not self.pending_rotation and key.designated_material_id is None:
                key.lost_current_material_id = self.material_id

    # -- reading ---------------------------------------------------------------------------------

    @property
    def is_multi_region_primary(self: Key) -> bool:
        return bool(self.multi_region) and getattr(self, "primary_region", None) == self.region

    @property
    def is_replica(self: Key) -> bool:
        return bool(self.multi_region) and getattr(self, "primary_region", None) not in (None, self.region)

    def related_regions(self: Key) -> list[str]:
        """Every Region of the set but this key's own."""
        if not self.multi_region:
            return []
        return sorted({self.primary_region, *self.replica_regions} - {self.region})

    def arn_in(self: Key, region: str) -> str:
        return Scope(self.account_id, region, self.partition).key_arn(self.key_id)

    def multi_region_configuration(self: Key) -> dict[str, Any]:
        return {
            "MultiRegionKeyType": PRIMARY if self.is_multi_region_primary else REPLICA,
            "PrimaryKey": {"Arn": self.arn_in(self.primary_region), "Region": self.primary_region},
            "ReplicaKeys": [{"Arn": self.arn_in(r), "Region": r} for r in self.replica_regions],
        }

    def require_primary(self: Key) -> None:
        if not self.is_multi_region_primary:
            raise UnsupportedOperationError(f"{self.arn} is not a multi-Region primary key.")

    def refuse_on_replica(self: Key, what: str) -> None:
        """Shared properties are changed on the primary only (AWS: "You manage automatic key rotation only on the
        primary key")."""
        if self.is_replica:
            raise UnsupportedOperationError(
                f"{self.arn} is a multi-Region replica key: {what} only on its primary key "
                f"{self.arn_in(self.primary_region)}, which changes every related key.")

    # -- commands --------------------------------------------------------------------------------

    def replicate(self: Key, replica_region: str, served: tuple[str, ...] | list[str], at: datetime) -> None:
        """ReplicateKey on the primary: checks, then ``Replicated``. The caller creates the replica and tells the
        other related keys."""
        self.require("ReplicateKey")
        self.require_primary()
        if replica_region not in served:
            raise ValidationError(f"ReplicaRegion '{shown(replica_region)}' is not a Region this keyledger serves "
                                  f"(KEYLEDGER_REGIONS): {', '.join(served)}.")
        if replica_region == self.region:
            raise ValidationError(f"ReplicaRegion {replica_region} is the primary key's own Region: a replica must be "
                                  "in a different Region.")
        if replica_region in self.replica_regions:
            raise AlreadyExistsError(f"{self.arn_in(replica_region)} already exists: {self.arn} has a replica in "
                                     f"{replica_region}.")
        self.trigger_event(self.Replicated, timestamp=at, replica_region=replica_region)

    def learn_replica(self: Key, replica_region: str, at: datetime) -> None:
        self.trigger_event(self.Replicated, timestamp=at, replica_region=replica_region)

    def forget_replica(self: Key, replica_region: str, at: datetime) -> None:
        """A replica was deleted. A primary pending replica deletion that has none left starts its waiting period."""
        if replica_region not in self.replica_regions:
            return
        self.trigger_event(self.ReplicaRemoved, timestamp=at, replica_region=replica_region)
        if self.key_state is KeyState.PENDING_REPLICA_DELETION and not self.replica_regions:
            days = self.pending_window_days or 30
            self.trigger_event(self.DeletionScheduled, timestamp=at, deletion_date=at + timedelta(days=days),
                               pending_window_days=days)

    def update_primary_region(self: Key, primary_region: str, at: datetime) -> None:
        """On every related key: the set's primary is now the key in ``primary_region``."""
        old_primary = self.primary_region
        replicas = sorted({*self.replica_regions, old_primary} - {primary_region})
        self.trigger_event(self.PrimaryRegionUpdated, timestamp=at, primary_region=primary_region,
                           replica_regions=replicas)

    def expect_material(self: Key, material_id: str, commitment: str, pending_rotation: bool, at: datetime) -> None:
        self.trigger_event(self.ReplicaMaterialExpected, timestamp=at, material_id=material_id,
                           commitment=commitment, pending_rotation=pending_rotation)

    # Events of the primary that change a shared property: each related key takes the same event (decision 158).
    MIRRORED = ("RotationEnabled", "RotationDisabled", "MaterialRotated", "ImportedMaterialRotated")

    def mirror(self: Key, event: Any) -> None:
        """Takes the primary's ``event`` (one of MIRRORED) as its own: the same change, in this Region."""
        name = type(event).__name__
        assert name in MultiRegionKey.MIRRORED, name
        skip = {"originator_id", "originator_version", "timestamp", "originator_topic"}
        fields = {k: v for k, v in event.__dict__.items() if k not in skip}
        self.trigger_event(getattr(type(self), name), timestamp=event.timestamp, **copy.deepcopy(fields))

    def shared_changes(self: Key) -> list[Any]:
        """This key's pending events that every related key must take too."""
        return [e for e in self.pending_events if type(e).__name__ in MultiRegionKey.MIRRORED]
