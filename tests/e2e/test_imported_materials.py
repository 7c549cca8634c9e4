"""Several imported materials per symmetric key, as AWS KMS has them (decision 89), end to end on SQLite and
PostgreSQL: ImportType, KeyMaterialId and KeyMaterialDescription; on-demand rotation to material imported in
advance; ListKeyRotations with each material's state, import state and expiry; DeleteImportedKeyMaterial of one
material (an unknown id deletes nothing); expiry per material; crypto-shredding of one material's row."""
from __future__ import annotations

import os
from datetime import datetime, timedelta, timezone
from typing import Any

from tests.e2e.helpers import (
    advance_days,
    create_key,
    error_code,
    keyledger,
    maintenance,
)
from tests.e2e.test_lifecycle_deletion import backing_rows
from tests.e2e.test_lifecycle_import import import_material

DOES_NOT_EXPIRE = {"ExpirationModel": "KEY_MATERIAL_DOES_NOT_EXPIRE"}


def external_key(kms: Any) -> str:
    return create_key(kms, Origin="EXTERNAL")["KeyId"]


def materials(kms: Any, key: str) -> dict[str, dict[str, Any]]:
    """KeyMaterialId -> its ListKeyRotations entry, every material included."""
    entries = kms.list_key_rotations(KeyId=key, IncludeKeyMaterial="ALL_KEY_MATERIAL")["Rotations"]
    return {e["KeyMaterialId"]: e for e in entries}


def decrypts(kms: Any, blob: bytes) -> bool:
    try:
        kms.decrypt(CiphertextBlob=blob)
        return True
    except kms.exceptions.InvalidCiphertextException:
        return False


def material_of(kms: Any, blob: bytes) -> str:
    return kms.decrypt(CiphertextBlob=blob)["KeyMaterialId"]


def test_several_materials_rotation_on_demand_and_list_key_rotations(kms):
    key = external_key(kms)
    m1, m2 = os.urandom(32), os.urandom(32)
    first = import_material(kms, key, m1, **DOES_NOT_EXPIRE)["KeyMaterialId"]  # the first import: NEW by default
    assert kms.describe_key(KeyId=key)["KeyMetadata"]["CurrentKeyMaterialId"] == first
    c1 = kms.encrypt(KeyId=key, Plaintext=b"one")["CiphertextBlob"]
    # Nothing to rotate to yet.
    assert error_code(kms.rotate_key_on_demand, KeyId=key) == "KMSInvalidStateException"

    second = import_material(kms, key, m2, ImportType="NEW_KEY_MATERIAL", KeyMaterialDescription="second one",
                             **DOES_NOT_EXPIRE)["KeyMaterialId"]
    assert second != first
    listed = materials(kms, key)
    assert listed[first]["KeyMaterialState"] == "CURRENT" and listed[second]["KeyMaterialState"] == "PENDING_ROTATION"
    assert listed[second]["ImportState"] == "IMPORTED" and listed[second]["KeyMaterialDescription"] == "second one"
    assert listed[second]["ExpirationModel"] == "KEY_MATERIAL_DOES_NOT_EXPIRE"
    assert "RotationDate" not in listed[second]
    assert kms.list_key_rotations(KeyId=key)["Rotations"] == []  # ROTATIONS_ONLY: no rotation yet
    # Material pending rotation does not encrypt.
    assert material_of(kms, kms.encrypt(KeyId=key, Plaintext=b"x")["CiphertextBlob"]) == first
    # One pending material at a time.
    assert error_code(import_material, kms, key, os.urandom(32), ImportType="NEW_KEY_MATERIAL",
                      **DOES_NOT_EXPIRE) == "KMSInvalidStateException"

    assert kms.rotate_key_on_demand(KeyId=key)["KeyId"].endswith(key)
    assert kms.describe_key(KeyId=key)["KeyMetadata"]["CurrentKeyMaterialId"] == second
    c2 = kms.encrypt(KeyId=key, Plaintext=b"two")["CiphertextBlob"]
    assert material_of(kms, c2) == second and material_of(kms, c1) == first  # old ciphertexts still decrypt
    listed = materials(kms, key)
    assert listed[first]["KeyMaterialState"] == "NON_CURRENT" and listed[second]["KeyMaterialState"] == "CURRENT"
    rotations = kms.list_key_rotations(KeyId=key)["Rotations"]
    assert [(r["KeyMaterialId"], r["RotationType"]) for r in rotations] == [(second, "ON_DEMAND")]
    # Automatic rotation stays unsupported for imported material.
    assert error_code(kms.enable_key_rotation, KeyId=key) == "UnsupportedOperationException"


def test_import_type_and_key_material_id_rules(kms):
    key = external_key(kms)
    m1 = os.urandom(32)
    # EXISTING before any import: nothing to re-import.
    assert error_code(import_material, kms, key, m1, ImportType="EXISTING_KEY_MATERIAL",
                      **DOES_NOT_EXPIRE) == "ValidationException"
    first = import_material(kms, key, m1, **DOES_NOT_EXPIRE)["KeyMaterialId"]
    # A later import defaults to EXISTING: different material is refused.
    assert error_code(import_material, kms, key, os.urandom(32), **DOES_NOT_EXPIRE) == "IncorrectKeyMaterialException"
    # NEW takes no KeyMaterialId, and refuses material the key already has.
    assert error_code(import_material, kms, key, os.urandom(32), ImportType="NEW_KEY_MATERIAL", KeyMaterialId=first,
                      **DOES_NOT_EXPIRE) == "ValidationException"
    assert error_code(import_material, kms, key, m1, ImportType="NEW_KEY_MATERIAL",
                      **DOES_NOT_EXPIRE) == "IncorrectKeyMaterialException"
    # EXISTING with a KeyMaterialId that is not this material's.
    assert error_code(import_material, kms, key, m1, ImportType="EXISTING_KEY_MATERIAL", KeyMaterialId="a" * 64,
                      **DOES_NOT_EXPIRE) == "IncorrectKeyMaterialException"
    again = import_material(kms, key, m1, ImportType="EXISTING_KEY_MATERIAL", KeyMaterialId=first,
                            KeyMaterialDescription="renamed", **DOES_NOT_EXPIRE)
    assert again["KeyMaterialId"] == first
    assert materials(kms, key)[first]["KeyMaterialDescription"] == "renamed"
    # Asymmetric and HMAC keys: these members are for symmetric keys only.
    hmac_key = create_key(kms, Origin="EXTERNAL", KeySpec="HMAC_256", KeyUsage="GENERATE_VERIFY_MAC")["KeyId"]
    assert error_code(import_material, kms, hmac_key, os.urandom(32), ImportType="NEW_KEY_MATERIAL",
                      **DOES_NOT_EXPIRE) == "ValidationException"


def test_delete_one_material_and_an_unknown_id_deletes_nothing(servers, backend):
    server = servers.start()
    kms = server.client()
    key = external_key(kms)
    m1, m2 = os.urandom(32), os.urandom(32)
    first = import_material(kms, key, m1, **DOES_NOT_EXPIRE)["KeyMaterialId"]
    c1 = kms.encrypt(KeyId=key, Plaintext=b"one")["CiphertextBlob"]
    second = import_material(kms, key, m2, ImportType="NEW_KEY_MATERIAL", **DOES_NOT_EXPIRE)["KeyMaterialId"]
    kms.rotate_key_on_demand(KeyId=key)
    c2 = kms.encrypt(KeyId=key, Plaintext=b"two")["CiphertextBlob"]
    rows = len(backing_rows(server, backend, key))
    assert rows == 2

    # The destructive bug of issue 14: a made-up id deleted the current material. Now it is NotFound, and nothing goes.
    assert error_code(kms.delete_imported_key_material, KeyId=key, KeyMaterialId="0" * 64) == "NotFoundException"
    assert decrypts(kms, c1) and decrypts(kms, c2)
    assert kms.describe_key(KeyId=key)["KeyMetadata"]["KeyState"] == "Enabled"
    assert len(backing_rows(server, backend, key)) == 2

    # Deleting the NON_CURRENT material: the key stays Enabled, only that material's ciphertexts stop decrypting,
    # and its backing-key row is gone (crypto-shredding per material).
    deleted = kms.delete_imported_key_material(KeyId=key, KeyMaterialId=first)
    assert deleted["KeyMaterialId"] == first
    assert kms.describe_key(KeyId=key)["KeyMetadata"]["KeyState"] == "Enabled"
    assert not decrypts(kms, c1) and decrypts(kms, c2)
    assert len(backing_rows(server, backend, key)) == 1
    listed = materials(kms, key)
    assert listed[first]["ImportState"] == "PENDING_IMPORT" and listed[first]["KeyMaterialState"] == "NON_CURRENT"

    # Re-importing it brings those ciphertexts back.
    import_material(kms, key, m1, ImportType="EXISTING_KEY_MATERIAL", KeyMaterialId=first, **DOES_NOT_EXPIRE)
    assert decrypts(kms, c1)

    # Without KeyMaterialId the CURRENT material goes, and the key waits in PendingImport for it.
    assert kms.delete_imported_key_material(KeyId=key)["KeyMaterialId"] == second
    meta = kms.describe_key(KeyId=key)["KeyMetadata"]
    assert meta["KeyState"] == "PendingImport" and "CurrentKeyMaterialId" not in meta
    import_material(kms, key, m2, **DOES_NOT_EXPIRE)  # EXISTING by default: the same material
    assert kms.describe_key(KeyId=key)["KeyMetadata"]["KeyState"] == "Enabled"
    assert decrypts(kms, c1) and decrypts(kms, c2)


def test_material_pending_rotation_can_be_deleted_and_replaced(kms):
    key = external_key(kms)
    import_material(kms, key, os.urandom(32), **DOES_NOT_EXPIRE)
    pending = import_material(kms, key, os.urandom(32), ImportType="NEW_KEY_MATERIAL",
                              **DOES_NOT_EXPIRE)["KeyMaterialId"]
    kms.delete_imported_key_material(KeyId=key, KeyMaterialId=pending)
    assert pending not in materials(kms, key)  # not associated with the key for good: it goes altogether
    replacement = import_material(kms, key, os.urandom(32), ImportType="NEW_KEY_MATERIAL",
                                  **DOES_NOT_EXPIRE)["KeyMaterialId"]
    kms.rotate_key_on_demand(KeyId=key)
    assert kms.describe_key(KeyId=key)["KeyMetadata"]["CurrentKeyMaterialId"] == replacement


def test_each_material_expires_on_its_own(servers, backend):
    server = servers.start()
    kms = server.client()
    key = external_key(kms)
    soon = datetime.now(timezone.utc) + timedelta(days=2)
    first = import_material(kms, key, os.urandom(32), ValidTo=soon, ExpirationModel="KEY_MATERIAL_EXPIRES")
    c1 = kms.encrypt(KeyId=key, Plaintext=b"one")["CiphertextBlob"]
    import_material(kms, key, os.urandom(32), ImportType="NEW_KEY_MATERIAL", **DOES_NOT_EXPIRE)
    kms.rotate_key_on_demand(KeyId=key)
    c2 = kms.encrypt(KeyId=key, Plaintext=b"two")["CiphertextBlob"]
    assert materials(kms, key)[first["KeyMaterialId"]]["ValidTo"] is not None

    advance_days(server, 3)
    report = maintenance(server)
    assert key in report["expired"]
    # The NON_CURRENT material expired: the key stays Enabled, only its ciphertexts are lost, and its row is gone.
    assert kms.describe_key(KeyId=key)["KeyMetadata"]["KeyState"] == "Enabled"
    assert not decrypts(kms, c1) and decrypts(kms, c2)
    assert len(backing_rows(server, backend, key)) == 1
    assert materials(kms, key)[first["KeyMaterialId"]]["ImportState"] == "PENDING_IMPORT"
    assert key not in maintenance(server)["expired"]  # once
    assert keyledger(server, "audit", "verify").strip()
    keyledger(server, "replay")  # the per-material events rebuild the same key state
