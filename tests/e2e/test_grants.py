"""Grants end to end with boto3, on SQLite and PostgreSQL: CreateGrant, ListGrants, ListRetirableGrants,
RetireGrant (by token, or by key and grant id), RevokeGrant; every error AWS lists for them that keyledger
can produce; the key-state matrix; grants surviving a restart and a replay; grant tokens never stored;
grants in point-in-time answers.

Only the administrator (the account root) calls here: enforcing grants on other principals' requests is
tested with the authorizer. Who may retire a grant is decided by the grant service and tested in
tests/unit/test_grant_service.py with other callers.
"""
from __future__ import annotations

import base64
import json
import re
import time
import uuid
from datetime import datetime
from typing import Any

import httpx
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from tests.conftest import ServerFactory
from tests.e2e.helpers import (
    advance_days,
    error_code,
    key_arn,
    keyledger,
    maintenance,
    postgres_tables,
    secret_hits,
)
from tests.e2e.test_audit_support import export_jsonl
from tests.servers import ACCOUNT_ID, ADMIN_KEY_ID, ADMIN_SECRET, Server
from tests.stored_states import sqlite_states

ROOT = f"arn:aws:iam::{ACCOUNT_ID}:root"
GRANT_ID = re.compile(r"[0-9a-f]{64}")


def user(name: str) -> str:
    return f"arn:aws:iam::{ACCOUNT_ID}:user/{name}-{uuid.uuid4().hex[:8]}"


def role(name: str) -> str:
    return f"arn:aws:iam::{ACCOUNT_ID}:role/{name}-{uuid.uuid4().hex[:8]}"


def new_key(kms: Any, **kwargs: Any) -> str:
    return kms.create_key(**kwargs)["KeyMetadata"]["KeyId"]


def grant(kms: Any, key_id: str, grantee: str, operations: tuple[str, ...] = ("Encrypt", "Decrypt"),
          **kwargs: Any) -> dict[str, Any]:
    return kms.create_grant(KeyId=key_id, GranteePrincipal=grantee, Operations=list(operations), **kwargs)


def grant_ids(kms: Any, key_id: str, **filters: Any) -> list[str]:
    return [g["GrantId"] for g in kms.list_grants(KeyId=key_id, **filters)["Grants"]]


def paged(call: Any, limit: int, **kwargs: Any) -> list[list[str]]:
    pages, marker = [], None
    while True:
        page = call(Limit=limit, **kwargs, **({"Marker": marker} if marker else {}))
        pages.append([g["GrantId"] for g in page["Grants"]])
        if not page["Truncated"]:
            assert "NextMarker" not in page
            return pages
        marker = page["NextMarker"]


# -- create, list, retire, revoke --------------------------------------------------------------------

def test_create_list_retire_by_token(kms):
    key_id = new_key(kms)
    grantee, retiring = user("alice"), role("ops")
    created = grant(kms, key_id, grantee, ("Encrypt", "Decrypt", "RetireGrant"), RetiringPrincipal=retiring,
                    Constraints={"EncryptionContextSubset": {"Department": "IT"}}, Name="alice-it")
    assert GRANT_ID.fullmatch(created["GrantId"]) and created["GrantToken"]

    (entry,) = kms.list_grants(KeyId=key_id)["Grants"]
    assert entry["GrantId"] == created["GrantId"] and entry["KeyId"] == key_arn(key_id)
    assert (entry["Name"], entry["GranteePrincipal"], entry["RetiringPrincipal"], entry["IssuingAccount"]) == (
        "alice-it", grantee, retiring, ROOT)
    assert entry["Operations"] == ["Encrypt", "Decrypt", "RetireGrant"]
    assert entry["Constraints"] == {"EncryptionContextSubset": {"Department": "IT"}}
    # CreationDate is when the service clock saw the change: after the key was made.
    key_created = kms.describe_key(KeyId=key_id)["KeyMetadata"]["CreationDate"]
    assert isinstance(entry["CreationDate"], datetime) and entry["CreationDate"] >= key_created
    assert grant_ids(kms, key_id, GrantId=created["GrantId"]) == [created["GrantId"]]
    assert grant_ids(kms, key_id, GranteePrincipal=grantee) == [created["GrantId"]]
    assert grant_ids(kms, key_id, GranteePrincipal=user("nobody")) == []
    assert grant_ids(kms, key_id, GrantId="0" * 64) == []  # well formed, no such grant: nothing listed

    # Every KeyId form names the key; the token works at once, without KeyId.
    alias = f"alias/grants-{uuid.uuid4().hex[:8]}"
    kms.create_alias(AliasName=alias, TargetKeyId=key_id)
    assert grant_ids(kms, alias) == grant_ids(kms, key_arn(key_id)) == [created["GrantId"]]
    kms.retire_grant(GrantToken=created["GrantToken"])
    assert grant_ids(kms, key_id) == []
    assert error_code(kms.retire_grant, GrantToken=created["GrantToken"]) == "NotFoundException"


def test_unnamed_grant_lists_an_empty_name_and_omits_what_it_lacks(kms):
    key_id = new_key(kms)
    created = grant(kms, key_id, user("bob"), ("DescribeKey",))
    (entry,) = kms.list_grants(KeyId=key_id)["Grants"]
    assert entry["Name"] == "" and "RetiringPrincipal" not in entry and "Constraints" not in entry
    assert entry["GrantId"] == created["GrantId"]


def test_name_makes_a_retry_return_the_same_grant(kms):
    key_id = new_key(kms)
    grantee = user("carol")
    params = dict(Operations=["Decrypt", "Encrypt"], GranteePrincipal=grantee, Name="retry-me",
                  Constraints={"EncryptionContextEquals": {"a": "1"}})
    first = kms.create_grant(KeyId=key_id, **params)
    again = kms.create_grant(KeyId=key_arn(key_id), **{**params, "Operations": ["Encrypt", "Decrypt"]})
    assert again["GrantId"] == first["GrantId"] and again["GrantToken"] != first["GrantToken"]
    assert grant_ids(kms, key_id) == [first["GrantId"]]
    # Same name, different parameters: a new grant (names need not be unique). No name: always new.
    other = kms.create_grant(KeyId=key_id, **{**params, "Operations": ["Decrypt"]})
    unnamed = [grant(kms, key_id, grantee)["GrantId"] for _ in range(2)]
    assert len({first["GrantId"], other["GrantId"], *unnamed}) == 4
    assert sorted(grant_ids(kms, key_id)) == sorted([first["GrantId"], other["GrantId"], *unnamed])
    # All tokens of a grant are interchangeable: the retry's token retires the original grant.
    kms.retire_grant(GrantToken=again["GrantToken"])
    assert first["GrantId"] not in grant_ids(kms, key_id)
    assert error_code(kms.retire_grant, GrantToken=first["GrantToken"]) == "NotFoundException"


def test_list_grants_pages_with_limit_and_marker(kms):
    key_id = new_key(kms)
    made = sorted(grant(kms, key_id, user(f"p{i}"))["GrantId"] for i in range(7))
    pages = paged(kms.list_grants, 3, KeyId=key_id)
    assert [len(p) for p in pages] == [3, 3, 1] and sum(pages, []) == made
    assert paged(kms.list_grants, 100, KeyId=key_id) == [made]
    assert error_code(kms.list_grants, KeyId=key_id, Marker="not-a-marker") == "InvalidMarkerException"


def test_retire_by_key_and_grant_id_and_revoke(kms):
    key_id = new_key(kms)
    retired, revoked, kept = (grant(kms, key_id, user(n))["GrantId"] for n in ("r", "v", "k"))
    kms.retire_grant(KeyId=key_arn(key_id), GrantId=retired)
    kms.revoke_grant(KeyId=key_id, GrantId=revoked)
    assert grant_ids(kms, key_id) == [kept]
    assert error_code(kms.revoke_grant, KeyId=key_id, GrantId=revoked) == "NotFoundException"
    assert error_code(kms.retire_grant, KeyId=key_id, GrantId=retired) == "NotFoundException"
    # A grant id names a grant of one key only.
    other = new_key(kms)
    assert error_code(kms.revoke_grant, KeyId=other, GrantId=kept) == "NotFoundException"
    assert grant_ids(kms, key_id) == [kept]


def test_dry_run_checks_everything_and_changes_nothing(kms):
    key_id = new_key(kms)
    assert error_code(grant, kms, key_id, user("d"), DryRun=True) == "DryRunOperationException"
    assert grant_ids(kms, key_id) == []
    created = grant(kms, key_id, user("d"))
    for call, kwargs in ((kms.retire_grant, {"GrantToken": created["GrantToken"]}),
                         (kms.retire_grant, {"KeyId": key_id, "GrantId": created["GrantId"]}),
                         (kms.revoke_grant, {"KeyId": key_id, "GrantId": created["GrantId"]})):
        assert error_code(call, DryRun=True, **kwargs) == "DryRunOperationException"
    assert grant_ids(kms, key_id) == [created["GrantId"]]
    # DryRun does not hide a real refusal.
    assert error_code(grant, kms, key_id, user("d"), ("Sign",), DryRun=True) == "ValidationException"
    assert error_code(kms.revoke_grant, KeyId=key_id, GrantId="1" * 64, DryRun=True) == "NotFoundException"


# -- errors ------------------------------------------------------------------------------------------

def test_create_grant_errors(kms):
    key_id = new_key(kms)
    missing = str(uuid.uuid4())
    assert error_code(grant, kms, missing, user("e")) == "NotFoundException"
    assert error_code(grant, kms, "alias/never-made-" + uuid.uuid4().hex[:6], user("e")) == "NotFoundException"
    for bad in ("alice", "arn:aws:iam::111122223333:group/admins", "arn:aws:s3:::bucket", "111122223333",
                "arn:aws:iam::1234:user/short-account"):
        assert error_code(grant, kms, key_id, bad) == "InvalidArnException", bad
    assert error_code(grant, kms, key_id, user("e"), RetiringPrincipal="not-an-arn") == "InvalidArnException"
    assert error_code(grant, kms, key_id, user("e"), GrantTokens=["bm90LWEtdG9rZW4"]) == "InvalidGrantTokenException"
    nine = {f"k{i}": "v" for i in range(9)}
    assert error_code(grant, kms, key_id, user("e"), Constraints={"EncryptionContextEquals": nine}) == \
        "LimitExceededException"
    assert error_code(grant, kms, key_id, user("e"), Constraints={"EncryptionContextSubset": {"k": "v" * 400}}) == \
        "LimitExceededException"
    assert error_code(grant, kms, key_id, user("e"), ("Sign",)) == "ValidationException"
    assert error_code(grant, kms, key_id, user("e"), Name="spaces are not allowed") == "ValidationException"
    assert error_code(kms.create_grant, KeyId=key_id, Operations=["Encrypt"],
                      GranteeServicePrincipal="logs.us-east-1.amazonaws.com") == "ValidationException"
    assert error_code(kms.create_grant, KeyId=key_id, Operations=["Encrypt"]) == "ValidationException"
    assert error_code(grant, kms, key_id, user("e"), ("Nope",)) == "ValidationException"  # not in the enum
    assert error_code(grant, kms, key_id, user("e"), ()) == "ValidationException"
    assert grant_ids(kms, key_id) == []
    # A valid token of this service is accepted in GrantTokens.
    token = grant(kms, key_id, user("t"))["GrantToken"]
    assert GRANT_ID.fullmatch(grant(kms, key_id, user("u"), GrantTokens=[token])["GrantId"])


@pytest.mark.parametrize("spec, usage, allowed, refused", [
    ("SYMMETRIC_DEFAULT", "ENCRYPT_DECRYPT", ["GenerateDataKeyPair", "ReEncryptFrom", "CreateGrant"], ["GetPublicKey"]),
    ("RSA_2048", "ENCRYPT_DECRYPT", ["Encrypt", "GetPublicKey", "RetireGrant"], ["GenerateDataKey"]),
    ("ECC_NIST_P256", "SIGN_VERIFY", ["Sign", "Verify", "DescribeKey"], ["Encrypt"]),
    ("ECC_NIST_P256", "KEY_AGREEMENT", ["DeriveSharedSecret", "GetPublicKey"], ["Sign"]),
    ("HMAC_256", "GENERATE_VERIFY_MAC", ["GenerateMac", "VerifyMac"], ["GetPublicKey"]),
])
def test_operations_must_suit_the_key(kms, spec, usage, allowed, refused):
    key_id = new_key(kms, KeySpec=spec, KeyUsage=usage)
    assert GRANT_ID.fullmatch(grant(kms, key_id, user("ok"), tuple(allowed))["GrantId"])
    error = pytest.raises(Exception, grant, kms, key_id, user("no"), tuple(refused)).value
    assert error.response["Error"]["Code"] == "ValidationException"
    assert refused[0] in error.response["Error"]["Message"]
    if spec != "SYMMETRIC_DEFAULT":  # encryption context constraints only where requests carry a context
        assert error_code(grant, kms, key_id, user("c"), tuple(allowed[:1]),
                          Constraints={"EncryptionContextSubset": {"a": "b"}}) == "ValidationException"


def test_list_and_retire_errors(kms):
    key_id = new_key(kms)
    created = grant(kms, key_id, user("x"))
    assert error_code(kms.list_grants, KeyId=str(uuid.uuid4())) == "NotFoundException"
    assert error_code(kms.list_grants, KeyId=key_id, GrantId="not-hex") == "InvalidGrantIdException"
    assert error_code(kms.list_grants, KeyId=key_id, GranteePrincipal="bob") == "InvalidArnException"
    assert error_code(kms.retire_grant) == "ValidationException"
    assert error_code(kms.retire_grant, KeyId=key_id) == "ValidationException"
    assert error_code(kms.retire_grant, GrantId=created["GrantId"]) == "ValidationException"
    assert error_code(kms.retire_grant, KeyId=key_id, GrantId="xyz") == "InvalidGrantIdException"
    assert error_code(kms.revoke_grant, KeyId=key_id, GrantId="g" * 64) == "InvalidGrantIdException"
    assert error_code(kms.revoke_grant, KeyId=str(uuid.uuid4()), GrantId=created["GrantId"]) == "NotFoundException"
    assert error_code(kms.retire_grant, GrantToken="garbage") == "InvalidGrantTokenException"
    token = created["GrantToken"]
    for position in (0, len(token) // 2, len(token) - 1):  # any altered character invalidates the token
        flipped = token[:position] + ("A" if token[position] != "A" else "B") + token[position + 1:]
        assert error_code(kms.retire_grant, GrantToken=flipped) == "InvalidGrantTokenException"
    assert error_code(kms.retire_grant, GrantToken=token, GrantId="0" * 64) == "ValidationException"
    assert grant_ids(kms, key_id) == [created["GrantId"]]


def test_list_retirable_grants_across_keys(kms):
    retiring, other = role("retirer"), role("other")
    first, second = new_key(kms), new_key(kms)
    on_second = grant(kms, second, user("b"), RetiringPrincipal=retiring)["GrantId"]
    mine = sorted([grant(kms, first, user("a"), RetiringPrincipal=retiring)["GrantId"], on_second,
                   grant(kms, second, user("c"), ("DescribeKey",), RetiringPrincipal=retiring)["GrantId"]])
    grant(kms, first, user("d"), RetiringPrincipal=other)
    grant(kms, first, retiring)  # a grantee is not a retiring principal

    listed = kms.list_retirable_grants(RetiringPrincipal=retiring)
    assert sorted(g["GrantId"] for g in listed["Grants"]) == mine and listed["Truncated"] is False
    assert {g["KeyId"] for g in listed["Grants"]} == {key_arn(first), key_arn(second)}
    assert all(g["RetiringPrincipal"] == retiring for g in listed["Grants"])
    assert paged(kms.list_retirable_grants, 1, RetiringPrincipal=retiring) == [[g] for g in mine]

    assert error_code(kms.list_retirable_grants, RetiringPrincipal="arn:aws:iam::444455556666:role/x") == \
        "AccessDeniedException"
    assert error_code(kms.list_retirable_grants, RetiringPrincipal="nobody") == "InvalidArnException"
    assert error_code(kms.list_retirable_grants) == "ValidationException"
    assert error_code(kms.list_retirable_grants, RetiringPrincipal=retiring, Marker="bad") == "InvalidMarkerException"
    kms.retire_grant(KeyId=second, GrantId=on_second)
    assert sorted(g["GrantId"] for g in kms.list_retirable_grants(RetiringPrincipal=retiring)["Grants"]) == \
        sorted(set(mine) - {on_second})


# -- key states ----------------------------------------------------------------------------------------

def test_key_state_matrix(kms):
    key_id = new_key(kms)
    existing = [grant(kms, key_id, user(n))["GrantId"] for n in ("s1", "s2", "s3")]
    kms.disable_key(KeyId=key_id)
    assert error_code(grant, kms, key_id, user("s")) == "DisabledException"
    assert sorted(grant_ids(kms, key_id)) == sorted(existing)
    kms.retire_grant(KeyId=key_id, GrantId=existing[0])
    kms.schedule_key_deletion(KeyId=key_id, PendingWindowInDays=7)
    assert error_code(grant, kms, key_id, user("s")) == "KMSInvalidStateException"
    kms.revoke_grant(KeyId=key_id, GrantId=existing[1])
    assert grant_ids(kms, key_id) == [existing[2]]

    external = new_key(kms, Origin="EXTERNAL")
    assert error_code(grant, kms, external, user("s")) == "KMSInvalidStateException"
    assert grant_ids(kms, external) == []


def test_deleted_key_takes_its_grants_with_it(servers: ServerFactory):
    server = servers.start()
    kms = server.client()
    key_id, kept = new_key(kms), new_key(kms)
    retiring = role("deleted")
    token = grant(kms, key_id, user("z"), RetiringPrincipal=retiring)["GrantToken"]
    survivor = grant(kms, kept, user("z"), RetiringPrincipal=retiring)["GrantId"]
    kms.schedule_key_deletion(KeyId=key_id, PendingWindowInDays=7)
    advance_days(server, 8)
    assert key_id in maintenance(server)["deleted"]
    assert error_code(kms.list_grants, KeyId=key_id) == "NotFoundException"
    assert error_code(kms.retire_grant, GrantToken=token) == "NotFoundException"
    assert [g["GrantId"] for g in kms.list_retirable_grants(RetiringPrincipal=retiring)["Grants"]] == [survivor]


# -- durability, audit, history --------------------------------------------------------------------

def test_grants_survive_a_restart_and_replay(servers: ServerFactory):
    server = servers.start(name="node")
    kms = server.client()
    key_id = new_key(kms)
    made = [grant(kms, key_id, user(f"r{i}"), RetiringPrincipal=ROOT, Name=f"n{i}") for i in range(4)]
    kms.retire_grant(GrantToken=made[0]["GrantToken"])
    kms.revoke_grant(KeyId=key_id, GrantId=made[1]["GrantId"])
    before = kms.list_grants(KeyId=key_id)["Grants"]
    retirable = kms.list_retirable_grants(RetiringPrincipal=ROOT)["Grants"]
    server.stop()

    server = servers.start(name="node")
    kms = server.client()
    assert kms.list_grants(KeyId=key_id)["Grants"] == before
    assert kms.list_retirable_grants(RetiringPrincipal=ROOT)["Grants"] == retirable
    # The same Name and parameters after the restart is still a retry; the old token still works.
    again = grant(kms, key_id, before[0]["GranteePrincipal"], tuple(before[0]["Operations"]), RetiringPrincipal=ROOT,
                  Name=before[0]["Name"])
    assert again["GrantId"] == before[0]["GrantId"]
    kms.retire_grant(GrantToken=made[2]["GrantToken"])
    assert grant_ids(kms, key_id) == [made[3]["GrantId"]]
    replayed = keyledger(server, "replay")
    assert "OK:" in replayed


def _stored(server: Server, backend: str) -> dict[str, bytes]:
    if backend == "postgres":
        return postgres_tables(server)
    return {**{p.name: p.read_bytes() for p in sorted(server.data_dir.glob("keyledger.db*"))},
                "states": sqlite_states(server.data_dir / "keyledger.db")}


def test_audit_records_never_hold_a_grant_token(servers: ServerFactory, backend: str):
    server = servers.start()
    kms = server.client()
    key_id = new_key(kms)
    first = grant(kms, key_id, user("audited"))
    second = grant(kms, key_id, user("audited2"), GrantTokens=[first["GrantToken"]], Name="named")
    retry = grant(kms, key_id, user("audited2"), GrantTokens=[first["GrantToken"]], Name="named")
    kms.describe_key(KeyId=key_id, GrantTokens=[second["GrantToken"]])
    kms.retire_grant(GrantToken=first["GrantToken"])
    assert error_code(kms.retire_grant, GrantToken=first["GrantToken"]) == "NotFoundException"
    kms.revoke_grant(KeyId=key_id, GrantId=second["GrantId"])
    server.stop()  # SQLite: the WAL is checkpointed into the file on the way out

    tokens = {f"token {i}": t["GrantToken"].encode() for i, t in enumerate((first, second, retry))}
    tokens.update({f"raw token {i}": base64.urlsafe_b64decode(t["GrantToken"] + "==")
                   for i, t in enumerate((first, second, retry))})
    assert secret_hits(_stored(server, backend), tokens) == []

    records = [r for r in export_jsonl(server) if r["eventName"] in
               ("CreateGrant", "RetireGrant", "RevokeGrant", "DescribeKey")]
    assert all("GrantToken" not in json.dumps(r) and "grantToken" not in json.dumps(r) for r in records)
    created = [r for r in records if r["eventName"] == "CreateGrant"]
    assert [r["responseElements"] for r in created[:2]] == [{"grantId": first["GrantId"]},
                                                            {"grantId": second["GrantId"]}]
    assert created[1]["requestParameters"]["granteePrincipal"].startswith("arn:aws:iam::")
    assert created[1]["requestParameters"]["operations"] == ["Encrypt", "Decrypt"]
    retired = [r for r in records if r["eventName"] == "RetireGrant"]
    assert [r["requestParameters"] for r in retired] == [None, None]
    assert [r["additionalEventData"] for r in retired] == [{"grantId": first["GrantId"]}] * 2
    assert [r["errorCode"] for r in retired] == [None, "NotFoundException"]
    assert all(r["resources"][0]["ARN"] == key_arn(key_id) for r in created + retired)
    (revoked,) = [r for r in records if r["eventName"] == "RevokeGrant"]
    assert revoked["requestParameters"] == {"keyId": key_id, "grantId": second["GrantId"]}
    assert keyledger(server, "audit", "verify").strip()


def _query(server: Server, path: str, **params: str) -> dict[str, Any]:
    request = AWSRequest(method="GET", url=server.endpoint + path, params=params)
    SigV4Auth(Credentials(ADMIN_KEY_ID, ADMIN_SECRET), "kms", "us-east-1").add_auth(request)
    prepared = request.prepare()
    return httpx.get(prepared.url, headers=dict(prepared.headers), timeout=30).json()


def _moment() -> str:
    time.sleep(0.02)
    stamp = f"{time.time():.6f}"
    time.sleep(0.02)
    return stamp


def test_point_in_time_grants_before_and_after_a_revoke(shared_server: Server):
    kms = shared_server.client()
    key_id = new_key(kms)
    alice = user("alice")
    t_none = _moment()
    created = grant(kms, key_id, alice, ("Encrypt", "Decrypt"), Name="pit")
    constrained = grant(kms, key_id, alice, ("GenerateDataKey",),
                        Constraints={"EncryptionContextEquals": {"app": "pit"}})
    t_granted = _moment()
    kms.revoke_grant(KeyId=key_id, GrantId=created["GrantId"])
    t_revoked = _moment()

    assert _query(shared_server, f"/v1/keys/{key_id}", at=t_none)["Grants"] == []
    then = _query(shared_server, f"/v1/keys/{key_id}", at=t_granted)["Grants"]
    assert sorted(g["GrantId"] for g in then) == sorted([created["GrantId"], constrained["GrantId"]])
    assert {g["GrantId"]: g for g in then}[created["GrantId"]]["Name"] == "pit"
    after = _query(shared_server, f"/v1/keys/{key_id}", at=t_revoked)["Grants"]
    assert [g["GrantId"] for g in after] == [constrained["GrantId"]]
    assert [g["GrantId"] for g in _query(shared_server, f"/v1/keys/{key_id}")["Grants"]] == [constrained["GrantId"]]

    def who(at: str, operation: str = "Encrypt") -> dict[str, dict[str, Any]]:
        answer = _query(shared_server, f"/v1/keys/{key_id}/access", operation=operation, at=at)
        return {p["Principal"]: p for p in answer["Principals"]}

    assert alice not in who(t_none)
    assert who(t_granted)[alice]["Allowed"] is True and created["GrantId"] in who(t_granted)[alice]["Reason"]
    assert who(t_revoked)[alice]["Allowed"] is False  # still a grantee (of the constrained grant), no longer allowed
    constrained_answer = who(t_revoked, "GenerateDataKey")[alice]
    assert constrained_answer["Allowed"] is False and constrained["GrantId"] in constrained_answer["Reason"]
    asked = _query(shared_server, f"/v1/keys/{key_id}/access", operation="Decrypt", at=t_granted, principal=alice)
    assert asked["Principals"][0]["Allowed"] is True
