"""Imported key material (BYOK, origin EXTERNAL): import parameters, import, deletion and expiry.

The import private key and the material never appear in an event: ImportParametersIssued names the
import by a random id (the wrapped private key is stored under it), MaterialImported by material id and
commitment. Re-importing must bring the same material, recognised by its commitment.

A symmetric key holds several imported materials, as AWS KMS does today (decision 89): the first import is
CURRENT; a later NEW_KEY_MATERIAL import is PENDING_ROTATION until RotateKeyOnDemand makes it CURRENT (the
previous one turns NON_CURRENT and still decrypts); each material is deleted, re-imported and expires on its own.
The events KeyMaterialImported, KeyMaterialDeleted, KeyMaterialExpired and ImportedMaterialRotated name the
material they act on; MaterialImported, ImportedMaterialDeleted and MaterialExpired (one material per key) stay so
that stored histories still load, and are no longer triggered.
"""
from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from eventsourcing.domain import Aggregate

from domain.errors import (
    IncorrectKeyMaterialError,
    InvalidStateError,
    NotFoundError,
    UnsupportedOperationError,
    ValidationError,
    shown,
)
from domain.keys.material import Material, key_material_id, material_record
from domain.keys.specs import ORIGIN_EXTERNAL, SYMMETRIC_DEFAULT
from domain.keys.states import KeyState

if TYPE_CHECKING:
    from domain.keys.key import Key

KEY_MATERIAL_EXPIRES = "KEY_MATERIAL_EXPIRES"
KEY_MATERIAL_DOES_NOT_EXPIRE = "KEY_MATERIAL_DOES_NOT_EXPIRE"
NEW_KEY_MATERIAL, EXISTING_KEY_MATERIAL = "NEW_KEY_MATERIAL", "EXISTING_KEY_MATERIAL"
CURRENT, NON_CURRENT, PENDING_ROTATION = "CURRENT", "NON_CURRENT", "PENDING_ROTATION"
_SYMMETRIC_ONLY = ("ImportType", "KeyMaterialId", "KeyMaterialDescription")


def _to_pending_import(key: Any) -> None:
    if key.state == KeyState.PENDING_DELETION.value:
        key.state_before_deletion = KeyState.PENDING_IMPORT.value
    else:
        key.state = KeyState.PENDING_IMPORT.value


def _lose_material(key: Any) -> None:
    """The one-material events of before decision 89: every material goes."""
    for material in key.materials:
        material["present"] = False
    if key.current_material_id is not None:
        key.lost_current_material_id = key.current_material_id
    key.current_material_id = None
    _to_pending_import(key)


def _lose_one(key: Any, material_id: str) -> None:
    record = key.material(material_id)
    if record is None:
        return
    if record.get("pending_rotation"):
        # Material pending rotation is not yet associated with the key for good: it goes altogether, and other
        # material may be imported in its place (AWS, RotationsListEntry.KeyMaterialState).
        key.materials.remove(record)
        return
    record["present"] = False
    if material_id == key.current_material_id:
        key.lost_current_material_id = material_id
        key.current_material_id = None
        _to_pending_import(key)


def _enable_if_pending_import(key: Any) -> None:
    if key.state == KeyState.PENDING_IMPORT.value:
        key.state = KeyState.ENABLED.value
    elif key.state == KeyState.PENDING_DELETION.value and key.state_before_deletion == KeyState.PENDING_IMPORT.value:
        key.state_before_deletion = KeyState.ENABLED.value


class ImportableKey:
    """Import events and commands of the Key aggregate."""

    class ImportParametersIssued(Aggregate.Event):
        import_id: str
        wrapping_algorithm: str
        wrapping_key_spec: str
        parameters_valid_to: datetime

        def apply(self, key: Any) -> None:
            key.import_parameters = {"import_id": self.import_id, "wrapping_algorithm": self.wrapping_algorithm,
                                     "wrapping_key_spec": self.wrapping_key_spec, "valid_to": self.parameters_valid_to}

    class MaterialImported(Aggregate.Event):
        material_id: str
        commitment: str
        import_id: str
        valid_to: datetime | None
        expiration_model: str

        def apply(self, key: Any) -> None:
            record = key.material(self.material_id)
            if record is None:
                record = material_record(self.material_id, self.commitment, self.timestamp, imported=True)
                key.materials.append(record)
            record.update(present=True, valid_to=self.valid_to, expiration_model=self.expiration_model)
            key.current_material_id = self.material_id
            key.imported_expiration_model = self.expiration_model
            key.import_parameters = None
            if key.state == KeyState.PENDING_IMPORT.value:
                key.state = KeyState.ENABLED.value
            elif key.state == KeyState.PENDING_DELETION.value and key.state_before_deletion == KeyState.PENDING_IMPORT.value:
                key.state_before_deletion = KeyState.ENABLED.value

    class ImportedMaterialDeleted(Aggregate.Event):
        def apply(self, key: Any) -> None:
            _lose_material(key)

    class MaterialExpired(Aggregate.Event):
        """The material's ValidTo passed: the service deleted it (an AwsServiceEvent)."""

        def apply(self, key: Any) -> None:
            _lose_material(key)

    class KeyMaterialImported(Aggregate.Event):
        """One material imported: new (CURRENT if it is the key's first, else PENDING_ROTATION) or again."""

        material_id: str
        commitment: str
        import_id: str
        valid_to: datetime | None
        expiration_model: str
        pending_rotation: bool
        description: str | None

        def apply(self, key: Any) -> None:
            record = key.material(self.material_id)
            if record is None:
                record = material_record(self.material_id, self.commitment, self.timestamp, imported=True)
                key.materials.append(record)
            record.update(present=True, valid_to=self.valid_to, expiration_model=self.expiration_model,
                          pending_rotation=self.pending_rotation)
            if self.description is not None:
                record["description"] = self.description
            key.import_parameters = None
            designated = key.designated_material_id
            if not self.pending_rotation and designated in (None, self.material_id):
                key.current_material_id = self.material_id
                key.lost_current_material_id = None
                key.imported_expiration_model = self.expiration_model
                _enable_if_pending_import(key)

    class KeyMaterialDeleted(Aggregate.Event):
        """DeleteImportedKeyMaterial of one material; the caller removed its backing-key row in this transaction."""

        material_id: str

        def apply(self, key: Any) -> None:
            _lose_one(key, self.material_id)

    class KeyMaterialExpired(Aggregate.Event):
        """One material's ValidTo passed: the service deleted it (an AwsServiceEvent)."""

        material_id: str

        def apply(self, key: Any) -> None:
            _lose_one(key, self.material_id)

    class ImportedMaterialRotated(Aggregate.Event):
        """RotateKeyOnDemand of an EXTERNAL key: the material pending rotation becomes CURRENT."""

        material_id: str

        def apply(self, key: Any) -> None:
            record = key.material(self.material_id)
            record.update(pending_rotation=False, rotation_type="ON_DEMAND", rotated=self.timestamp)
            key.current_material_id = self.material_id
            key.lost_current_material_id = None
            key.imported_expiration_model = record.get("expiration_model")
            key.on_demand_rotations += 1

    @property
    def designated_material_id(self: Any) -> str | None:
        """The CURRENT material, present or not (deleted or expired, the key waits in PendingImport for it)."""
        if self.current_material_id is not None:
            return self.current_material_id
        lost = getattr(self, "lost_current_material_id", None)  # absent from snapshots taken before decision 89
        if lost is not None:
            return lost
        # A key whose only material was deleted before keyledger kept per-material state.
        imported = [m for m in self.materials if m.get("imported") and not m.get("pending_rotation")]
        return imported[0]["material_id"] if imported else None

    def material_state(self: Any, record: dict[str, Any]) -> str:
        if record.get("pending_rotation"):
            return PENDING_ROTATION
        return CURRENT if record["material_id"] == self.designated_material_id else NON_CURRENT

    def material_by_public_id(self: Key, public_id: str) -> dict[str, Any] | None:
        """The material whose KeyMaterialId (what callers see) is ``public_id``."""
        return next((m for m in self.materials if key_material_id(self.key_id, m["material_id"]) == public_id), None)

    def _require_external(self: Key, operation: str) -> None:
        self.require(operation)
        if self.origin != ORIGIN_EXTERNAL:
            raise UnsupportedOperationError(
                f"{self.arn} origin is {self.origin} which is not valid for this operation; "
                "only keys created with Origin EXTERNAL take imported key material.")

    def issue_import_parameters(self: Key, import_id: str, wrapping_algorithm: str, wrapping_key_spec: str,
                                valid_to: datetime, at: datetime) -> None:
        self._require_external("GetParametersForImport")
        self.trigger_event(self.ImportParametersIssued, timestamp=at, import_id=import_id,
                           wrapping_algorithm=wrapping_algorithm, wrapping_key_spec=wrapping_key_spec,
                           parameters_valid_to=valid_to)

    def matching_material_id(self: Key, secret: bytes) -> str | None:
        """The id of an earlier material with exactly these bytes, by its commitment."""
        for record in self.materials:
            if Material(record["material_id"], secret).commitment(self.key_id) == record["commitment"]:
                return record["material_id"]
        return None

    def import_material(self: Key, material: Material, import_id: str, valid_to: datetime | None,
                        expiration_model: str, at: datetime, import_type: str | None = None,
                        public_id: str | None = None, description: str | None = None) -> str:
        """Returns the material id used: the earlier one when the same material comes back."""
        self._require_external("ImportKeyMaterial")
        symmetric = self.key_spec == SYMMETRIC_DEFAULT
        if not symmetric and (import_type is not None or public_id is not None or description is not None):
            raise ValidationError(f"{', '.join(_SYMMETRIC_ONLY)} are only usable with symmetric encryption keys; "
                                  f"{self.arn} is {self.key_spec}.")
        ever = any(m.get("imported") for m in self.materials)
        import_type = import_type or (EXISTING_KEY_MATERIAL if ever else NEW_KEY_MATERIAL)
        if self.is_replica and import_type == NEW_KEY_MATERIAL:
            # A replica takes only the material of its primary (decision 159): the same bytes, known by commitment.
            raise UnsupportedOperationError(
                f"{self.arn} is a multi-Region replica key: you cannot import new key material into it. Import the "
                f"key material into its primary key {self.arn_in(self.primary_region)}, then the same key material "
                "into this key with ImportType EXISTING_KEY_MATERIAL.")
        known = self.matching_material_id(material.secret)
        pending = False
        if import_type == NEW_KEY_MATERIAL:
            if public_id is not None:
                raise ValidationError("You cannot specify a KeyMaterialId with ImportType NEW_KEY_MATERIAL: "
                                      "keyledger assigns it.")
            if known is not None:
                raise IncorrectKeyMaterialError(
                    f"This key material is already associated with {self.arn} (KeyMaterialId "
                    f"{key_material_id(self.key_id, known)}); import it with ImportType EXISTING_KEY_MATERIAL.")
            if ever:
                if not symmetric:
                    raise IncorrectKeyMaterialError(
                        f"The key material imported into {self.arn} differs from the material it had before; "
                        f"a {self.key_spec} key can only take back the same key material.")
                waiting = next((m for m in self.materials if m.get("pending_rotation")), None)
                if waiting is not None:
                    raise InvalidStateError(
                        f"{self.arn} already has key material pending rotation (KeyMaterialId "
                        f"{key_material_id(self.key_id, waiting['material_id'])}); rotate the key with "
                        "RotateKeyOnDemand or delete that material before importing new key material.")
                pending = True
            material_id = material.material_id
        else:
            if not ever:
                raise ValidationError(f"{self.arn} has no imported key material yet; import its first key material "
                                      "with ImportType NEW_KEY_MATERIAL.")
            if known is None:
                raise IncorrectKeyMaterialError(
                    f"The key material imported into {self.arn} differs from every key material associated with it; "
                    "with ImportType EXISTING_KEY_MATERIAL, import the same key material again.")
            if public_id is not None and public_id != key_material_id(self.key_id, known):
                raise IncorrectKeyMaterialError(
                    f"The key material imported is not the key material {shown(public_id)} of {self.arn}.")
            material_id = known
            pending = bool(self.material(known).get("pending_rotation"))  # type: ignore[union-attr]
        commitment = Material(material_id, material.secret).commitment(self.key_id)
        self.trigger_event(self.KeyMaterialImported, timestamp=at, material_id=material_id, commitment=commitment,
                           import_id=import_id, valid_to=valid_to, expiration_model=expiration_model,
                           pending_rotation=pending, description=description)
        return material_id

    def delete_imported_material(self: Key, at: datetime, public_id: str | None = None) -> tuple[str | None, bool]:
        """(the material id named, whether it was deleted now); the caller removes its backing-key row with the
        event. Without ``public_id`` the CURRENT material; one that names no material of this key is NotFound."""
        self._require_external("DeleteImportedKeyMaterial")
        if public_id is None:
            material_id = self.designated_material_id
            record = self.material(material_id) if material_id else None
        else:
            record = self.material_by_public_id(public_id)
            if record is None or not record.get("imported"):
                raise NotFoundError(f"Key material '{shown(public_id)}' is not associated with {self.arn}; "
                                    "ListKeyRotations with IncludeKeyMaterial ALL_KEY_MATERIAL lists its materials.")
            material_id = record["material_id"]
        if record is None or not (record.get("present") or record.get("pending_rotation")):
            return material_id, False
        self.trigger_event(self.KeyMaterialDeleted, timestamp=at, material_id=material_id)
        return material_id, True

    def expired_material_ids(self: Key, now: datetime) -> list[str]:
        return [m["material_id"] for m in self.materials
                if m.get("present") and m.get("expiration_model") == KEY_MATERIAL_EXPIRES
                and m.get("valid_to") is not None and m["valid_to"] <= now]

    def is_material_expired(self: Key, now: datetime) -> bool:
        return bool(self.expired_material_ids(now))

    def expire_material_if_due(self: Key, at: datetime) -> list[str]:
        """The ids of the materials that expired now (one event each); their rows go in the same transaction."""
        due = self.expired_material_ids(at)
        for material_id in due:
            self.trigger_event(self.KeyMaterialExpired, timestamp=at, material_id=material_id)
        return due

    def rotate_to_imported_material(self: Key, at: datetime) -> str:
        """RotateKeyOnDemand of an EXTERNAL symmetric key: to the material imported for it in advance."""
        waiting = next((m for m in self.materials if m.get("pending_rotation")), None)
        if waiting is None or not waiting.get("present"):
            raise InvalidStateError(
                f"{self.arn} has no key material in PENDING_ROTATION state: import new key material with ImportType "
                "NEW_KEY_MATERIAL before rotating a key with imported key material on demand.")
        self.trigger_event(self.ImportedMaterialRotated, timestamp=at, material_id=waiting["material_id"])
        return waiting["material_id"]
