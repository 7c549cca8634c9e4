"""CreateKey with Origin EXTERNAL_KEY_STORE: a KMS key whose outer encryption layer is an external key in the
store's XKS proxy (docs/custom-key-stores.md, "keyledger calling an XKS proxy").

As AWS KMS does it: the store must be CONNECTED; the external key must exist in the proxy and be an enabled AES-256
key that encrypts and decrypts (GetKeyMetadata); no other KMS key of the store may use it (pending deletion
counts). keyledger also makes the key's own backing key (the inner layer of double encryption) and keeps it
root-wrapped as for any key: deleting the KMS key shreds it, whatever the external key manager keeps.
"""
from __future__ import annotations

import uuid
from typing import Any, Callable, Mapping

from application.calls import Call
from application.keys.access import KeyAccess
from application.keys.materials import KeyMaterials
from application.keystores.external import ExternalKeyStores
from application.keystores.keys import StoreKeys
from application.ports import Clock
from application.writer import Outcome
from domain.errors import UnsupportedOperationError, XksKeyAlreadyInUseError, shown
from domain.keys.key import Key
from domain.keys.material import new_material
from domain.keys.specs import ENCRYPT_DECRYPT, ORIGIN_EXTERNAL_KEY_STORE, SYMMETRIC_DEFAULT
from domain.keystores.store import EXTERNAL_KEY_STORE
from domain.policy.default_policy import default_key_policy


class ExternalStoreKeys:
    def __init__(self, access: KeyAccess, materials: KeyMaterials, clock: Clock, store_keys: StoreKeys,
                 external: ExternalKeyStores, in_use: Callable[[Any, str, str], bool],
                 check_policy: Callable[[str, Call, str, bool], None]) -> None:
        self._access = access
        self._materials = materials
        self._clock = clock
        self._store_keys = store_keys
        self._external = external
        self._in_use = in_use  # (tx, store id, XksKeyId) -> a KMS key of the store uses that external key
        self._check_policy = check_policy

    def create(self, call: Call, scope: Any, store_id: str, xks_key_id: str, spec: str, key_usage: str | None,
               description: str, policy: str | None, tags: Mapping[str, str] | None,
               bypass_lockout_check: bool) -> dict[str, Any]:
        if spec != SYMMETRIC_DEFAULT or (key_usage or ENCRYPT_DECRYPT) != ENCRYPT_DECRYPT:
            raise UnsupportedOperationError("An external key store holds symmetric encryption keys only "
                                            "(KeySpec SYMMETRIC_DEFAULT, KeyUsage ENCRYPT_DECRYPT).")
        store = self._store_keys.connected_store(call, store_id)
        if store.store_type != EXTERNAL_KEY_STORE:
            raise UnsupportedOperationError(f"Custom key store {store_id} is an {store.store_type} key store: its keys "
                                            "have Origin AWS_CLOUDHSM.")
        key_id = str(uuid.uuid4())
        if policy is not None:
            self._check_policy(policy, call, scope.key_arn(key_id), bypass_lockout_check)
        self._external.check_external_key(call, store_id, xks_key_id)
        material = new_material(SYMMETRIC_DEFAULT)

        def unused(tx: Any) -> None:
            if self._in_use(tx, store_id, xks_key_id):
                raise XksKeyAlreadyInUseError(f"XksKeyId {shown(xks_key_id)} is already associated with another KMS "
                                              f"key in custom key store {store_id}.")

        def attempt() -> Outcome[Key]:
            key = Key.create(
                key_id=uuid.UUID(key_id), scope=scope, at=self._clock.now(), key_spec=SYMMETRIC_DEFAULT,
                key_usage=ENCRYPT_DECRYPT, origin=ORIGIN_EXTERNAL_KEY_STORE, description=description,
                policy=policy if policy is not None else default_key_policy(scope.account_id, scope.partition),
                tags=tags or {}, material_id=material.material_id, commitment=material.commitment(key_id),
                custom_key_store_id=store_id, xks_key_id=xks_key_id)
            return Outcome([key], key, [unused, lambda tx: self._materials.save(tx, key_id, material)])

        call.additional_event_data = {"customKeyStoreId": store_id, "xksKeyId": xks_key_id}
        return {"KeyMetadata": self._access.writer.retrying(call, attempt).metadata()}
