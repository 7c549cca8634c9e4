"""Key states and the AWS KMS key-state x operation matrix, in one table.

Every operation on a key asks ``require_state(op, state, arn)`` before it does anything; the answer for a
state that does not allow the operation is the error AWS gives (see docs/reference: key-state.md).
"""
from __future__ import annotations

from enum import Enum
from typing import Callable

from domain.errors import DisabledError, InvalidStateError, KmsError, NotFoundError, UnsupportedOperationError


class KeyState(str, Enum):
    ENABLED = "Enabled"
    DISABLED = "Disabled"
    PENDING_DELETION = "PendingDeletion"
    PENDING_IMPORT = "PendingImport"
    # A multi-Region primary key scheduled for deletion while replicas exist: its waiting period starts when the
    # last replica is deleted. Refused and allowed exactly where PendingDeletion is (AWS's key-state table puts
    # them in one column), with its own message.
    PENDING_REPLICA_DELETION = "PendingReplicaDeletion"
    DELETED = "Deleted"  # not an AWS state on the wire: a deleted key is NotFound everywhere
    # A key in a custom key store that is not connected. Never an aggregate's own state: the key-store overlay
    # (application/keystores/overlay.py) shows it in place of Enabled or Disabled while the store is not connected.
    UNAVAILABLE = "Unavailable"


E, D, PD, PI, X = KeyState.ENABLED, KeyState.DISABLED, KeyState.PENDING_DELETION, KeyState.PENDING_IMPORT, KeyState.DELETED
U = KeyState.UNAVAILABLE

_Refusal = Callable[[str], KmsError]


def _disabled(arn: str) -> KmsError:
    return DisabledError(f"{arn} is disabled.")


def _pending_deletion(arn: str) -> KmsError:
    # AWS answers either DisabledException or KMSInvalidStateException here; we always use the latter
    # (docs/decisions.md): the key is not merely disabled, and retrying after EnableKey cannot work.
    return InvalidStateError(f"{arn} is pending deletion.")


def _pending_replica_deletion(arn: str) -> KmsError:
    return InvalidStateError(f"{arn} is pending replica deletion: it is scheduled for deletion and waits until "
                             "its replica keys are deleted.")


def _pending_import(arn: str) -> KmsError:
    return InvalidStateError(f"{arn} is pending import.")


def _unavailable(arn: str) -> KmsError:
    return InvalidStateError(f"{arn} is unavailable.")


def _not_pending_deletion(arn: str) -> KmsError:
    return InvalidStateError(f"{arn} is not pending deletion.")


def _deleted(arn: str) -> KmsError:
    return NotFoundError(f"Key '{arn}' does not exist")


def _origin_external(arn: str) -> KmsError:
    return UnsupportedOperationError(f"{arn} origin is EXTERNAL which is not valid for this operation.")


_CRYPTO = {D: _disabled, PD: _pending_deletion, PI: _pending_import, U: _unavailable}
_ROTATION_CHANGE = {D: _disabled, PD: _pending_deletion, PI: _origin_external}
_ANY: dict[KeyState, _Refusal] = {}
_NOT_PENDING_DELETION = {PD: _pending_deletion}

# operation -> {state that refuses it: how}. A state absent from the inner map allows the operation.
MATRIX: dict[str, dict[KeyState, _Refusal]] = {
    "Encrypt": _CRYPTO,
    "Decrypt": _CRYPTO,
    "ReEncryptFrom": _CRYPTO,
    "ReEncryptTo": _CRYPTO,
    "GenerateDataKey": _CRYPTO,
    "GenerateDataKeyWithoutPlaintext": _CRYPTO,
    "DescribeKey": _ANY,
    "GetKeyPolicy": _ANY,
    "PutKeyPolicy": _ANY,
    "ListKeyPolicies": _ANY,
    "ListResourceTags": _ANY,
    "ListAliases": _ANY,
    "DeleteAlias": _ANY,
    "EnableKey": {PD: _pending_deletion, PI: _pending_import},
    "DisableKey": {PD: _pending_deletion, PI: _pending_import},
    "ScheduleKeyDeletion": _NOT_PENDING_DELETION,
    "CancelKeyDeletion": {E: _not_pending_deletion, D: _not_pending_deletion, PI: _not_pending_deletion,
                          U: _not_pending_deletion},
    "UpdateKeyDescription": _NOT_PENDING_DELETION,
    "TagResource": _NOT_PENDING_DELETION,
    "UntagResource": _NOT_PENDING_DELETION,
    "CreateAlias": _NOT_PENDING_DELETION,
    "UpdateAlias": _NOT_PENDING_DELETION,  # the destination key; the source key may be pending deletion
    "EnableKeyRotation": _ROTATION_CHANGE,  # custom key store keys: refused by the Key (UnsupportedOperation)
    "DisableKeyRotation": _ROTATION_CHANGE,
    "RotateKeyOnDemand": _ROTATION_CHANGE,
    "GetKeyRotationStatus": {PI: _origin_external},
    "ListKeyRotations": {PI: _origin_external},
    "GetParametersForImport": _NOT_PENDING_DELETION,
    "ImportKeyMaterial": _NOT_PENDING_DELETION,
    "DeleteImportedKeyMaterial": _ANY,
    "Sign": _CRYPTO,
    "Verify": _CRYPTO,
    "GenerateMac": _CRYPTO,
    "VerifyMac": _CRYPTO,
    "GetPublicKey": _CRYPTO,
    "DeriveSharedSecret": _CRYPTO,
    "Encapsulate": _CRYPTO,
    "Decapsulate": _CRYPTO,
    "GenerateDataKeyPair": _CRYPTO,
    "GenerateDataKeyPairWithoutPlaintext": _CRYPTO,
    "CreateGrant": _CRYPTO,
    # Multi-Region keys: ReplicateKey on the primary; UpdatePrimaryRegion on the primary and the replica it promotes
    "ReplicateKey": _CRYPTO,
    "UpdatePrimaryRegion": _CRYPTO,
    "ListGrants": _ANY,
    "RetireGrant": _ANY,
    "RevokeGrant": _ANY,
}


def require_state(operation: str, state: KeyState, arn: str) -> None:
    if state is KeyState.DELETED:
        raise _deleted(arn)
    if state is KeyState.PENDING_REPLICA_DELETION:
        refusal = MATRIX[operation].get(PD)
        if refusal is not None:
            raise (_pending_replica_deletion if refusal is _pending_deletion else refusal)(arn)
        return
    refusal = MATRIX[operation].get(state)
    if refusal is not None:
        raise refusal(arn)
