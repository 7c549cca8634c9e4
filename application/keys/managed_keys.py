"""AWS managed keys (docs/decisions.md 91): the first time a caller names ``alias/aws/<service>`` in its account
and Region, keyledger makes that account's AWS managed key for the service there, with the alias, in one
transaction recorded as a service event (as AWS records the key a service creates). The key has AWS's standard
policy for managed keys, KeyManager AWS, and rotates every year by itself."""
from __future__ import annotations

import uuid

from application.audit.records import new_ids
from application.calls import Call
from application.keys.access import KeyAccess
from application.keys.materials import KeyMaterials
from application.ports import Clock
from application.writer import Outcome
from domain.identifiers import Scope, alias_aggregate_id
from domain.keys.alias import Alias
from domain.keys.key import Key
from domain.keys.managed import MANAGED_ROTATION_DAYS, MANAGED_SERVICES, managed_service
from domain.keys.material import new_symmetric_material
from domain.keys.specs import ENCRYPT_DECRYPT, ORIGIN_AWS_KMS, SYMMETRIC_DEFAULT
from domain.policy.default_policy import aws_managed_key_policy


class AwsManagedKeys:
    def __init__(self, access: KeyAccess, materials: KeyMaterials, clock: Clock) -> None:
        self._access = access
        self._materials = materials
        self._clock = clock

    def ensure(self, call: Call, home: Scope, alias_name: str) -> str | None:
        """The key id of the AWS managed key ``alias_name`` names in ``home``, made now if it does not exist yet;
        None when the alias is not one keyledger makes keys for, or names another account's."""
        service = managed_service(alias_name)
        if service is None or call.caller is None or call.caller.account_id != home.account_id:
            return None
        request_id, event_id = new_ids(2)
        made = Call.service("CreateKey", at=self._clock.now(), request_id=request_id, event_id=event_id, scope=home)
        made.request_parameters = {"aliasName": alias_name, "keyManager": "AWS"}
        self._access.resolve.authorizer.authorize_call(made)  # allowed by rule, and recorded so
        alias_id = alias_aggregate_id(home, alias_name)
        key_id = uuid.uuid4()
        material = new_symmetric_material()

        def attempt() -> Outcome[str]:
            now = self._clock.now()
            alias = self._access.load_alias(alias_id)
            if alias is not None and not alias.deleted:  # made meanwhile, by another call or process
                return Outcome([], alias.target_key_id)
            key = Key.create(
                key_id=key_id, scope=home, at=now, key_spec=SYMMETRIC_DEFAULT, key_usage=ENCRYPT_DECRYPT,
                origin=ORIGIN_AWS_KMS, description=MANAGED_SERVICES[service],
                policy=aws_managed_key_policy(service, home.account_id, home.region, home.partition), tags={},
                material_id=material.material_id, commitment=material.commitment(str(key_id)))
            key.mark_aws_managed(service, now)
            key.enable_rotation(MANAGED_ROTATION_DAYS, now)
            if alias is None:
                alias = Alias.create(alias_id=alias_id, alias_name=alias_name, account_id=home.account_id,
                                     region=home.region, target_key_id=str(key_id), at=now)
            else:
                alias.recreate(str(key_id), now)
            made.add_resource(key.arn)
            return Outcome([key, alias], str(key_id), [lambda tx: self._materials.save(tx, str(key_id), material)])

        return self._access.writer.retrying(made, attempt)
