"""Key lifecycle, tags and policy: every change is an event on a Key aggregate."""
from __future__ import annotations

import uuid
from typing import Any, Mapping

from application.calls import Call
from application.keys.access import KeyAccess
from application.keys.external_keys import ExternalStoreKeys
from application.keys.materials import KeyMaterials
from application.keystores.keys import StoreKeys
from application.pagination import page
from application.ports import Clock, KeyStateView
from application.writer import Outcome
from domain.errors import MalformedPolicyDocumentError, NotFoundError, UnsupportedOperationError, ValidationError, shown
from domain.identifiers import key_storage_id, new_multi_region_key_id
from domain.keys.key import Key
from domain.keys.material import new_material
from domain.keys.specs import (
    ENCRYPT_DECRYPT,
    ORIGIN_AWS_CLOUDHSM,
    ORIGIN_AWS_KMS,
    ORIGIN_EXTERNAL,
    ORIGIN_EXTERNAL_KEY_STORE,
    resolve_key_spec,
)
from domain.keys.states import KeyState, require_state
from domain.policy.default_policy import DEFAULT_POLICY_NAME, default_key_policy
from domain.policy.document import parse_policy
from domain.policy.evaluation import could_perform


def check_key_policy(policy: str, call: Call, key_arn: str, bypass_lockout_check: bool) -> None:
    """AWS's validation, then its lockout safety check: the caller must still be able to PutKeyPolicy
    under the new policy (judged by the evaluator requests will use), unless told to bypass it. An
    operator or service call has no AWS caller to lock out."""
    document = parse_policy(policy)
    if bypass_lockout_check or call.caller is None:
        return
    account = call.in_scope().account_id
    decision = could_perform(call.caller.principal_arn, account, "kms:PutKeyPolicy", key_arn, account,
                             document, [], [])
    if not decision.allowed:
        raise MalformedPolicyDocumentError(
            "The new key policy will not allow you to update the key policy in the future. "
            "Name yourself (or the account root) with kms:PutKeyPolicy, or set BypassPolicyLockoutSafetyCheck.")


class KeyService:
    def __init__(self, access: KeyAccess, view: KeyStateView, materials: KeyMaterials, clock: Clock,
                 unsupported_specs: Mapping[str, str], store_keys: StoreKeys | None = None,
                 external_keys: ExternalStoreKeys | None = None) -> None:
        self._access = access
        self._view = view
        self._materials = materials
        self._clock = clock
        self._unsupported = dict(unsupported_specs)
        self._store_keys = store_keys
        self._external_keys = external_keys  # keys in external key stores (application/keys/external_keys.py)

    def create_key(self, call: Call, *, key_spec: str | None = None, key_usage: str | None = None,
                   origin: str | None = None, description: str = "", policy: str | None = None,
                   tags: Mapping[str, str] | None = None, bypass_lockout_check: bool = False,
                   custom_key_store_id: str | None = None, multi_region: bool = False,
                   xks_key_id: str | None = None) -> dict[str, Any]:
        scope = call.in_scope()
        if multi_region and (custom_key_store_id or origin == ORIGIN_AWS_CLOUDHSM):
            raise UnsupportedOperationError("You cannot create a multi-Region key in a custom key store.")
        spec = resolve_key_spec(key_spec, key_usage, self._unsupported)
        origin = origin or (self._store_origin(custom_key_store_id) if custom_key_store_id else ORIGIN_AWS_KMS)
        in_store = (ORIGIN_AWS_CLOUDHSM, ORIGIN_EXTERNAL_KEY_STORE)
        if (origin in in_store) != bool(custom_key_store_id):
            raise (ValidationError(f"Origin {origin} needs the CustomKeyStoreId of a connected custom key store.")
                   if custom_key_store_id is None else
                   UnsupportedOperationError(f"A key in a custom key store has Origin AWS_CLOUDHSM or "
                                             f"EXTERNAL_KEY_STORE, not {origin}."))
        if (origin == ORIGIN_EXTERNAL_KEY_STORE) != bool(xks_key_id):
            raise ValidationError("Origin EXTERNAL_KEY_STORE needs XksKeyId (the external key's id in the store's XKS "
                                  "proxy)." if xks_key_id is None else "XksKeyId is for Origin EXTERNAL_KEY_STORE only.")
        if origin == ORIGIN_EXTERNAL_KEY_STORE:
            if self._external_keys is None:
                raise UnsupportedOperationError("External key stores are not available in this process.")
            return self._external_keys.create(call, scope, custom_key_store_id or "", xks_key_id or "", spec.name,
                                              key_usage, description, policy, tags, bypass_lockout_check)
        if origin == ORIGIN_AWS_CLOUDHSM:
            return self._create_in_store(call, scope, custom_key_store_id or "", spec.name, key_usage, description,
                                         policy, tags, bypass_lockout_check)
        if origin == ORIGIN_EXTERNAL and spec.name.startswith("ML_"):
            raise UnsupportedOperationError(f"Key material for {spec.name} keys cannot be imported.")
        # A retry below only ever follows a conflict on the audit log's head, so the id can stay.
        key_id = new_multi_region_key_id() if multi_region else str(uuid.uuid4())
        storage_id = key_storage_id(key_id, scope.region)
        if policy is not None:
            check_key_policy(policy, call, scope.key_arn(key_id), bypass_lockout_check)
        material = new_material(spec.name) if origin == ORIGIN_AWS_KMS else None

        def attempt() -> Outcome[Key]:
            key = Key.create(
                key_id=uuid.UUID(storage_id), scope=scope, at=self._clock.now(), key_spec=spec.name,
                key_usage=key_usage or ENCRYPT_DECRYPT, origin=origin, description=description,
                policy=policy if policy is not None else default_key_policy(scope.account_id, scope.partition),
                tags=tags or {}, material_id=material.material_id if material else None,
                commitment=material.commitment(key_id) if material else None,
                multi_region_key_id=key_id if multi_region else None,
            )
            also = [lambda tx: self._materials.save(tx, storage_id, material)] if material else []
            return Outcome([key], key, also)

        return {"KeyMetadata": self._access.writer.retrying(call, attempt).metadata()}

    def _store_origin(self, store_id: str) -> str:
        """CreateKey with a CustomKeyStoreId and no Origin: the store's type says which."""
        row = self._store_keys.store_row(store_id) if self._store_keys is not None else None
        return ORIGIN_EXTERNAL_KEY_STORE if row is not None and row.store_type == "EXTERNAL_KEY_STORE" else ORIGIN_AWS_CLOUDHSM

    def _create_in_store(self, call: Call, scope: Any, store_id: str, spec: str, key_usage: str | None,
                         description: str, policy: str | None, tags: Mapping[str, str] | None,
                         bypass_lockout_check: bool) -> dict[str, Any]:
        """A key whose material is a new non-extractable AES-256 object in the store's token. The object is made
        first; if the key then cannot be recorded, it is destroyed again."""
        if self._store_keys is None:
            raise UnsupportedOperationError("Custom key stores are not available in this process.")
        key_id = str(uuid.uuid4())
        if policy is not None:
            check_key_policy(policy, call, scope.key_arn(key_id), bypass_lockout_check)
        material_id, cluster_id = self._store_keys.new_key(call, store_id, key_id, spec, key_usage)

        def attempt() -> Outcome[Key]:
            key = Key.create(
                key_id=uuid.UUID(key_id), scope=scope, at=self._clock.now(), key_spec=spec,
                key_usage=key_usage or ENCRYPT_DECRYPT, origin=ORIGIN_AWS_CLOUDHSM, description=description,
                policy=policy if policy is not None else default_key_policy(scope.account_id, scope.partition),
                tags=tags or {}, material_id=material_id, commitment=None, custom_key_store_id=store_id,
                cloud_hsm_cluster_id=cluster_id)
            return Outcome([key], key)

        # As CloudTrail records a CloudHSM key store's CreateKey: the store, its cluster and the token object.
        call.additional_event_data = {"customKeyStoreId": store_id, "clusterId": cluster_id,
                                      "backingKeyId": material_id}
        try:
            key = self._access.writer.retrying(call, attempt)
        except BaseException:
            self._store_keys.discard(store_id, key_id, material_id)
            raise
        return {"KeyMetadata": key.metadata()}

    def describe_key(self, call: Call, key_ref: str) -> dict[str, Any]:
        row = self._access.resolve.row(call, key_ref)
        require_state("DescribeKey", KeyState(row.key_state), row.arn)
        return {"KeyMetadata": row.metadata}

    def list_keys(self, call: Call, limit: int | None, marker: str | None,
                  resource_owners: list[str] | None = None) -> dict[str, Any]:
        scope = call.in_scope()
        if resource_owners is not None and "SELF" not in resource_owners:
            # OTHER_ACCOUNTS_VIA_RAM alone: keys other accounts share through AWS RAM. keyledger has no RAM, so
            # none are shared: the answer is truthfully empty (decision 86).
            return {"Keys": [], "Truncated": False}
        return page(
            lambda n, after: self._view.list_keys(scope.account_id, scope.region, n, after), limit, marker,
            sort_key=lambda r: r.key_id, render=lambda r: {"KeyId": r.key_id, "KeyArn": r.arn}, member="Keys",
        )

    def enable_key(self, call: Call, key_ref: str) -> None:
        self._access.change(call, key_ref, lambda k: k.enable(self._clock.now()))

    def disable_key(self, call: Call, key_ref: str) -> None:
        self._access.change(call, key_ref, lambda k: k.disable(self._clock.now()))

    def update_key_description(self, call: Call, key_ref: str, description: str) -> None:
        self._access.change(call, key_ref, lambda k: k.update_description(description, self._clock.now()))

    def schedule_key_deletion(self, call: Call, key_ref: str, pending_window_days: int | None) -> dict[str, Any]:
        key = self._access.change(call, key_ref, lambda k: k.schedule_deletion(pending_window_days, self._clock.now()))
        return {"KeyId": key.arn, "DeletionDate": key.deletion_date, "KeyState": key.state,
                "PendingWindowInDays": key.pending_window_days}

    def cancel_key_deletion(self, call: Call, key_ref: str) -> dict[str, Any]:
        key = self._access.change(call, key_ref, lambda k: k.cancel_deletion(self._clock.now()))
        return {"KeyId": key.arn}

    # -- tags and policy -------------------------------------------------------------------------

    def tag_resource(self, call: Call, key_ref: str, tags: Mapping[str, str]) -> None:
        self._access.change(call, key_ref, lambda k: k.tag(tags, self._clock.now()))

    def untag_resource(self, call: Call, key_ref: str, tag_keys: list[str]) -> None:
        self._access.change(call, key_ref, lambda k: k.untag(tag_keys, self._clock.now()))

    def list_resource_tags(self, call: Call, key_ref: str, limit: int | None, marker: str | None) -> dict[str, Any]:
        key = self._access.load_ref(call, key_ref)
        key.require("ListResourceTags")
        tags = sorted(key.tags.items())
        return page(
            lambda n, after: [t for t in tags if after is None or t[0] > after][:n], limit, marker,
            sort_key=lambda t: t[0], render=lambda t: {"TagKey": t[0], "TagValue": t[1]}, member="Tags",
        )

    def put_key_policy(self, call: Call, key_ref: str, policy: str, policy_name: str | None,
                       bypass_lockout_check: bool = False) -> None:
        name = policy_name or DEFAULT_POLICY_NAME
        if name != DEFAULT_POLICY_NAME:
            raise ValidationError(f"PolicyName '{shown(name)}' is not valid: a KMS key has one policy, named 'default'.")

        def change(key: Key) -> None:
            check_key_policy(policy, call, key.arn, bypass_lockout_check)
            key.put_policy(name, policy, self._clock.now())

        self._access.change(call, key_ref, change)

    def list_key_policies(self, call: Call, key_ref: str, limit: int | None, marker: str | None) -> dict[str, Any]:
        key = self._access.load_ref(call, key_ref)
        key.require("ListKeyPolicies")
        return page(lambda n, after: [] if after else [DEFAULT_POLICY_NAME], limit, marker,
                    sort_key=lambda name: name, render=lambda name: name, member="PolicyNames")

    def get_key_policy(self, call: Call, key_ref: str, policy_name: str | None) -> dict[str, Any]:
        key = self._access.load_ref(call, key_ref)
        key.require("GetKeyPolicy")
        name = policy_name or DEFAULT_POLICY_NAME
        if name != DEFAULT_POLICY_NAME:
            raise NotFoundError(f"No such policy exists: '{shown(name)}'. A KMS key has one policy, named 'default'.")
        return {"Policy": key.policy, "PolicyName": name}
