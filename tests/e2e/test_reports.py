"""`keyledger report rotation|usage` against a real server's store."""
from __future__ import annotations

import json

from tests.e2e.helpers import advance_days, keyledger


def test_rotation_report_names_keys_with_old_material(servers):
    server = servers.start("reports")
    kms = server.client()
    stale = kms.create_key()["KeyMetadata"]["KeyId"]
    rotated = kms.create_key()["KeyMetadata"]["KeyId"]
    assert json.loads(keyledger(server, "report", "rotation", "--json")) == []
    advance_days(server, 400)
    kms.rotate_key_on_demand(KeyId=rotated)
    report = json.loads(keyledger(server, "report", "rotation", "--json"))
    assert [row["KeyArn"].rsplit("/", 1)[-1] for row in report] == [stale]
    assert report[0]["MaterialAgeDays"] >= 400 and report[0]["LimitDays"] == 365


def test_usage_report_counts_calls_per_operation_and_principal(servers):
    server = servers.start("usage")
    kms = server.client()
    key_id = kms.create_key()["KeyMetadata"]["KeyId"]
    for _ in range(3):
        kms.encrypt(KeyId=key_id, Plaintext=b"x")
    kms.disable_key(KeyId=key_id)
    try:
        kms.encrypt(KeyId=key_id, Plaintext=b"x")
    except kms.exceptions.DisabledException:
        pass
    rows = json.loads(keyledger(server, "report", "usage", "--key", key_id, "--json"))
    counts = {(r["EventName"], r["Outcome"]): r["Calls"] for r in rows}
    assert counts == {("CreateKey", "succeeded"): 1, ("Encrypt", "succeeded"): 3, ("DisableKey", "succeeded"): 1,
                      ("Encrypt", "failed"): 1}
    assert {r["Principal"] for r in rows} == {"arn:aws:iam::111122223333:root"}
    assert "Usage of" in keyledger(server, "report", "usage", "--key", key_id)
