"""Multi-Region keys: ReplicateKey, UpdatePrimaryRegion, and the changes one related key passes to the others
(docs/decisions.md 155-164).

Every Region's key is its own aggregate (domain/keys/multi_region.py). A change of the set is one transaction over
every related key: their events, the material rows a replica needs (each Region's key holds its own copy, wrapped
for it), and the call's one audit record, which names every key it changed.
"""
from __future__ import annotations

import uuid
from typing import Any, Mapping, Sequence

from application.calls import Call
from application.keys.access import KeyAccess
from application.keys.key_service import check_key_policy
from application.keys.materials import KeyMaterials
from application.ports import Clock
from application.writer import Outcome
from domain.errors import AlreadyExistsError, NotFoundError, ValidationError, shown
from domain.identifiers import Scope, key_storage_id
from domain.keys.key import Key
from domain.keys.material import Material
from domain.keys.specs import ORIGIN_EXTERNAL
from domain.keys.states import KeyState
from domain.policy.default_policy import default_key_policy


class RelatedKeys:
    """The keys related to a multi-Region key, and how a change of the primary reaches them."""

    def __init__(self, access: KeyAccess, materials: KeyMaterials) -> None:
        self._access = access
        self._materials = materials

    def of(self, key: Key) -> list[Key]:
        """Every other key of the set, loaded (what a call may do to them is decided on the key it named)."""
        found = []
        for region in key.related_regions():
            related = self._access.load_any(key_storage_id(key.key_id, region))
            if related is not None and related.key_state is not KeyState.DELETED:
                found.append(related)
        return found

    def share(self, key: Key, new_materials: Sequence[Material] = ()) -> Outcome[None]:
        """The primary's pending changes of shared properties (rotation), taken by every replica, with the rows of
        ``new_materials`` (material the primary just made) stored for each. Nothing for other keys."""
        changes = key.shared_changes() if key.is_multi_region_primary else []
        if not changes:
            return Outcome([])
        replicas = self.of(key)
        also = []
        for replica in replicas:
            for event in changes:
                replica.mirror(event)
            for material in new_materials:
                also.append(lambda tx, r=replica.storage_id, m=material: self._materials.save(tx, r, m))
        return Outcome(replicas, also=also)


def _tags_of(key: Key) -> list[dict[str, str]]:
    return [{"TagKey": k, "TagValue": v} for k, v in sorted(key.tags.items())]


class MultiRegionService:
    def __init__(self, access: KeyAccess, materials: KeyMaterials, clock: Clock, regions: Sequence[str]) -> None:
        self._access = access
        self._materials = materials
        self._clock = clock
        self._regions = tuple(regions)
        self.related = RelatedKeys(access, materials)

    def replicate_key(self, call: Call, key_ref: str, replica_region: str, policy: str | None = None,
                      bypass_lockout_check: bool = False, description: str | None = None,
                      tags: Mapping[str, str] | None = None) -> dict[str, Any]:
        """ReplicateKey: kms:ReplicateKey on the primary (its key policy), kms:CreateKey (and kms:TagResource for
        Tags) of IAM. The primary's ``Replicated``, the replica's ``ReplicaCreated`` (with copies of the material
        rows, unless the material is imported: each replica takes its own import) and the other replicas'
        ``Replicated`` commit together."""
        authorizer = self._access.resolve.authorizer
        key_id, home = self._access.resolve.locate(call, key_ref)
        replica_scope = Scope(home.account_id, replica_region, home.partition)
        if policy is not None:
            check_key_policy(policy, call, replica_scope.key_arn(key_id), bypass_lockout_check)
        made: list[Key] = []

        def attempt() -> Outcome[Key]:
            now = self._clock.now()
            primary = self._access.load(call, home, key_id)
            primary.replicate(replica_region, self._regions, now)
            authorizer.authorize_identity(call, "kms:CreateKey")
            if tags:
                authorizer.authorize_identity(call, "kms:TagResource")
            others = self.related.of(primary)
            for other in others:
                other.learn_replica(replica_region, now)
            storage_id = key_storage_id(primary.key_id, replica_region)
            chosen_policy = policy if policy is not None else default_key_policy(home.account_id, home.partition)
            earlier = self._access.load_any(storage_id)
            if earlier is not None and earlier.key_state is not KeyState.DELETED:  # never overwrite a live key
                raise AlreadyExistsError(f"{earlier.arn} already exists.")
            if earlier is not None:  # an earlier replica there was deleted: the same aggregate starts again
                earlier.recreate_replica(primary, at=now, description=description or "", policy=chosen_policy,
                                         tags=tags or {})
                replica = earlier
            else:
                replica = Key.replicate_from(primary, storage_id=uuid.UUID(storage_id), region=replica_region, at=now,
                                             description=description or "", policy=chosen_policy, tags=tags or {})
            made[:] = [replica]
            also = []
            if primary.origin != ORIGIN_EXTERNAL:
                also = [lambda tx, m=m["material_id"]: self._materials.share(tx, primary.storage_id, storage_id, m)
                        for m in primary.materials if m.get("present")]
            # The replica last: the record's responseElements are rendered from the last key it names.
            return Outcome([primary, *others, replica], primary, also)

        self._access.writer.retrying(call, attempt)
        replica = made[0]
        return {"ReplicaKeyMetadata": replica.metadata(), "ReplicaPolicy": replica.policy,
                "ReplicaTags": _tags_of(replica)}

    def update_primary_region(self, call: Call, key_ref: str, primary_region: str) -> None:
        """UpdatePrimaryRegion: kms:UpdatePrimaryRegion on the primary and on the replica it promotes, both
        Enabled; every related key takes ``PrimaryRegionUpdated`` in one transaction, so no moment shows two
        primaries or none (AWS's transient Updating state never shows: decision 160)."""
        key_id, home = self._access.resolve.locate(call, key_ref)

        def attempt() -> Outcome[None]:
            now = self._clock.now()
            primary = self._access.load(call, home, key_id)
            primary.require("UpdatePrimaryRegion")
            primary.require_primary()
            if primary_region == primary.region:
                raise ValidationError(f"{primary.arn} is the primary key already: PrimaryRegion {primary_region} is "
                                      "its Region. Name the Region of a replica key.")
            if primary_region not in primary.replica_regions:
                raise NotFoundError(f"Key '{shown(primary.arn_in(primary_region))}' does not exist: {primary.arn} "
                                    f"has no replica key in {shown(primary_region)}.")
            replica_home = Scope(home.account_id, primary_region, home.partition)
            promoted = self._access.load(call, replica_home, key_id)  # kms:UpdatePrimaryRegion on the replica too
            promoted.require("UpdatePrimaryRegion")
            others = [k for k in self.related.of(primary) if k.region != primary_region]
            for key in (primary, promoted, *others):
                key.update_primary_region(primary_region, now)
            return Outcome([primary, promoted, *others])

        self._access.writer.retrying(call, attempt)
