"""Key rotation operations: automatic rotation settings, on-demand rotation, the rotation history."""
from __future__ import annotations

from typing import Any

from application.calls import Call
from application.keys.access import KeyAccess
from application.keys.materials import KeyMaterials
from application.keys.multi_region_service import RelatedKeys
from application.pagination import page
from application.ports import Clock
from application.writer import Outcome
from domain.errors import InvalidStateError
from domain.keys.key import Key
from domain.keys.material import key_material_id, new_material
from domain.keys.specs import ORIGIN_EXTERNAL

ALL_KEY_MATERIAL, ROTATIONS_ONLY = "ALL_KEY_MATERIAL", "ROTATIONS_ONLY"
PENDING_MULTI_REGION = "PENDING_MULTI_REGION_IMPORT_AND_ROTATION"


class RotationService:
    """Rotation is a shared property of multi-Region keys: changed on the primary, it changes every replica in the
    same transaction (``RelatedKeys.share``)."""

    def __init__(self, access: KeyAccess, materials: KeyMaterials, clock: Clock, related: RelatedKeys) -> None:
        self._access = access
        self._materials = materials
        self._clock = clock
        self._related = related

    def enable_key_rotation(self, call: Call, key_ref: str, period_days: int | None) -> None:
        def decide(key: Key) -> Outcome[None]:
            key.enable_rotation(period_days, self._clock.now())
            return self._related.share(key)

        self._access.change(call, key_ref, decide)

    def disable_key_rotation(self, call: Call, key_ref: str) -> None:
        def decide(key: Key) -> Outcome[None]:
            key.disable_rotation(self._clock.now())
            return self._related.share(key)

        self._access.change(call, key_ref, decide)

    def get_key_rotation_status(self, call: Call, key_ref: str) -> dict[str, Any]:
        return self._access.load_ref(call, key_ref).rotation_status()

    def rotate_key_on_demand(self, call: Call, key_ref: str) -> dict[str, Any]:
        def decide(key: Key) -> Outcome[None]:
            if key.origin == ORIGIN_EXTERNAL:  # to the material imported in advance: nothing new to store
                waiting = self._awaiting_import(key)
                if waiting:
                    raise InvalidStateError(
                        f"The key material pending rotation of {key.arn} is PENDING_MULTI_REGION_IMPORT_AND_ROTATION: "
                        f"import the same key material into its replica keys in {', '.join(waiting)} first.")
                key.rotate_on_demand(None, None, self._clock.now())
                return self._related.share(key)
            material = new_material(key.key_spec)
            key.rotate_on_demand(material.material_id, material.commitment(key.key_id), self._clock.now())
            shared = self._related.share(key, [material])
            return Outcome(shared.aggregates, also=[lambda tx: self._materials.save(tx, key.storage_id, material),
                                                    *shared.also])

        return {"KeyId": self._access.change(call, key_ref, decide).arn}

    def _awaiting_import(self, key: Key) -> list[str]:
        """The Regions of the replicas of a multi-Region primary with imported material that do not have its
        material pending rotation yet (AWS: PENDING_MULTI_REGION_IMPORT_AND_ROTATION until every replica has it)."""
        waiting = next((m for m in key.materials if m.get("pending_rotation")), None)
        if waiting is None or key.origin != ORIGIN_EXTERNAL or not key.is_multi_region_primary:
            return []
        return [r.region for r in self._related.of(key)
                if not (r.material(waiting["material_id"]) or {}).get("present")]

    def list_key_rotations(self, call: Call, key_ref: str, include: str | None, limit: int | None,
                           marker: str | None) -> dict[str, Any]:
        key = self._access.load_ref(call, key_ref)
        key.require("ListKeyRotations")
        key.rotation_status()  # refuses keys that cannot rotate, as AWS does
        records = [(f"{i:06d}", m) for i, m in enumerate(key.materials)
                   if (include or ROTATIONS_ONLY) == ALL_KEY_MATERIAL or m.get("rotation_type")]
        awaited = bool(self._awaiting_import(key))

        def render(item: tuple[str, dict[str, Any]]) -> dict[str, Any]:
            m = item[1]
            out: dict[str, Any] = {
                "KeyId": key.arn, "KeyMaterialId": key_material_id(key.key_id, m["material_id"]),
                "KeyMaterialState": (PENDING_MULTI_REGION if awaited and m.get("pending_rotation")
                                     else key.material_state(m)),
            }
            if not m.get("pending_rotation"):  # not rotated to yet
                out["RotationDate"] = m.get("rotated") or m["created"]
            if m.get("rotation_type"):
                out["RotationType"] = m["rotation_type"]
            if m.get("imported"):
                out["ImportState"] = "IMPORTED" if m.get("present") else "PENDING_IMPORT"
                out["ExpirationModel"] = m.get("expiration_model")
                out["ValidTo"] = m.get("valid_to") if m.get("present") else None
                out["KeyMaterialDescription"] = m.get("description")
            return out

        return page(lambda n, after: [r for r in records if after is None or r[0] > after][:n], limit, marker,
                    sort_key=lambda r: r[0], render=render, member="Rotations")
