"""The Key aggregate: every change to a KMS key is one of these events; its state is their replay.

No event or snapshot ever holds key material: events name material by a random 16-byte id (hex) and a
commitment that lets the service recognise the same material again without storing it.
"""
from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Mapping
from uuid import UUID

from eventsourcing.domain import Aggregate

from domain.errors import ValidationError
from domain.identifiers import Scope
from domain.keys.grants import GrantableKey
from domain.keys.import_events import ImportableKey
from domain.keys.material import key_material_id, material_record
from domain.keys.multi_region import MultiRegionKey, apply_shared
from domain.keys.rotation import RotatableKey
from domain.keys.specs import ORIGIN_AWS_CLOUDHSM, ORIGIN_AWS_KMS, ORIGIN_EXTERNAL_KEY_STORE
from domain.keys.states import KeyState, require_state
from domain.keys.tags import merged_tags, validate_tag_keys

MIN_PENDING_WINDOW_DAYS, MAX_PENDING_WINDOW_DAYS, DEFAULT_PENDING_WINDOW_DAYS = 7, 30, 30

__all__ = ["Key", "key_material_id"]

_SHARED_FIELDS = ("primary_region", "replica_regions", "rotation_enabled", "rotation_period_days",
                  "next_rotation_date", "on_demand_rotations", "materials", "current_material_id",
                  "lost_current_material_id", "rotation_anchor")


def _shared_fields(event: Any) -> dict[str, Any]:
    return {name: getattr(event, name, None) for name in _SHARED_FIELDS}


class Key(MultiRegionKey, RotatableKey, ImportableKey, GrantableKey, Aggregate):
    class Created(Aggregate.Created):
        account_id: str
        region: str
        partition: str
        key_spec: str
        key_usage: str
        origin: str
        description: str
        policy: str
        tags: dict[str, str]
        material_id: str | None
        commitment: str | None
        multi_region: bool
        custom_key_store_id: str | None  # origin AWS_CLOUDHSM: the store whose token holds the material
        cloud_hsm_cluster_id: str | None
        xks_key_id: str | None  # origin EXTERNAL_KEY_STORE: the external key in the store's XKS proxy
        # A multi-Region key's mrk- id (its aggregate id is derived from it and the Region); absent: the id is the
        # aggregate's (events stored before multi-Region keys have neither this nor the replica fields).
        public_key_id: str | None

    class ReplicaCreated(Created):
        """ReplicateKey made this key, a replica, from the primary in ``primary_region``: the shared properties it
        starts from. The materials are named by id and commitment; their bytes were copied with this event."""

        primary_region: str
        replica_regions: list[str]
        rotation_enabled: bool
        rotation_period_days: int | None
        next_rotation_date: datetime | None
        on_demand_rotations: int
        materials: list[dict[str, Any]]
        current_material_id: str | None
        lost_current_material_id: str | None
        rotation_anchor: datetime | None

        def apply(self, key: Key) -> None:
            apply_shared(key, **_shared_fields(self))

    class ReplicaRecreated(Aggregate.Event):
        """ReplicateKey into a Region whose earlier replica of this key was deleted: the same aggregate starts a
        new life with the fields of a ReplicaCreated (AWS lets a deleted replica be made again)."""

        description: str
        policy: str
        tags: dict[str, str]
        primary_region: str
        replica_regions: list[str]
        rotation_enabled: bool
        rotation_period_days: int | None
        next_rotation_date: datetime | None
        on_demand_rotations: int
        materials: list[dict[str, Any]]
        current_material_id: str | None
        lost_current_material_id: str | None
        rotation_anchor: datetime | None

        def apply(self, key: Key) -> None:
            vars(key).pop("_grants", None)
            key.description, key.policy, key.tags = self.description, self.policy, dict(self.tags)
            key.state = KeyState.ENABLED.value
            key.state_before_deletion = key.deletion_date = key.pending_window_days = None
            key.import_parameters = key.imported_expiration_model = None
            apply_shared(key, **_shared_fields(self))

    class Enabled(Aggregate.Event):
        def apply(self, key: Key) -> None:
            key.state = KeyState.ENABLED.value

    class Disabled(Aggregate.Event):
        def apply(self, key: Key) -> None:
            key.state = KeyState.DISABLED.value

    class DescriptionUpdated(Aggregate.Event):
        description: str

        def apply(self, key: Key) -> None:
            key.description = self.description

    class PolicyPut(Aggregate.Event):
        policy_name: str
        policy: str

        def apply(self, key: Key) -> None:
            key.policy = self.policy

    class Tagged(Aggregate.Event):
        tags: dict[str, str]

        def apply(self, key: Key) -> None:
            key.tags = {**key.tags, **self.tags}

    class Untagged(Aggregate.Event):
        tag_keys: list[str]

        def apply(self, key: Key) -> None:
            key.tags = {k: v for k, v in key.tags.items() if k not in self.tag_keys}

    class DeletionScheduled(Aggregate.Event):
        deletion_date: datetime
        pending_window_days: int

        def apply(self, key: Key) -> None:
            if key.state != KeyState.PENDING_REPLICA_DELETION.value:  # else: kept from ReplicaDeletionAwaited
                key.state_before_deletion = key.state
            key.state = KeyState.PENDING_DELETION.value
            key.deletion_date = self.deletion_date
            key.pending_window_days = self.pending_window_days

    class DeletionCanceled(Aggregate.Event):
        def apply(self, key: Key) -> None:
            # AWS: a canceled deletion leaves the key Disabled; a key without material stays PendingImport.
            key.state = (KeyState.PENDING_IMPORT if key.state_before_deletion == KeyState.PENDING_IMPORT.value
                         else KeyState.DISABLED).value
            key.deletion_date = None
            key.pending_window_days = None

    class AwsManaged(Aggregate.Event):
        """Made by keyledger for an AWS service (alias/aws/<service>): KeyManager AWS (decision 91)."""

        service: str

        def apply(self, key: Key) -> None:
            key.key_manager = "AWS"
            key.managed_for = self.service

    class Deleted(Aggregate.Event):
        """The waiting period ended: the backing-key rows were removed in this event's transaction."""

        def apply(self, key: Key) -> None:
            key.state = KeyState.DELETED.value
            key.current_material_id = None
            for material in key.materials:
                material["present"] = False

    def __init__(self, *, account_id: str, region: str, partition: str, key_spec: str, key_usage: str,
                 origin: str, description: str, policy: str, tags: dict[str, str], material_id: str | None,
                 commitment: str | None, multi_region: bool, custom_key_store_id: str | None = None,
                 cloud_hsm_cluster_id: str | None = None, public_key_id: str | None = None,
                 xks_key_id: str | None = None) -> None:
        self.account_id = account_id
        self.region = region
        self.partition = partition
        self.key_spec = key_spec
        self.key_usage = key_usage
        self.origin = origin
        self.description = description
        self.policy = policy
        self.tags = dict(tags)
        self.multi_region = multi_region
        self.public_key_id = public_key_id
        # A multi-Region key's primary Region and its replicas' Regions (decision 155); a replica's are set by
        # ReplicaCreated. Absent from snapshots taken before multi-Region keys: read with getattr.
        self.primary_region: str | None = region if multi_region else None
        self.replica_regions: list[str] = []
        self.key_manager = "CUSTOMER"  # snapshots from before AWS managed keys lack it: read with getattr
        # Events stored before custom key stores lack these: the defaults above apply to them.
        self.custom_key_store_id = custom_key_store_id
        self.cloud_hsm_cluster_id = cloud_hsm_cluster_id
        self.xks_key_id = xks_key_id
        self.state = (KeyState.ENABLED if origin in (ORIGIN_AWS_KMS, ORIGIN_AWS_CLOUDHSM, ORIGIN_EXTERNAL_KEY_STORE)
                      else KeyState.PENDING_IMPORT).value
        self.state_before_deletion: str | None = None
        self.current_material_id = material_id
        self.lost_current_material_id: str | None = None  # the CURRENT material while it is deleted or expired
        self.materials: list[dict[str, Any]] = []
        if material_id:
            self.materials.append(material_record(material_id, commitment or "", self.created_on, imported=False))
        self.deletion_date: datetime | None = None
        self.pending_window_days: int | None = None
        self.rotation_enabled = False
        self.rotation_period_days: int | None = None
        self.next_rotation_date: datetime | None = None
        self.on_demand_rotations = 0
        self.rotation_anchor: datetime | None = None
        self.import_parameters: dict[str, Any] | None = None
        self.imported_expiration_model: str | None = None

    @classmethod
    def create(cls, *, key_id: UUID, scope: Scope, at: datetime, key_spec: str, key_usage: str, origin: str,
               description: str, policy: str, tags: Mapping[str, str], material_id: str | None,
               commitment: str | None, custom_key_store_id: str | None = None,
               cloud_hsm_cluster_id: str | None = None, multi_region_key_id: str | None = None,
               xks_key_id: str | None = None) -> Key:
        """``multi_region_key_id`` (mrk-...): a multi-Region primary key, stored as ``key_id`` (its id in this
        Region, domain.identifiers.key_storage_id)."""
        merged_tags({}, tags)
        return cls._create(
            cls.Created, id=key_id, timestamp=at, account_id=scope.account_id, region=scope.region,
            partition=scope.partition, key_spec=key_spec, key_usage=key_usage, origin=origin,
            description=description, policy=policy, tags=dict(tags), material_id=material_id,
            commitment=commitment, multi_region=multi_region_key_id is not None,
            custom_key_store_id=custom_key_store_id, cloud_hsm_cluster_id=cloud_hsm_cluster_id,
            public_key_id=multi_region_key_id, xks_key_id=xks_key_id,
        )

    @classmethod
    def replicate_from(cls, primary: Key, *, storage_id: UUID, region: str, at: datetime, description: str,
                       policy: str, tags: Mapping[str, str]) -> Key:
        """The replica of ``primary`` in ``region`` (ReplicateKey), with its own description, policy and tags."""
        from domain.keys.multi_region import shared_state

        merged_tags({}, tags)
        return cls._create(
            cls.ReplicaCreated, id=storage_id, timestamp=at, account_id=primary.account_id, region=region,
            partition=primary.partition, key_spec=primary.key_spec, key_usage=primary.key_usage,
            origin=primary.origin, description=description, policy=policy, tags=dict(tags), material_id=None,
            commitment=None, multi_region=True, custom_key_store_id=None, cloud_hsm_cluster_id=None,
            xks_key_id=None, public_key_id=primary.key_id, primary_region=primary.region,
            replica_regions=sorted({*primary.replica_regions, region}), **shared_state(primary))

    def recreate_replica(self, primary: Key, *, at: datetime, description: str, policy: str,
                         tags: Mapping[str, str]) -> None:
        from domain.keys.multi_region import shared_state

        merged_tags({}, tags)
        self.trigger_event(self.ReplicaRecreated, timestamp=at, description=description, policy=policy,
                           tags=dict(tags), primary_region=primary.region,
                           replica_regions=sorted({*primary.replica_regions, self.region}), **shared_state(primary))

    # -- reading ---------------------------------------------------------------------------------

    @property
    def key_id(self) -> str:
        """The id callers use: the aggregate's, or a multi-Region key's mrk- id."""
        return getattr(self, "public_key_id", None) or str(self.id)

    @property
    def storage_id(self) -> str:
        """The aggregate's id: what the event store, the key-state view and the backing keys know this key by."""
        return str(self.id)

    @property
    def arn(self) -> str:
        return Scope(self.account_id, self.region, self.partition).key_arn(self.key_id)

    @property
    def key_state(self) -> KeyState:
        return KeyState(self.state)

    def require(self, operation: str) -> None:
        require_state(operation, self.key_state, self.arn)

    def material(self, material_id: str) -> dict[str, Any] | None:
        return next((m for m in self.materials if m["material_id"] == material_id), None)

    def metadata(self) -> dict[str, Any]:
        from domain.keys.metadata import key_metadata

        return key_metadata(self)

    # -- commands --------------------------------------------------------------------------------
    # Each checks the state matrix before it triggers anything, so a refused command leaves no event.

    def mark_aws_managed(self, service: str, at: datetime) -> None:
        self.trigger_event(self.AwsManaged, timestamp=at, service=service)

    def enable(self, at: datetime) -> None:
        self.require("EnableKey")
        if self.key_state is not KeyState.ENABLED:
            self.trigger_event(self.Enabled, timestamp=at)

    def disable(self, at: datetime) -> None:
        self.require("DisableKey")
        if self.key_state is not KeyState.DISABLED:
            self.trigger_event(self.Disabled, timestamp=at)

    def update_description(self, description: str, at: datetime) -> None:
        self.require("UpdateKeyDescription")
        self.trigger_event(self.DescriptionUpdated, timestamp=at, description=description)

    def put_policy(self, policy_name: str, policy: str, at: datetime) -> None:
        self.require("PutKeyPolicy")
        self.trigger_event(self.PolicyPut, timestamp=at, policy_name=policy_name, policy=policy)

    def tag(self, tags: Mapping[str, str], at: datetime) -> None:
        self.require("TagResource")
        merged_tags(self.tags, tags)
        self.trigger_event(self.Tagged, timestamp=at, tags=dict(tags))

    def untag(self, tag_keys: list[str], at: datetime) -> None:
        self.require("UntagResource")
        validate_tag_keys(tag_keys)
        self.trigger_event(self.Untagged, timestamp=at, tag_keys=list(tag_keys))

    def schedule_deletion(self, pending_window_days: int | None, at: datetime) -> None:
        self.require("ScheduleKeyDeletion")
        days = DEFAULT_PENDING_WINDOW_DAYS if pending_window_days is None else pending_window_days
        if not MIN_PENDING_WINDOW_DAYS <= days <= MAX_PENDING_WINDOW_DAYS:
            raise ValidationError(
                f"PendingWindowInDays must be between {MIN_PENDING_WINDOW_DAYS} and {MAX_PENDING_WINDOW_DAYS} days; got {days}."
            )
        if self.is_multi_region_primary and self.replica_regions:
            self.trigger_event(self.ReplicaDeletionAwaited, timestamp=at, pending_window_days=days)
            return
        self.trigger_event(self.DeletionScheduled, timestamp=at, deletion_date=at + timedelta(days=days),
                           pending_window_days=days)

    def cancel_deletion(self, at: datetime) -> None:
        self.require("CancelKeyDeletion")
        self.trigger_event(self.DeletionCanceled, timestamp=at)

    def is_due_for_deletion(self, now: datetime) -> bool:
        return self.key_state is KeyState.PENDING_DELETION and self.deletion_date is not None and self.deletion_date <= now

    def delete(self, at: datetime) -> None:
        """Ends the waiting period. The caller removes the backing-key rows in the same transaction."""
        if self.is_due_for_deletion(at):
            self.trigger_event(self.Deleted, timestamp=at)
