"""Imported key material (BYOK, origin EXTERNAL): import parameters, import, deletion and expiry.

The import private key and the material never appear in an event: ImportParametersIssued names the
import by a random id (the wrapped private key is stored under it), MaterialImported by material id and
commitment. Re-importing must bring the same material, recognised by its commitment.
"""
from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from eventsourcing.domain import Aggregate

from domain.errors import IncorrectKeyMaterialError, UnsupportedOperationError
from domain.keys.material import Material, material_record
from domain.keys.specs import ORIGIN_EXTERNAL
from domain.keys.states import KeyState

if TYPE_CHECKING:
    from domain.keys.key import Key

KEY_MATERIAL_EXPIRES = "KEY_MATERIAL_EXPIRES"
KEY_MATERIAL_DOES_NOT_EXPIRE = "KEY_MATERIAL_DOES_NOT_EXPIRE"


def _lose_material(key: Any) -> None:
    for material in key.materials:
        material["present"] = False
    key.current_material_id = None
    if key.state == KeyState.PENDING_DELETION.value:
        key.state_before_deletion = KeyState.PENDING_IMPORT.value
    else:
        key.state = KeyState.PENDING_IMPORT.value


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
                        expiration_model: str, at: datetime) -> str:
        """Returns the material id used: the earlier one when the same material comes back."""
        self._require_external("ImportKeyMaterial")
        material_id = self.matching_material_id(material.secret)
        if material_id is None:
            if self.materials:
                raise IncorrectKeyMaterialError(
                    f"The key material imported into {self.arn} differs from the material it had before; "
                    "a key can only take back the same key material.")
            material_id = material.material_id
        commitment = Material(material_id, material.secret).commitment(self.key_id)
        self.trigger_event(self.MaterialImported, timestamp=at, material_id=material_id, commitment=commitment,
                           import_id=import_id, valid_to=valid_to, expiration_model=expiration_model)
        return material_id

    def delete_imported_material(self: Key, at: datetime) -> bool:
        """True when there was material to delete; the caller removes the backing-key rows with the event."""
        self._require_external("DeleteImportedKeyMaterial")
        if self.current_material_id is None:
            return False
        self.trigger_event(self.ImportedMaterialDeleted, timestamp=at)
        return True

    def is_material_expired(self: Key, now: datetime) -> bool:
        if self.current_material_id is None:
            return False
        record = self.material(self.current_material_id)
        return bool(record and record.get("expiration_model") == KEY_MATERIAL_EXPIRES
                    and record.get("valid_to") is not None and record["valid_to"] <= now)

    def expire_material_if_due(self: Key, at: datetime) -> bool:
        if not self.is_material_expired(at):
            return False
        self.trigger_event(self.MaterialExpired, timestamp=at)
        return True
