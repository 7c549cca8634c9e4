"""Rotation of symmetric key material: automatic (on a period) and on demand. Each rotation is an event
that adds a material version; the newest encrypts, every older one still decrypts."""
from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from eventsourcing.domain import Aggregate

from domain.errors import LimitExceededError, UnsupportedOperationError
from domain.keys.material import material_record
from domain.keys.specs import (
    ORIGIN_AWS_CLOUDHSM,
    ORIGIN_AWS_KMS,
    ORIGIN_EXTERNAL,
    ORIGIN_EXTERNAL_KEY_STORE,
    SYMMETRIC_DEFAULT,
)
from domain.keys.states import KeyState

if TYPE_CHECKING:
    from domain.keys.key import Key

DEFAULT_ROTATION_PERIOD_DAYS = 365
MAX_ON_DEMAND_ROTATIONS = 25
AUTOMATIC, ON_DEMAND = "AUTOMATIC", "ON_DEMAND"


class RotatableKey:
    """Rotation events and commands of the Key aggregate."""

    class RotationEnabled(Aggregate.Event):
        rotation_period_days: int
        next_rotation_date: datetime

        def apply(self, key: Any) -> None:
            if not key.rotation_enabled:
                key.rotation_anchor = self.timestamp
            key.rotation_enabled = True
            key.rotation_period_days = self.rotation_period_days
            key.next_rotation_date = self.next_rotation_date

    class RotationDisabled(Aggregate.Event):
        def apply(self, key: Any) -> None:
            key.rotation_enabled = False
            key.next_rotation_date = None

    class MaterialRotated(Aggregate.Event):
        material_id: str
        commitment: str
        rotation_type: str  # AUTOMATIC | ON_DEMAND
        next_rotation_date: datetime | None

        def apply(self, key: Any) -> None:
            key.materials.append(material_record(self.material_id, self.commitment, self.timestamp, imported=False,
                                                 rotation_type=self.rotation_type))
            key.current_material_id = self.material_id
            if self.rotation_type == ON_DEMAND:
                key.on_demand_rotations += 1
            else:
                key.rotation_anchor = self.timestamp
                key.next_rotation_date = self.next_rotation_date

    def _require_rotatable(self: Key, operation: str, imported_too: bool = False) -> None:
        self.require(operation)
        self.refuse_on_replica("automatic and on-demand rotation are managed")
        if self.key_spec != SYMMETRIC_DEFAULT:
            raise UnsupportedOperationError(
                f"{self.arn} is a {self.key_spec} key: key rotation is supported only for symmetric encryption keys.")
        if self.origin != ORIGIN_AWS_KMS and not (imported_too and self.origin == ORIGIN_EXTERNAL):
            raise UnsupportedOperationError(f"{self.arn} origin is {self.origin} which is not valid for this operation.")

    def enable_rotation(self: Key, period_days: int | None, at: datetime) -> None:
        self._require_rotatable("EnableKeyRotation")
        period = period_days or self.rotation_period_days or DEFAULT_ROTATION_PERIOD_DAYS
        anchor = getattr(self, "rotation_anchor", None) if self.rotation_enabled else at
        next_date = max((anchor or at) + timedelta(days=period), at)
        if self.rotation_enabled and period == self.rotation_period_days:
            return
        self.trigger_event(self.RotationEnabled, timestamp=at, rotation_period_days=period, next_rotation_date=next_date)

    def disable_rotation(self: Key, at: datetime) -> None:
        self._require_rotatable("DisableKeyRotation")
        if self.rotation_enabled:
            self.trigger_event(self.RotationDisabled, timestamp=at)

    def rotation_status(self: Key) -> dict[str, Any]:
        self.require("GetKeyRotationStatus")
        if self.origin in (ORIGIN_AWS_CLOUDHSM, ORIGIN_EXTERNAL_KEY_STORE):
            raise UnsupportedOperationError(f"{self.arn} is in a custom key store: AWS KMS does not rotate those keys.")
        if self.key_spec != SYMMETRIC_DEFAULT:
            raise UnsupportedOperationError(
                f"{self.arn} is a {self.key_spec} key: key rotation is supported only for symmetric encryption keys.")
        status: dict[str, Any] = {"KeyRotationEnabled": self.rotation_enabled, "KeyId": self.arn}
        if self.rotation_enabled:
            status["RotationPeriodInDays"] = self.rotation_period_days
            status["NextRotationDate"] = self.next_rotation_date
        return status

    def rotate_on_demand(self: Key, material_id: str | None, commitment: str | None, at: datetime) -> None:
        """To new material (``material_id``) or, for a key with imported material, to the material imported for
        it in advance (pass None)."""
        self._require_rotatable("RotateKeyOnDemand", imported_too=True)
        if self.on_demand_rotations >= MAX_ON_DEMAND_ROTATIONS:
            raise LimitExceededError(
                f"{self.arn} has been rotated on demand {MAX_ON_DEMAND_ROTATIONS} times, the most AWS KMS allows per key.")
        if self.origin == ORIGIN_EXTERNAL:
            self.rotate_to_imported_material(at)
            return
        assert material_id is not None and commitment is not None
        self.trigger_event(self.MaterialRotated, timestamp=at, material_id=material_id, commitment=commitment,
                           rotation_type=ON_DEMAND, next_rotation_date=None)

    def is_due_for_rotation(self: Key, now: datetime) -> bool:
        """A replica is never due by itself: its primary's rotation rotates it (decision 158)."""
        return (self.rotation_enabled and self.key_state is KeyState.ENABLED and self.next_rotation_date is not None
                and self.next_rotation_date <= now and not self.is_replica)

    def rotate_if_due(self: Key, material_id: str, commitment: str, at: datetime) -> bool:
        """Automatic rotation, exactly once per due date: after it, the key is no longer due."""
        if not self.is_due_for_rotation(at):
            return False
        assert self.rotation_period_days is not None
        self.trigger_event(self.MaterialRotated, timestamp=at, material_id=material_id, commitment=commitment,
                           rotation_type=AUTOMATIC, next_rotation_date=at + timedelta(days=self.rotation_period_days))
        return True
