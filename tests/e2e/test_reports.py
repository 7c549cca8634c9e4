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


def test_access_report_at_an_instant(servers):
    server = servers.start("access")
    kms = server.client()
    arn = kms.create_key()["KeyMetadata"]["Arn"]
    rows = json.loads(keyledger(server, "report", "access", "--key", arn, "--operation", "Encrypt", "--json"))
    assert rows == [{"Operation": "Encrypt", "Principal": "arn:aws:iam::111122223333:root", "Allowed": True,
                     "Reason": rows[0]["Reason"]}]
    grantee = "arn:aws:iam::111122223333:user/reporter"
    grant_id = kms.create_grant(KeyId=arn, GranteePrincipal=grantee, Operations=["Encrypt"])["GrantId"]
    granted = json.loads(keyledger(server, "report", "access", "--key", arn, "--operation", "Encrypt", "--json"))
    assert [(r["Principal"], r["Allowed"]) for r in granted] == [("arn:aws:iam::111122223333:root", True),
                                                                  (grantee, True)]
    assert grant_id in granted[1]["Reason"]
    kms.disable_key(KeyId=arn)
    everything = json.loads(keyledger(server, "report", "access", "--key", arn, "--json"))
    encrypt = [r for r in everything if r["Operation"] == "Encrypt"]
    assert encrypt and encrypt[0]["Allowed"] is False and "disabled" in encrypt[0]["Reason"]
    assert any(r["Operation"] == "EnableKey" and r["Allowed"] for r in everything)
