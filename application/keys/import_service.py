"""Importing key material (BYOK): import parameters, ImportKeyMaterial, DeleteImportedKeyMaterial.

The wrapping private key lives root-wrapped in the import-key store under a random import id that the
import token names; it is destroyed when the import succeeds or the parameters expire.
"""
from __future__ import annotations

import os
from datetime import datetime
from typing import Any

from application.calls import Call
from application.keys.access import KeyAccess
from application.keys.materials import KeyMaterials
from application.keys.multi_region_service import RelatedKeys
from application.ports import Clock, ImportKeyStore
from application.writer import Outcome
from domain.errors import InvalidImportTokenError
from domain.keys import byok as key_import
from domain.keys.key import Key
from domain.keys.material import Material, new_material_id
from domain.keys.material import key_material_id as public_material_id

IMPORT_KEY_PURPOSE = "import-wrapping-key"


def validate_imported_material(key_spec: str, material: bytes) -> bytes:
    """Checks the unwrapped material fits the key spec; returns it in canonical form."""
    if key_spec == "SYMMETRIC_DEFAULT":
        key_import.validate_symmetric_import(material)
        return material
    if key_spec.startswith("HMAC_"):
        from domain.crypto.mac import validate_imported_hmac_key

        validate_imported_hmac_key(key_spec, material)
        return material
    from domain.crypto.asymmetric import validate_imported_private_key

    return validate_imported_private_key(key_spec, material)


class ImportService:
    def __init__(self, access: KeyAccess, materials: KeyMaterials, import_keys: ImportKeyStore, clock: Clock,
                 token_key: bytes, related: RelatedKeys) -> None:
        self._related = related
        self._access = access
        self._materials = materials
        self._import_keys = import_keys
        self._clock = clock
        self._token_key = token_key

    def get_parameters_for_import(self, call: Call, key_ref: str, wrapping_algorithm: str,
                                  wrapping_key_spec: str) -> dict[str, Any]:
        key_import.check_wrapping_algorithm(wrapping_algorithm)
        key_import.check_wrapping_key_spec(wrapping_key_spec)
        issued: dict[str, Any] = {}

        def decide(key: Key) -> Outcome[None]:
            now = self._clock.now()
            valid_to = now + key_import.IMPORT_TOKEN_VALIDITY
            import_id = os.urandom(16).hex()
            private_der, public_der = key_import.new_wrapping_key(wrapping_key_spec)
            key.issue_import_parameters(import_id, wrapping_algorithm, wrapping_key_spec, valid_to, now)
            # The token and the wrapping key are bound to this key's storage id: a multi-Region key's related keys
            # share key_id, and each takes its own import.
            wrapped = self._materials.seal(private_der, purpose=IMPORT_KEY_PURPOSE, key_id=key.storage_id,
                                           material_id=import_id)
            issued.update(
                ImportToken=key_import.issue_import_token(
                    token_key=self._token_key, key_id=key.storage_id, import_id=import_id,
                    wrapping_algorithm=wrapping_algorithm, wrapping_key_spec=wrapping_key_spec, issued_at=now),
                PublicKey=public_der, ParametersValidTo=valid_to)
            return Outcome([], also=[lambda tx: self._import_keys.put(tx, import_id, key.storage_id, wrapped, valid_to)])

        key = self._access.change(call, key_ref, decide)
        return {"KeyId": key.arn, **issued}

    def import_key_material(self, call: Call, key_ref: str, import_token: bytes, encrypted_key_material: bytes,
                            valid_to: datetime | None = None, expiration_model: str | None = None,
                            import_type: str | None = None, key_material_id: str | None = None,
                            description: str | None = None) -> dict[str, Any]:
        key_id = self._access.resolve.row(call, key_ref).storage_id  # authorized before the token is read
        now = self._clock.now()
        ticket = key_import.read_import_token(self._token_key, import_token, key_id=key_id, now=now)
        model = key_import.validate_expiration(expiration_model, valid_to, now)
        wrapped_private = self._import_keys.get(ticket.import_id)
        if wrapped_private is None:
            raise InvalidImportTokenError("This import token was already used, or its parameters expired; "
                                          "call GetParametersForImport for a new one.")
        private_der = self._materials.unseal(wrapped_private, purpose=IMPORT_KEY_PURPOSE, key_id=key_id,
                                             material_id=ticket.import_id)
        material_bytes = key_import.unwrap_key_material(private_der, ticket.wrapping_algorithm, encrypted_key_material)
        used: dict[str, str] = {}

        def decide(key: Key) -> Outcome[None]:
            secret = validate_imported_material(key.key_spec, material_bytes)
            material_id = key.import_material(Material(new_material_id(), secret), ticket.import_id,
                                              valid_to if model == key_import.KEY_MATERIAL_EXPIRES else None,
                                              model, self._clock.now(), import_type=import_type,
                                              public_id=key_material_id, description=description)
            used["material_id"] = material_id
            material = Material(material_id, secret)
            return Outcome(self._expected_by_replicas(key, material_id),
                           also=[lambda tx: self._materials.replace(tx, key.storage_id, material),
                                 lambda tx: self._import_keys.delete(tx, ticket.import_id)])

        key = self._access.change(call, key_ref, decide)
        return {"KeyId": key.arn, "KeyMaterialId": public_material_id(key.key_id, used["material_id"])}

    def delete_imported_key_material(self, call: Call, key_ref: str, key_material_id: str | None = None) -> dict[str, Any]:
        """Deletes one material (the CURRENT one unless ``key_material_id`` names another): its event and the
        removal of its backing-key row commit together; other materials and their ciphertexts are untouched."""
        named: list[str | None] = []

        def decide(key: Key) -> Outcome[None]:
            pending = self._pending_rotation(key, key_material_id)
            material_id, deleted = key.delete_imported_material(self._clock.now(), key_material_id)
            named[:] = [material_id]
            if deleted:
                assert material_id is not None
                # AWS: deleting the primary's material that awaits rotation deletes the replicas' too.
                replicas = self._related.of(key) if pending and key.is_multi_region_primary else []
                changed = [r for r in replicas if r.material(material_id) is not None]
                for replica in changed:
                    replica.delete_imported_material(self._clock.now(), public_material_id(key.key_id, material_id))
                return Outcome(changed, also=[
                    lambda tx, k=k: self._materials.destroy_material(tx, k, material_id)
                    for k in (key.storage_id, *(r.storage_id for r in changed))], after=[self._materials.compact])
            return Outcome([])

        key = self._access.change(call, key_ref, decide)
        return {"KeyId": key.arn, "KeyMaterialId": public_material_id(key.key_id, named[0]) if named[0] else None}

    def _expected_by_replicas(self, key: Key, material_id: str) -> list[Key]:
        """Material new to a multi-Region primary with imported material: every replica learns it (id and
        commitment) and takes it when the same material is imported into it (decision 159)."""
        if not key.is_multi_region_primary:
            return []
        record = key.material(material_id)
        assert record is not None
        replicas = [r for r in self._related.of(key) if r.material(material_id) is None]
        for replica in replicas:
            replica.expect_material(material_id, record["commitment"], bool(record.get("pending_rotation")),
                                    self._clock.now())
        return replicas

    @staticmethod
    def _pending_rotation(key: Key, public_id: str | None) -> bool:
        record = key.material_by_public_id(public_id) if public_id else key.material(key.designated_material_id or "")
        return bool(record and record.get("pending_rotation"))
