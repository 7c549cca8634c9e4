"""The key-state x operation matrix, checked against AWS's published table, not against ``MATRIX`` itself.

Expectations are transcribed by hand from /work/shared/reference/aws-kms.md section 1.1 (AWS KMS developer
guide, key-state.md). Columns keyledger models: Enabled, Disabled, PendingDeletion, PendingImport, plus the
internal Deleted state, which is NotFound for every operation.

Footnotes used:
  1  DisabledException: <arn> is disabled.
  2/3 pending deletion: AWS answers DisabledException or KMSInvalidStateException; keyledger has decided
      (key_states.py, docs/decisions.md) always to answer KMSInvalidStateException.
  4  KMSInvalidStateException: <arn> is not pending deletion.
  5  KMSInvalidStateException: <arn> is pending import.
  6  UnsupportedOperationException: <arn> origin is EXTERNAL which is not valid for this operation.
  8  pending deletion with imported material -> KMSInvalidStateException.
  10 UpdateAlias: a destination key pending deletion -> KMSInvalidStateException.
"""
from __future__ import annotations

import uuid

import pytest

from domain.errors import DisabledError, InvalidStateError, KmsError, NotFoundError, UnsupportedOperationError
from domain.keys.states import MATRIX, KeyState, require_state

ARN = f"arn:aws:kms:us-east-1:111122223333:key/{uuid.UUID(int=0x1234)}"

OK = None
DI = (DisabledError, "is disabled")  # footnote 1
IS_PD = (InvalidStateError, "pending deletion")  # footnotes 2/3, as decided
IS_NPD = (InvalidStateError, "not pending deletion")  # footnote 4
IS_PI = (InvalidStateError, "pending import")  # footnote 5
UO_EXTERNAL = (UnsupportedOperationError, "EXTERNAL")  # footnote 6
NA = "n/a"  # the reference says the combination cannot occur; not checked

#                 Enabled  Disabled  PendingDeletion  PendingImport
_CRYPTO_ROW = (OK, DI, IS_PD, IS_PI)  # Encrypt, Decrypt, ReEncrypt, GenerateDataKey*, GenerateDataKeyPair*
_ANY_STATE_ROW = (OK, OK, OK, OK)
_ASYMMETRIC_ROW = (OK, DI, IS_PD, NA)  # Sign, Verify, GenerateMac, VerifyMac, GetPublicKey, DeriveSharedSecret, ...
_NOT_PD_ROW = (OK, OK, IS_PD, OK)  # TagResource, UntagResource, UpdateKeyDescription, CreateAlias, UpdateAlias(dest)

EXPECTED: dict[str, tuple] = {
    # Crypto operations (reference row "Decrypt, Encrypt, ReEncrypt, GenerateDataKey, ...")
    "Encrypt": _CRYPTO_ROW,
    "Decrypt": _CRYPTO_ROW,
    "ReEncryptFrom": _CRYPTO_ROW,
    "ReEncryptTo": _CRYPTO_ROW,
    "GenerateDataKey": _CRYPTO_ROW,
    "GenerateDataKeyWithoutPlaintext": _CRYPTO_ROW,
    "GenerateDataKeyPair": _CRYPTO_ROW,
    "GenerateDataKeyPairWithoutPlaintext": _CRYPTO_ROW,
    # CreateGrant: ✓ X1 X2/3 X5
    "CreateGrant": _CRYPTO_ROW,
    # ReplicateKey / UpdatePrimaryRegion: ✓ X1 X2/3 X5
    "ReplicateKey": _CRYPTO_ROW,
    "UpdatePrimaryRegion": _CRYPTO_ROW,
    # Sign, Verify, GenerateMac, VerifyMac, GetPublicKey (+ inferred DeriveSharedSecret, Encapsulate, Decapsulate)
    "Sign": _ASYMMETRIC_ROW,
    "Verify": _ASYMMETRIC_ROW,
    "GenerateMac": _ASYMMETRIC_ROW,
    "VerifyMac": _ASYMMETRIC_ROW,
    "GetPublicKey": _ASYMMETRIC_ROW,
    "DeriveSharedSecret": _ASYMMETRIC_ROW,
    "Encapsulate": _ASYMMETRIC_ROW,
    "Decapsulate": _ASYMMETRIC_ROW,
    # Allowed in every state
    "DeleteAlias": _ANY_STATE_ROW,
    "DescribeKey": _ANY_STATE_ROW,
    "GetKeyPolicy": _ANY_STATE_ROW,
    "ListAliases": _ANY_STATE_ROW,
    "ListGrants": _ANY_STATE_ROW,
    "ListKeyPolicies": _ANY_STATE_ROW,
    "ListResourceTags": _ANY_STATE_ROW,
    "PutKeyPolicy": _ANY_STATE_ROW,
    "RetireGrant": _ANY_STATE_ROW,
    "RevokeGrant": _ANY_STATE_ROW,
    "GetKeyLastUsage": _ANY_STATE_ROW,
    # DisableKey, EnableKey: ✓ ✓ X3 X5
    "EnableKey": (OK, OK, IS_PD, IS_PI),
    "DisableKey": (OK, OK, IS_PD, IS_PI),
    # ScheduleKeyDeletion: ✓ ✓ X3 ✓
    "ScheduleKeyDeletion": _NOT_PD_ROW,
    # CancelKeyDeletion: X4 X4 ✓ X4
    "CancelKeyDeletion": (IS_NPD, IS_NPD, OK, IS_NPD),
    # TagResource, UntagResource, UpdateKeyDescription: ✓ ✓ X3 ✓
    "TagResource": _NOT_PD_ROW,
    "UntagResource": _NOT_PD_ROW,
    "UpdateKeyDescription": _NOT_PD_ROW,
    # Rotation (for an AWS_KMS-origin symmetric key; footnote 6: EXTERNAL origin -> UnsupportedOperation):
    # EnableKeyRotation, DisableKeyRotation: ?7 X1/7 X3/7 X6
    "EnableKeyRotation": (OK, DI, IS_PD, UO_EXTERNAL),
    "DisableKeyRotation": (OK, DI, IS_PD, UO_EXTERNAL),
    # GetKeyRotationStatus: ?7 ?7 ?7 X6 ; inferred ListKeyRotations: like GetKeyRotationStatus
    "GetKeyRotationStatus": (OK, OK, OK, UO_EXTERNAL),
    "ListKeyRotations": (OK, OK, OK, UO_EXTERNAL),
    # inferred RotateKeyOnDemand: ✓ X1 X3 (PendingImport: IS/UO, not checked)
    "RotateKeyOnDemand": (OK, DI, IS_PD, NA),
    # Imported material (for an EXTERNAL-origin key; footnote 8: pending deletion -> KMSInvalidState):
    # GetParametersForImport, ImportKeyMaterial: ?9 ?9 X8/9 ✓ ; DeleteImportedKeyMaterial: ✓ ✓ ✓ ✓
    "GetParametersForImport": (OK, OK, IS_PD, OK),
    "ImportKeyMaterial": (OK, OK, IS_PD, OK),
    "DeleteImportedKeyMaterial": _ANY_STATE_ROW,
    # CreateAlias: ✓ ✓ X3 ✓
    "CreateAlias": _NOT_PD_ROW,
    # UpdateAlias, checked for the destination key: ✓ ✓ ?10 (destination pending deletion -> IS) ✓
    "UpdateAlias": _NOT_PD_ROW,
}

# Operations the v0.1 matrix must have: everything the key and crypto services call today.
REQUIRED_OPERATIONS = {
    "Encrypt", "Decrypt", "ReEncryptFrom", "ReEncryptTo", "GenerateDataKey", "GenerateDataKeyWithoutPlaintext",
    "DescribeKey", "GetKeyPolicy", "PutKeyPolicy", "ListResourceTags", "ListAliases", "DeleteAlias",
    "EnableKey", "DisableKey", "ScheduleKeyDeletion", "CancelKeyDeletion", "UpdateKeyDescription",
    "TagResource", "UntagResource", "CreateAlias", "UpdateAlias",
}

STATES = (KeyState.ENABLED, KeyState.DISABLED, KeyState.PENDING_DELETION, KeyState.PENDING_IMPORT)


def _cases():
    # Only operations the implementation has: an operation added later is covered by
    # test_every_matrix_operation_has_an_expectation until its row is written here.
    for operation in sorted(set(EXPECTED) & set(MATRIX)):
        for state, expectation in zip(STATES, EXPECTED[operation]):
            if expectation is not NA:
                yield pytest.param(operation, state, expectation, id=f"{operation}-{state.value}")


def test_required_operations_are_in_the_matrix():
    assert REQUIRED_OPERATIONS <= set(MATRIX), sorted(REQUIRED_OPERATIONS - set(MATRIX))


def test_every_matrix_operation_has_an_expectation():
    """A new MATRIX row must come with its expectation from the AWS table above."""
    assert set(MATRIX) <= set(EXPECTED), sorted(set(MATRIX) - set(EXPECTED))


@pytest.mark.parametrize(("operation", "state", "expectation"), list(_cases()))
def test_require_state_matches_aws_table(operation: str, state: KeyState, expectation):
    if expectation is OK:
        assert require_state(operation, state, ARN) is None
        return
    error_class, fragment = expectation
    with pytest.raises(KmsError) as info:
        require_state(operation, state, ARN)
    error = info.value
    assert type(error) is error_class, f"{operation} in {state.value}: {type(error).__name__}, expected {error_class.__name__}"
    assert error.code == error_class.code
    assert ARN in error.message and ARN in str(error)
    assert fragment in error.message
    if fragment == "pending deletion":
        assert "not pending deletion" not in error.message


@pytest.mark.parametrize("operation", sorted(MATRIX))
def test_deleted_key_is_not_found_for_every_operation(operation: str):
    with pytest.raises(KmsError) as info:
        require_state(operation, KeyState.DELETED, ARN)
    assert type(info.value) is NotFoundError
    assert info.value.code == "NotFoundException"
    assert ARN in info.value.message


def test_cancel_key_deletion_is_allowed_only_in_pending_deletion():
    allowed = []
    for state in KeyState:
        try:
            require_state("CancelKeyDeletion", state, ARN)
        except KmsError:
            continue
        allowed.append(state)
    assert allowed == [KeyState.PENDING_DELETION, KeyState.PENDING_REPLICA_DELETION]


@pytest.mark.parametrize("operation", sorted(MATRIX))
def test_pending_replica_deletion_refuses_and_allows_what_pending_deletion_does(operation: str):
    """AWS's key-state table gives PendingDeletion and PendingReplicaDeletion one column; the refusal names the
    state the key is in."""
    def outcome(state: KeyState) -> tuple[type, str] | None:
        try:
            require_state(operation, state, ARN)
        except KmsError as error:
            return type(error), error.message
        return None

    pending, replica = outcome(KeyState.PENDING_DELETION), outcome(KeyState.PENDING_REPLICA_DELETION)
    assert (pending is None) == (replica is None)
    if pending is not None and replica is not None:
        assert pending[0] is replica[0]
        assert "pending replica deletion" in replica[1] if "pending deletion" in pending[1] else replica == pending


def test_disabled_is_only_for_crypto_operations():
    """DisabledException answers a crypto operation on a Disabled key; lifecycle operations on a Disabled
    key succeed (Enable/Disable/Schedule/Tag/...)."""
    for operation in ("EnableKey", "DisableKey", "ScheduleKeyDeletion", "UpdateKeyDescription", "TagResource",
                      "UntagResource", "CreateAlias", "UpdateAlias", "PutKeyPolicy", "DescribeKey"):
        if operation in MATRIX:
            require_state(operation, KeyState.DISABLED, ARN)


def test_wire_codes_and_statuses():
    assert (DisabledError.code, DisabledError.status) == ("DisabledException", 409)
    assert (InvalidStateError.code, InvalidStateError.status) == ("KMSInvalidStateException", 409)
    assert NotFoundError.code == "NotFoundException"


def test_key_state_values_are_aws_enum_values():
    aws = {"Creating", "Enabled", "Disabled", "PendingDeletion", "PendingImport", "PendingReplicaDeletion",
           "Unavailable", "Updating"}
    for state in KeyState:
        if state is not KeyState.DELETED:
            assert state.value in aws
