"""The grant service on a real runtime (SQLite file, build_runtime), called as different principals: who may
retire a grant, tokens across accounts and regions, ListRetirableGrants' account rule, page sizes, and the
key_grants projection agreeing with the aggregate through random histories, snapshots, restarts and replay.

Services are driven directly with the authenticated Call the request pipeline would make, because only the
administrator has credentials over HTTP; the caller's identity is what the Call carries.
"""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, Iterator

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from application.audit.records import cloudtrail_record
from application.calls import Call
from domain.errors import AccessDeniedError, InvalidGrantTokenError, KmsError, NotFoundError, ValidationError
from domain.identifiers import Scope
from infrastructure.bootstrap import Runtime, build_runtime
from infrastructure.settings import Settings
from projections import replay
from tests.calls import api_call

ACCOUNT, OTHER_ACCOUNT = "111122223333", "444455556666"
SCOPE, WEST, OTHER = Scope(ACCOUNT, "us-east-1"), Scope(ACCOUNT, "eu-west-1"), Scope(OTHER_ACCOUNT, "us-east-1")
ROOT, OTHER_ROOT = f"arn:aws:iam::{ACCOUNT}:root", f"arn:aws:iam::{OTHER_ACCOUNT}:root"
ALICE, BOB, OPS = (f"arn:aws:iam::{ACCOUNT}:user/alice", f"arn:aws:iam::{ACCOUNT}:user/bob",
                   f"arn:aws:iam::{ACCOUNT}:role/ops")
CAROL = f"arn:aws:iam::{OTHER_ACCOUNT}:user/carol"


class World:
    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.rt: Runtime = build_runtime(Settings.load(environ={}, data_dir=data_dir))

    @property
    def grants(self) -> Any:
        return self.rt.services.grants

    def restart(self) -> None:
        self.rt.close()
        self.rt = build_runtime(Settings.load(environ={}, data_dir=self.data_dir))

    def call(self, name: str, principal: str = ROOT, scope: Scope = SCOPE) -> Call:
        return api_call(name, principal, scope, at=self.rt.now())

    def key(self, scope: Scope = SCOPE) -> str:
        call = self.call("CreateKey", f"arn:aws:iam::{scope.account_id}:root", scope)
        return self.rt.services.keys.create_key(call)["KeyMetadata"]["KeyId"]

    def grant(self, key_id: str, scope: Scope = SCOPE, principal: str = ROOT, **kwargs: Any) -> dict[str, Any]:
        kwargs.setdefault("grantee_principal", ALICE)
        kwargs.setdefault("operations", ["Encrypt"])
        return self.grants.create_grant(self.call("CreateGrant", principal, scope), key_id, **kwargs)

    def retire(self, principal: str, scope: Scope = SCOPE, **kwargs: Any) -> None:
        self.grants.retire_grant(self.call("RetireGrant", principal, scope), **kwargs)

    def listed(self, key_id: str, scope: Scope = SCOPE) -> list[str]:
        call = self.call("ListGrants", f"arn:aws:iam::{scope.account_id}:root", scope)
        return [g["GrantId"] for g in self.grants.list_grants(call, key_id, limit=100)["Grants"]]


@pytest.fixture
def w(tmp_path: Path) -> Iterator[World]:
    world = World(tmp_path)
    try:
        yield world
    finally:
        world.rt.close()


def test_who_may_retire(w: World) -> None:
    key_id = w.key()
    plain = w.grant(key_id, retiring_principal=OPS)
    retiring_grantee = w.grant(key_id, operations=["Encrypt", "RetireGrant"])
    for principal, made in ((ALICE, plain), (BOB, plain), (BOB, retiring_grantee), (CAROL, plain), (OTHER_ROOT, plain)):
        with pytest.raises(AccessDeniedError) as refused:
            w.retire(principal, grant_token=made["GrantToken"])
        assert refused.value.message.startswith(f"User: {principal} is not authorized to perform: kms:RetireGrant "
                                                f"on resource: {SCOPE.key_arn(key_id)}")
    assert sorted(w.listed(key_id)) == sorted([plain["GrantId"], retiring_grantee["GrantId"]])
    w.retire(OPS, grant_token=plain["GrantToken"])  # the retiring principal
    w.retire(ALICE, key_ref=key_id, grant_id=retiring_grantee["GrantId"])  # a grantee the grant lets retire
    by_root = w.grant(key_id)
    w.retire(ROOT, key_ref=SCOPE.key_arn(key_id), grant_id=by_root["GrantId"])  # the account that created it
    assert w.listed(key_id) == []


def test_a_token_names_a_grant_on_another_accounts_key_but_not_in_another_region(w: World) -> None:
    theirs = w.key(OTHER)
    made = w.grant(theirs, OTHER, OTHER_ROOT, grantee_principal=CAROL, retiring_principal=ALICE)
    with pytest.raises(InvalidGrantTokenError, match="us-east-1"):
        w.retire(ALICE, WEST, grant_token=made["GrantToken"])
    with pytest.raises(NotFoundError):  # by key and grant id, the key must be named where the caller can see it
        w.retire(ALICE, key_ref=theirs, grant_id=made["GrantId"])
    w.retire(ALICE, grant_token=made["GrantToken"])  # RetireGrant is cross-account
    assert w.listed(theirs, OTHER) == []
    assert w.grants.grant_for_token(made["GrantToken"]) == (theirs, made["GrantId"])


def test_a_token_and_ids_that_disagree_are_refused(w: World) -> None:
    key_id, other_key = w.key(), w.key()
    made = w.grant(key_id)
    with pytest.raises(ValidationError, match="different key"):
        w.retire(ROOT, grant_token=made["GrantToken"], key_ref=other_key)
    w.retire(ROOT, grant_token=made["GrantToken"], key_ref=key_id, grant_id=made["GrantId"])  # agreeing: fine


def test_list_retirable_grants_is_for_principals_of_the_callers_account(w: World) -> None:
    mine, theirs = w.key(), w.key(OTHER)
    here = w.grant(mine, retiring_principal=OPS)["GrantId"]
    there = w.grant(theirs, OTHER, OTHER_ROOT, grantee_principal=CAROL, retiring_principal=OPS)["GrantId"]
    w.grant(w.key(WEST), WEST, retiring_principal=OPS)  # another region: not listed from us-east-1
    listed = w.grants.list_retirable_grants(w.call("ListRetirableGrants", BOB), retiring_principal=OPS)
    assert sorted(g["GrantId"] for g in listed["Grants"]) == sorted([here, there])
    with pytest.raises(AccessDeniedError, match="ListRetirableGrants"):
        w.grants.list_retirable_grants(w.call("ListRetirableGrants", CAROL), retiring_principal=OPS)
    with pytest.raises(ValidationError):
        w.grants.list_retirable_grants(w.call("ListRetirableGrants", BOB),
                                       retiring_service_principal="logs.amazonaws.com")


def test_pages_default_to_50_and_hold_at_most_100(w: World) -> None:
    key_id = w.key()
    made = sorted(w.grant(key_id, grantee_principal=f"arn:aws:iam::{ACCOUNT}:user/u{i}",
                          retiring_principal=OPS)["GrantId"] for i in range(120))
    for listing in (lambda **kw: w.grants.list_grants(w.call("ListGrants"), key_id, **kw),
                    lambda **kw: w.grants.list_retirable_grants(w.call("ListRetirableGrants"), retiring_principal=OPS,
                                                                **kw)):
        first = listing()
        assert len(first["Grants"]) == 50 and first["Truncated"]
        big = listing(limit=1000)
        assert len(big["Grants"]) == 100 and big["Truncated"]
        rest = listing(limit=1000, marker=big["NextMarker"])
        assert [g["GrantId"] for g in big["Grants"] + rest["Grants"]] == made and not rest["Truncated"]


def test_audit_record_of_a_retire_names_the_grant(w: World) -> None:
    key_id = w.key()
    made = w.grant(key_id)
    call = w.call("RetireGrant")
    w.grants.retire_grant(call, grant_token=made["GrantToken"])
    assert call.committed and call.additional_event_data == {"grantId": made["GrantId"]}
    assert made["GrantToken"] not in repr(cloudtrail_record(call))


def _rows(w: World) -> dict[str, dict[str, Any]]:
    engine = w.rt.ledger.recorder.datastore.engine
    with engine.connect() as conn:
        return {r.grant_id: dict(r._mapping) for r in conn.execute(sa.text("SELECT * FROM key_grants"))}


ACTIONS = st.lists(st.tuples(st.sampled_from(["create", "create", "named", "retire", "revoke", "disable",
                                              "enable", "restart"]), st.integers(0, 50)), min_size=5, max_size=40)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ACTIONS)
def test_the_projection_is_the_aggregates_grants_through_any_history(steps: list[tuple[str, int]]) -> None:
    """ListGrants (the projection) equals the aggregate's grant entries after every kind of step, across
    snapshots (every 50 events) and restarts; a replay of the log rebuilds exactly the live rows."""
    with tempfile.TemporaryDirectory() as tmp:
        w = World(Path(tmp))
        try:
            keys = [w.key(), w.key()]
            for action, pick in steps:
                key_id = keys[pick % 2]
                alive = w.listed(key_id)
                try:
                    if action in ("create", "named"):
                        w.grant(key_id, name=f"n{pick % 3}" if action == "named" else None,
                                operations=["Encrypt", "Decrypt"][: 1 + pick % 2], retiring_principal=OPS)
                    elif action in ("retire", "revoke") and alive:
                        chosen = alive[pick % len(alive)]
                        if action == "retire":
                            w.retire(OPS, key_ref=key_id, grant_id=chosen)
                        else:
                            w.grants.revoke_grant(w.call("RevokeGrant"), key_id, chosen)
                    elif action in ("disable", "enable"):
                        getattr(w.rt.services.keys, f"{action}_key")(w.call(action.title() + "Key"), key_id)
                    elif action == "restart":
                        w.restart()
                except KmsError:
                    pass  # CreateGrant on a disabled key: refused, nothing changes
                for k in keys:
                    assert w.grants.list_grants(w.call("ListGrants"), k, limit=100)["Grants"] == \
                        w.rt.services.history.key_at(SCOPE, k, w.rt.now())["Grants"]
            rows = _rows(w)
            assert sorted(rows) == sorted(g for k in keys for g in w.listed(k))
            engine = w.rt.ledger.recorder.datastore.engine
            replay.rebuild(w.rt.ledger, engine, "replay_")
            assert replay.compare(engine, "", "replay_") == []
        finally:
            w.rt.close()



def test_grants_across_snapshots_taken_before_and_after_them(w: World) -> None:
    """A snapshot taken before the key had grants has no grant state; grants made after it load on top of it,
    and a snapshot that holds grants restores them (the key snapshots every 50 events)."""
    key_id = w.key()
    for i in range(55):
        w.rt.services.keys.tag_resource(w.call("TagResource"), key_id, {"t": str(i)})
    made = [w.grant(key_id, grantee_principal=f"arn:aws:iam::{ACCOUNT}:user/s{i}") for i in range(60)]
    for gone in made[:10]:
        w.retire(ROOT, grant_token=gone["GrantToken"])
    engine = w.rt.ledger.recorder.datastore.engine
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM keyledger_snapshots")).scalar() >= 2
    before = w.grants.list_grants(w.call("ListGrants"), key_id, limit=100)["Grants"]
    w.restart()
    assert w.grants.list_grants(w.call("ListGrants"), key_id, limit=100)["Grants"] == before
    assert w.rt.services.history.key_at(SCOPE, key_id, w.rt.now())["Grants"] == before
    assert sorted(g["GrantId"] for g in before) == sorted(m["GrantId"] for m in made[10:])
