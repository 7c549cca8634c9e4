"""The AWS price estimate (application/pricing.py) and the shipped price table."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from application.pricing import PriceTable, estimate, key_life, request_class
from infrastructure.price_table import load_price_table

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
HOURS = 730


def table() -> PriceTable:
    return load_price_table(None)


def test_the_shipped_table_loads() -> None:
    prices = table()
    assert prices.currency == "USD" and prices.key_month == 1.0 and prices.per_10000_requests["symmetric"] == 0.03


def test_a_broken_table_is_refused_naming_the_file(tmp_path: Path) -> None:
    broken = tmp_path / "prices.json"
    broken.write_text(json.dumps({"name": "x"}))
    with pytest.raises(ValueError, match=str(broken)):
        load_price_table(broken)
    data = json.loads(json.dumps(table().__dict__, default=dict))
    data["key_month"] = -1
    broken.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="0 or more"):
        load_price_table(broken)


def test_a_key_month_and_its_rotations() -> None:
    end = T0 + timedelta(hours=HOURS)
    life = key_life("k", [("Created", T0), ("MaterialRotated", T0 + timedelta(hours=HOURS / 2)),
                          ("MaterialRotated", end), ("MaterialRotated", end)], T0, end, 2)
    assert life.charged_hours == HOURS and life.rotation_hours == (HOURS / 2, 0.0)
    result = estimate(table(), [life], {})
    assert result["Total"] == pytest.approx(1.5)


def test_pending_deletion_is_free_and_a_canceled_one_is_not() -> None:
    end = T0 + timedelta(hours=HOURS)
    half = T0 + timedelta(hours=HOURS / 2)
    deleted = key_life("k", [("Created", T0), ("DeletionScheduled", half), ("Deleted", end)], T0, end, 2)
    pending = key_life("k", [("Created", T0), ("DeletionScheduled", half)], T0, end, 2)
    canceled = key_life("k", [("Created", T0), ("DeletionScheduled", half), ("DeletionCanceled", half)], T0, end, 2)
    assert deleted.charged_hours == pending.charged_hours == HOURS / 2
    assert canceled.charged_hours == HOURS


def test_requests_by_class_after_the_free_tier() -> None:
    requests = {("2026-01", "symmetric"): 30_000, ("2026-01", "asymmetric"): 10_000, ("2026-02", "symmetric"): 5_000}
    result = estimate(table(), [], requests)
    lines = {line["Item"]: line for line in result["Lines"]}
    assert lines["symmetric requests (per 10,000)"]["Quantity"] == 10_000  # 20,000 free in January, 5,000 in February
    assert lines["asymmetric requests (per 10,000)"]["Cost"] == pytest.approx(0.15)
    assert result["Total"] == pytest.approx(0.03 + 0.15)


@pytest.mark.parametrize("event, spec, params, expected", [
    ("Encrypt", "SYMMETRIC_DEFAULT", None, "symmetric"), ("GenerateMac", "HMAC_256", None, "symmetric"),
    ("Sign", "RSA_2048", None, "rsa_2048"), ("Sign", "ECC_NIST_P256", None, "asymmetric"),
    ("GenerateDataKeyPair", "SYMMETRIC_DEFAULT", {"keyPairSpec": "RSA_4096"}, "rsa_generate_data_key_pair"),
    ("GenerateDataKeyPairWithoutPlaintext", "SYMMETRIC_DEFAULT", {"keyPairSpec": "ECC_NIST_P384"},
     "ecc_generate_data_key_pair"),
])
def test_request_classes(event: str, spec: str, params: dict | None, expected: str) -> None:
    assert request_class(event, spec, params) == expected
