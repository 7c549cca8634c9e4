"""KeyMetadata as DescribeKey answers it (the shape of botocore's KeyMetadata)."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from domain.keys.material import key_material_id
from domain.keys.specs import KEY_SPECS, LEGACY_CUSTOMER_MASTER_KEY_SPECS
from domain.keys.states import KeyState

if TYPE_CHECKING:
    from domain.keys.key import Key


def key_metadata(key: Key) -> dict[str, Any]:
    spec = KEY_SPECS[key.key_spec]
    meta: dict[str, Any] = {
        "AWSAccountId": key.account_id,
        "KeyId": key.key_id,
        "Arn": key.arn,
        "CreationDate": key.created_on,
        "Enabled": key.key_state is KeyState.ENABLED,
        "Description": key.description,
        "KeyUsage": key.key_usage,
        "KeyState": key.state,
        "Origin": key.origin,
        "KeyManager": getattr(key, "key_manager", "CUSTOMER"),
        "KeySpec": key.key_spec,
        "MultiRegion": key.multi_region,
    }
    if key.multi_region and getattr(key, "primary_region", None):
        meta["MultiRegionConfiguration"] = key.multi_region_configuration()
    if getattr(key, "custom_key_store_id", None):
        meta["CustomKeyStoreId"] = key.custom_key_store_id
        if getattr(key, "xks_key_id", None):
            meta["XksKeyConfiguration"] = {"Id": key.xks_key_id}
        else:
            meta["CloudHsmClusterId"] = key.cloud_hsm_cluster_id
    if key.key_spec in LEGACY_CUSTOMER_MASTER_KEY_SPECS:
        meta["CustomerMasterKeySpec"] = key.key_spec
    algorithms = spec.algorithms_for(key.key_usage)
    if algorithms:
        meta[algorithms[0]] = list(algorithms[1])
    if key.deletion_date is not None:
        meta["DeletionDate"] = key.deletion_date
    elif key.key_state is KeyState.PENDING_REPLICA_DELETION:
        # AWS: present only in PendingReplicaDeletion, whose deletion date is not known until the last replica goes
        meta["PendingDeletionWindowInDays"] = key.pending_window_days
    current = key.material(key.current_material_id) if key.current_material_id else None
    if current is not None:
        if key.key_spec == "SYMMETRIC_DEFAULT":
            meta["CurrentKeyMaterialId"] = key_material_id(key.key_id, current["material_id"])
        if current.get("expiration_model"):
            meta["ExpirationModel"] = current["expiration_model"]
        if current.get("valid_to") is not None:
            meta["ValidTo"] = current["valid_to"]
    elif key.origin == "EXTERNAL" and key.imported_expiration_model:
        meta["ExpirationModel"] = key.imported_expiration_model
    return meta
