"""Key rotation end to end, on SQLite and PostgreSQL: automatic-rotation settings (EnableKeyRotation,
GetKeyRotationStatus, DisableKeyRotation), on-demand rotation and its limit, ListKeyRotations, and
automatic rotation driven by the service clock -- exactly once per due date, also with two server
processes sharing one database."""
from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from tests.e2e.helpers import advance_days, create_key, error_code, maintenance, unvalidated_client

DATE_TOLERANCE = timedelta(minutes=10)  # server and test share the system clock; this only absorbs test duration


# -- helpers -----------------------------------------------------------------------------------------





def utc(moment: datetime) -> datetime:
    return moment.astimezone(timezone.utc)


def near(actual: datetime, expected: datetime, tolerance: timedelta = DATE_TOLERANCE) -> bool:
    return abs(utc(actual) - utc(expected)) <= tolerance


def all_rotations(kms: Any, key_id: str, include: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    marker = None
    for _ in range(200):
        kwargs: dict[str, Any] = {"KeyId": key_id, "Limit": limit}
        if include:
            kwargs["IncludeKeyMaterial"] = include
        if marker:
            kwargs["Marker"] = marker
        page = kms.list_key_rotations(**kwargs)
        assert len(page["Rotations"]) <= limit
        out += page["Rotations"]
        if not page["Truncated"]:
            assert "NextMarker" not in page
            return out
        marker = page["NextMarker"]
    raise AssertionError("ListKeyRotations never stopped paginating")


def automatic(rotations: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in rotations if r.get("RotationType") == "AUTOMATIC"]


def current_material(kms: Any, key_id: str) -> str:
    material = kms.describe_key(KeyId=key_id)["KeyMetadata"].get("CurrentKeyMaterialId")
    assert material, "a symmetric AWS_KMS key must report CurrentKeyMaterialId"
    return material


# -- EnableKeyRotation / GetKeyRotationStatus / DisableKeyRotation --------------------------------------

def test_new_key_has_rotation_disabled(kms):
    key = create_key(kms)["KeyId"]
    status = kms.get_key_rotation_status(KeyId=key)
    assert status["KeyRotationEnabled"] is False
    assert "NextRotationDate" not in status
    assert "RotationPeriodInDays" not in status


def test_enable_rotation_defaults_to_365_days(kms):
    key = create_key(kms)["KeyId"]
    before = datetime.now(timezone.utc)
    kms.enable_key_rotation(KeyId=key)
    status = kms.get_key_rotation_status(KeyId=key)
    assert status["KeyRotationEnabled"] is True
    assert status["RotationPeriodInDays"] == 365
    assert near(status["NextRotationDate"], before + timedelta(days=365))
    assert status["KeyId"].endswith(key)


@pytest.mark.parametrize("period", [90, 2560, 180])
def test_enable_rotation_with_valid_period(kms, period):
    key = create_key(kms)["KeyId"]
    before = datetime.now(timezone.utc)
    kms.enable_key_rotation(KeyId=key, RotationPeriodInDays=period)
    status = kms.get_key_rotation_status(KeyId=key)
    assert status["KeyRotationEnabled"] is True
    assert status["RotationPeriodInDays"] == period
    assert near(status["NextRotationDate"], before + timedelta(days=period))


@pytest.mark.parametrize("period", [89, 2561, 0, -1])
def test_enable_rotation_with_out_of_range_period_is_refused(shared_server, period):
    raw = unvalidated_client(shared_server)  # botocore would refuse 89 itself; the server must too
    key = create_key(raw)["KeyId"]
    assert error_code(raw.enable_key_rotation, KeyId=key, RotationPeriodInDays=period) == "ValidationException"
    assert raw.get_key_rotation_status(KeyId=key)["KeyRotationEnabled"] is False


def test_changing_the_period_keeps_rotation_enabled(kms):
    key = create_key(kms)["KeyId"]
    before = datetime.now(timezone.utc)
    kms.enable_key_rotation(KeyId=key, RotationPeriodInDays=400)
    kms.enable_key_rotation(KeyId=key, RotationPeriodInDays=100)
    status = kms.get_key_rotation_status(KeyId=key)
    assert status["KeyRotationEnabled"] is True
    assert status["RotationPeriodInDays"] == 100
    assert near(status["NextRotationDate"], before + timedelta(days=100))


def test_disable_rotation(kms):
    key = create_key(kms)["KeyId"]
    kms.enable_key_rotation(KeyId=key, RotationPeriodInDays=90)
    kms.disable_key_rotation(KeyId=key)
    status = kms.get_key_rotation_status(KeyId=key)
    assert status["KeyRotationEnabled"] is False
    assert "NextRotationDate" not in status
    # Enabling again starts a fresh period.
    before = datetime.now(timezone.utc)
    kms.enable_key_rotation(KeyId=key)
    status = kms.get_key_rotation_status(KeyId=key)
    assert status["KeyRotationEnabled"] is True
    assert near(status["NextRotationDate"], before + timedelta(days=status["RotationPeriodInDays"]))


def test_rotation_on_a_disabled_key_is_refused(kms):
    key = create_key(kms)["KeyId"]
    kms.disable_key(KeyId=key)
    assert error_code(kms.enable_key_rotation, KeyId=key) == "DisabledException"
    assert error_code(kms.enable_key_rotation, KeyId=key, RotationPeriodInDays=90) == "DisabledException"
    assert error_code(kms.disable_key_rotation, KeyId=key) == "DisabledException"
    assert error_code(kms.rotate_key_on_demand, KeyId=key) == "DisabledException"
    kms.enable_key(KeyId=key)
    kms.enable_key_rotation(KeyId=key)
    assert kms.get_key_rotation_status(KeyId=key)["KeyRotationEnabled"] is True


@pytest.mark.parametrize("spec,usage", [("HMAC_256", "GENERATE_VERIFY_MAC"), ("RSA_2048", "ENCRYPT_DECRYPT"),
                                        ("ECC_NIST_P256", "SIGN_VERIFY")])
def test_rotation_of_non_symmetric_keys_is_unsupported(kms, spec, usage):
    key = create_key(kms, KeySpec=spec, KeyUsage=usage)["KeyId"]
    assert error_code(kms.enable_key_rotation, KeyId=key) == "UnsupportedOperationException"
    assert error_code(kms.disable_key_rotation, KeyId=key) == "UnsupportedOperationException"
    assert error_code(kms.rotate_key_on_demand, KeyId=key) == "UnsupportedOperationException"
    assert error_code(kms.get_key_rotation_status, KeyId=key) == "UnsupportedOperationException"
    assert error_code(kms.list_key_rotations, KeyId=key) == "UnsupportedOperationException"


def test_rotation_of_unknown_key_is_not_found(kms):
    missing = "00000000-0000-4000-8000-000000000000"
    assert error_code(kms.enable_key_rotation, KeyId=missing) == "NotFoundException"
    assert error_code(kms.rotate_key_on_demand, KeyId=missing) == "NotFoundException"
    assert error_code(kms.list_key_rotations, KeyId=missing) == "NotFoundException"


# -- RotateKeyOnDemand --------------------------------------------------------------------------------

def test_rotate_on_demand_switches_material_and_keeps_old_ciphertexts(kms):
    key = create_key(kms)["KeyId"]
    original = current_material(kms, key)
    old_blob = kms.encrypt(KeyId=key, Plaintext=b"before rotation", EncryptionContext={"c": "1"})["CiphertextBlob"]
    assert kms.decrypt(CiphertextBlob=old_blob, EncryptionContext={"c": "1"})["KeyMaterialId"] == original

    response = kms.rotate_key_on_demand(KeyId=key)
    assert response["KeyId"].endswith(key)
    rotated = current_material(kms, key)
    assert rotated != original

    old = kms.decrypt(CiphertextBlob=old_blob, EncryptionContext={"c": "1"})
    assert old["Plaintext"] == b"before rotation"
    assert old["KeyMaterialId"] == original

    new_blob = kms.encrypt(KeyId=key, Plaintext=b"after rotation")["CiphertextBlob"]
    new = kms.decrypt(CiphertextBlob=new_blob)
    assert new["Plaintext"] == b"after rotation"
    assert new["KeyMaterialId"] == rotated

    data_key = kms.generate_data_key(KeyId=key, KeySpec="AES_256")
    assert data_key["KeyMaterialId"] == rotated
    assert kms.decrypt(CiphertextBlob=data_key["CiphertextBlob"])["Plaintext"] == data_key["Plaintext"]

    # Rotating again: both older materials still decrypt.
    kms.rotate_key_on_demand(KeyId=key)
    third = current_material(kms, key)
    assert third not in (original, rotated)
    assert kms.decrypt(CiphertextBlob=old_blob, EncryptionContext={"c": "1"})["Plaintext"] == b"before rotation"
    assert kms.decrypt(CiphertextBlob=new_blob)["KeyMaterialId"] == rotated
    # ReEncrypt moves an old ciphertext to the newest material.
    re = kms.re_encrypt(CiphertextBlob=old_blob, SourceEncryptionContext={"c": "1"}, DestinationKeyId=key)
    assert kms.decrypt(CiphertextBlob=re["CiphertextBlob"])["KeyMaterialId"] == third


def test_on_demand_rotation_does_not_change_automatic_rotation(kms):
    key = create_key(kms)["KeyId"]
    kms.enable_key_rotation(KeyId=key, RotationPeriodInDays=120)
    before = kms.get_key_rotation_status(KeyId=key)
    kms.rotate_key_on_demand(KeyId=key)
    after = kms.get_key_rotation_status(KeyId=key)
    assert after["KeyRotationEnabled"] is True
    assert after["RotationPeriodInDays"] == 120
    assert utc(after["NextRotationDate"]) == utc(before["NextRotationDate"])


def test_on_demand_rotation_limit_and_list_key_rotations_pagination(kms):
    key = create_key(kms)["KeyId"]
    original = current_material(kms, key)
    blob = kms.encrypt(KeyId=key, Plaintext=b"original material")["CiphertextBlob"]
    materials = [original]
    for _ in range(25):
        kms.rotate_key_on_demand(KeyId=key)
        materials.append(current_material(kms, key))
    assert len(set(materials)) == 26
    assert error_code(kms.rotate_key_on_demand, KeyId=key) == "LimitExceededException"
    assert current_material(kms, key) == materials[-1]  # the refused rotation changed nothing
    assert kms.decrypt(CiphertextBlob=blob)["Plaintext"] == b"original material"

    # ROTATIONS_ONLY (the default): the 25 rotations, not the original material; pages of at most 2.
    first = kms.list_key_rotations(KeyId=key, Limit=2)
    assert len(first["Rotations"]) == 2 and first["Truncated"] is True and first["NextMarker"]
    rotations = all_rotations(kms, key, limit=2)
    assert [r["KeyMaterialId"] for r in rotations] == materials[1:]
    assert all(r["RotationType"] == "ON_DEMAND" for r in rotations)
    assert all(r["KeyId"].endswith(key) for r in rotations)
    assert [r["KeyMaterialState"] for r in rotations] == ["NON_CURRENT"] * 24 + ["CURRENT"]
    dates = [utc(r["RotationDate"]) for r in rotations]
    assert dates == sorted(dates)
    assert all_rotations(kms, key, include="ROTATIONS_ONLY", limit=2) == rotations

    # ALL_KEY_MATERIAL adds the original material (first, never rotated to).
    everything = all_rotations(kms, key, include="ALL_KEY_MATERIAL", limit=2)
    assert [r["KeyMaterialId"] for r in everything] == materials
    assert "RotationType" not in everything[0]
    assert everything[0]["KeyMaterialState"] == "NON_CURRENT"
    assert everything[1:] == rotations


def test_list_key_rotations_of_a_never_rotated_key(kms):
    key = create_key(kms)["KeyId"]
    page = kms.list_key_rotations(KeyId=key)
    assert page["Rotations"] == [] and page["Truncated"] is False
    everything = kms.list_key_rotations(KeyId=key, IncludeKeyMaterial="ALL_KEY_MATERIAL")["Rotations"]
    assert len(everything) == 1
    assert everything[0]["KeyMaterialId"] == current_material(kms, key)
    assert everything[0]["KeyMaterialState"] == "CURRENT"


# -- Automatic rotation, driven by the service clock ---------------------------------------------------

def test_automatic_rotation_happens_once_per_due_date(servers):
    server = servers.start(name="auto", KEYLEDGER_MAINTENANCE_INTERVAL="0")  # only our CLI passes rotate
    kms = server.client()
    key = create_key(kms)["KeyId"]
    idle = create_key(kms)["KeyId"]  # rotation never enabled: never rotated
    original = current_material(kms, key)
    idle_material = current_material(kms, idle)
    blob = kms.encrypt(KeyId=key, Plaintext=b"made before the rotation")["CiphertextBlob"]
    kms.enable_key_rotation(KeyId=key, RotationPeriodInDays=90)

    # Not due yet: nothing happens.
    assert maintenance(server)["rotated"] == []
    assert current_material(kms, key) == original

    advance_days(server, 91)
    report = maintenance(server)
    assert report["rotated"] == [key]
    assert maintenance(server)["rotated"] == []  # exactly once per due date
    time.sleep(1.2)  # the server re-reads the clock offset at most once a second

    rotations = kms.list_key_rotations(KeyId=key)["Rotations"]
    assert len(rotations) == 1
    (rotation,) = rotations
    assert rotation["RotationType"] == "AUTOMATIC"
    assert rotation["KeyMaterialState"] == "CURRENT"
    rotated = current_material(kms, key)
    assert rotation["KeyMaterialId"] == rotated != original
    assert near(rotation["RotationDate"], datetime.now(timezone.utc) + timedelta(days=91))

    status = kms.get_key_rotation_status(KeyId=key)
    assert status["KeyRotationEnabled"] is True
    assert status["RotationPeriodInDays"] == 90
    assert near(status["NextRotationDate"], utc(rotation["RotationDate"]) + timedelta(days=90), timedelta(seconds=5))

    assert kms.decrypt(CiphertextBlob=blob)["Plaintext"] == b"made before the rotation"
    new_blob = kms.encrypt(KeyId=key, Plaintext=b"after")["CiphertextBlob"]
    assert kms.decrypt(CiphertextBlob=new_blob)["KeyMaterialId"] == rotated

    assert current_material(kms, idle) == idle_material
    assert kms.list_key_rotations(KeyId=idle)["Rotations"] == []

    # The next due date, 90 days after the rotation, rotates once more.
    advance_days(server, 91)
    assert maintenance(server)["rotated"] == [key]
    assert maintenance(server)["rotated"] == []
    assert len(automatic(all_rotations(kms, key))) == 2


def test_automatic_rotation_skips_disabled_and_rotation_disabled_keys(servers):
    server = servers.start(name="skip", KEYLEDGER_MAINTENANCE_INTERVAL="0")
    kms = server.client()
    disabled = create_key(kms)["KeyId"]
    switched_off = create_key(kms)["KeyId"]
    pending = create_key(kms)["KeyId"]
    for key in (disabled, switched_off, pending):
        kms.enable_key_rotation(KeyId=key, RotationPeriodInDays=90)
    kms.disable_key(KeyId=disabled)
    kms.disable_key_rotation(KeyId=switched_off)
    kms.schedule_key_deletion(KeyId=pending, PendingWindowInDays=30)
    advance_days(server, 91)
    report = maintenance(server)
    assert report["rotated"] == []
    for key in (disabled, switched_off):
        assert kms.list_key_rotations(KeyId=key)["Rotations"] == []
    # AWS: when a disabled key whose rotation date passed is enabled again, it is rotated right away.
    kms.enable_key(KeyId=disabled)
    assert maintenance(server)["rotated"] == [disabled]
    assert len(automatic(all_rotations(kms, disabled))) == 1
    assert maintenance(server)["rotated"] == []


def test_rotation_of_a_key_pending_deletion(kms):
    key = create_key(kms)["KeyId"]
    kms.enable_key_rotation(KeyId=key, RotationPeriodInDays=90)
    kms.schedule_key_deletion(KeyId=key, PendingWindowInDays=7)
    assert kms.get_key_rotation_status(KeyId=key)["KeyRotationEnabled"] is True  # reading is allowed
    assert kms.list_key_rotations(KeyId=key)["Rotations"] == []
    assert error_code(kms.enable_key_rotation, KeyId=key) == "KMSInvalidStateException"
    assert error_code(kms.disable_key_rotation, KeyId=key) == "KMSInvalidStateException"
    assert error_code(kms.rotate_key_on_demand, KeyId=key) == "KMSInvalidStateException"


def test_two_servers_on_one_database_rotate_each_key_exactly_once(servers):
    first = servers.start(name="cluster", KEYLEDGER_MAINTENANCE_INTERVAL="0.3")
    second = servers.start(name="cluster", KEYLEDGER_MAINTENANCE_INTERVAL="0.3")
    assert first.data_dir == second.data_dir and first.database_url == second.database_url
    assert first.port != second.port
    kms1, kms2 = first.client(), second.client()
    keys = [create_key(kms1 if i % 2 else kms2)["KeyId"] for i in range(5)]
    for i, key in enumerate(keys):
        (kms2 if i % 2 else kms1).enable_key_rotation(KeyId=key, RotationPeriodInDays=90)
    # Both servers see every key.
    for key in keys:
        assert kms1.get_key_rotation_status(KeyId=key)["KeyRotationEnabled"] is True
        assert kms2.get_key_rotation_status(KeyId=key)["KeyRotationEnabled"] is True

    advance_days(first, 91)

    counts: dict[str, int] = {}
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        counts = {key: len(automatic(all_rotations(kms1, key))) for key in keys}
        assert all(n <= 1 for n in counts.values()), f"a key was rotated more than once: {counts}"
        if all(n == 1 for n in counts.values()):
            break
        time.sleep(0.3)
    assert all(n == 1 for n in counts.values()), f"not every key was rotated within 20 s: {counts}\n{first.log()}"

    time.sleep(2.0)  # several more maintenance passes in each server
    for kms in (kms1, kms2):
        for key in keys:
            rotations = all_rotations(kms, key, include="ALL_KEY_MATERIAL")
            assert len(automatic(rotations)) == 1, rotations
            assert len(rotations) == 2, rotations
            assert rotations[-1]["KeyMaterialState"] == "CURRENT"
            assert current_material(kms, key) == rotations[-1]["KeyMaterialId"]
    assert first.process is not None and first.process.poll() is None
    assert second.process is not None and second.process.poll() is None
