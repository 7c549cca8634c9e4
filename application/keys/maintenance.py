"""What the service does by itself when a date passes: automatic rotation, deletion at the end of the
waiting period (crypto-shredding), expiry of imported material, and cleanup of unused import keys.

Safe to run from several processes at once: each change goes through optimistic concurrency, and every
command is a no-op once done (a rotated key is no longer due), so each due date is acted on exactly once.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from application.audit.records import new_ids
from application.calls import Call
from application.keys.access import KeyAccess
from application.keys.materials import KeyMaterials
from application.ports import Clock, ImportKeyStore, KeyStateView, UnitOfWork
from application.writer import Outcome
from domain.identifiers import Scope, alias_aggregate_id
from domain.keys.alias import Alias
from domain.keys.key import Key
from domain.keys.material import new_material
from domain.keys.specs import ORIGIN_AWS_CLOUDHSM


@dataclass
class MaintenanceReport:
    rotated: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    expired: list[str] = field(default_factory=list)
    import_keys_removed: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {"rotated": self.rotated, "deleted": self.deleted, "expired": self.expired,
                "import_keys_removed": self.import_keys_removed}


class Maintenance:
    def __init__(self, access: KeyAccess, view: KeyStateView, materials: KeyMaterials, import_keys: ImportKeyStore,
                 uow: UnitOfWork, clock: Clock) -> None:
        self._access = access
        self._view = view
        self._materials = materials
        self._import_keys = import_keys
        self._uow = uow
        self._clock = clock
        self.store_keys: Any = None  # application/keystores/keys.py: StoreKeys, for keys in custom key stores
        self.related: Any = None  # application/keys/multi_region_service.py: RelatedKeys, for multi-Region keys

    def run_once(self) -> MaintenanceReport:
        report = MaintenanceReport()
        for key_id in self._view.due_key_ids(self._clock.now()):
            self._act_on(key_id, report)
        with self._uow.transaction() as tx:
            report.import_keys_removed = self._import_keys.delete_expired(tx, self._clock.now())
        return report

    def _act_on(self, key_id: str, report: MaintenanceReport) -> None:
        """``key_id``: the key's storage id (domain.identifiers.key_storage_id)."""
        done: list[str] = []
        # Each action is a service call, recorded as an AwsServiceEvent in the action's own transaction.
        request_id, event_id = new_ids(2)
        call = Call.service("", at=self._clock.now(), request_id=request_id, event_id=event_id)
        self._access.resolve.authorizer.authorize_call(call)  # allowed by rule, and recorded so
        self._access.writer.retrying(call, lambda: self._decide(key_id, call, done))
        for what in done:
            getattr(report, what).append(key_id)

    def _decide(self, key_id: str, call: Call, done: list[str]) -> Outcome[None]:
        done.clear()
        key = self._access.load_any(key_id)
        if key is None:
            return Outcome([])
        now = self._clock.now()
        call.at, call.scope, call.region = now, Scope(key.account_id, key.region, key.partition), key.region
        call.request_parameters = {"keyId": key.key_id}
        if key.is_due_for_deletion(now):
            store_keys = self.store_keys
            # A key in a CloudHSM key store has a token object to destroy; a key in an external key store has only
            # keyledger's own layer to shred (AWS KMS never deletes the external key).
            in_store = key.origin == ORIGIN_AWS_CLOUDHSM and store_keys is not None
            if in_store and not store_keys.can_destroy(key):  # type: ignore[union-attr]
                # The token object cannot be destroyed while its store is disconnected: the key waits, pending
                # deletion, until the store is connected again (docs/custom-key-stores.md), never deleted with
                # its material left behind.
                return Outcome([key])
            call.operation = "DeleteKey"
            key.delete(now)
            done.append("deleted")
            aliases = self._aliases_of(key, now)
            # A token object is destroyed inside the transaction, before the event commits: a failure after it
            # leaves the key pending deletion and due, and the next run records the deletion (destroying is idempotent).
            shred = [lambda tx: store_keys.destroy(key)] if in_store else []  # type: ignore[union-attr]
            # The related keys of a deleted replica forget it; a primary pending replica deletion whose last
            # replica this was starts its waiting period (decision 161).
            related = self.related.of(key) if key.multi_region and self.related is not None else []
            for other in related:
                other.forget_replica(key.region, now)
            return Outcome([key, *aliases, *related], also=[lambda tx: self._materials.destroy(tx, key_id), *shred],
                           after=[self._materials.compact])
        expired = key.expire_material_if_due(now)
        if expired:
            call.operation = "DeleteExpiredKeyMaterial"
            done.append("expired")
            return Outcome([key], also=[lambda tx, m=m: self._materials.destroy_material(tx, key_id, m) for m in expired],
                           after=[self._materials.compact])
        if key.is_due_for_rotation(now):
            call.operation = "RotateKey"
            material = new_material(key.key_spec)
            key.rotate_if_due(material.material_id, material.commitment(key.key_id), now)
            done.append("rotated")
            # A multi-Region primary's rotation rotates every replica to the same material (decision 158).
            shared = self.related.share(key, [material]) if self.related is not None else Outcome([])
            return Outcome([key, *shared.aggregates],
                           also=[lambda tx: self._materials.save(tx, key_id, material), *shared.also])
        return Outcome([key])

    def _aliases_of(self, key: Key, now: Any) -> list[Alias]:
        """AWS deletes a key's aliases with the key; so do we, in the same transaction."""
        scope = Scope(key.account_id, key.region, key.partition)
        aliases = []
        for name in self._view.aliases_of(key.account_id, key.region, key.key_id):
            alias = self._access.load_alias(alias_aggregate_id(scope, name))
            if alias is not None and not alias.deleted:
                alias.delete(now)
                aliases.append(alias)
        return aliases
