"""What authorization reads about callers (``Services.principals``) and how fast changes reach another
process, on real storage (SQLite and PostgreSQL): two runtimes on one database stand for two processes,
each with its own caches, exactly as a server and the ``keyledger`` command line are."""
from __future__ import annotations

import json
import time
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from typing import Iterator

import pytest

from application.principals.audit import Operator
from infrastructure.bootstrap import Runtime, build_runtime
from infrastructure.settings import Settings
from tests.conftest import ServerFactory

ACCOUNT = "111122223333"
ALICE = f"arn:aws:iam::{ACCOUNT}:user/alice"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/team/deploy"
OPERATOR = Operator(user="tester", host="test-host")


def doc(effect: str, action: str) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": effect, "Action": action, "Resource": "*"}]})


@pytest.fixture
def runtimes(servers: ServerFactory) -> Iterator[list[Runtime]]:
    base = Settings.load(environ={}, data_dir=servers.tmp_path / "data", database_url=servers.database_url())
    opened = [build_runtime(replace(base, key_cache_seconds=0.5)) for _ in range(2)]
    try:
        yield opened
    finally:
        for runtime in opened:
            runtime.close()


def moment(runtime: Runtime) -> datetime:
    time.sleep(0.02)
    now = runtime.now()
    time.sleep(0.02)
    return now


def test_identity_policies_now_and_at_a_moment(runtimes: list[Runtime]) -> None:
    runtime = runtimes[0]
    services = runtime.services
    assert services is not None
    admin, principals = services.principal_admin, services.principals
    t_before = moment(runtime)
    admin.create_principal(ALICE, OPERATOR)
    admin.put_policy(ALICE, "encrypt", doc("Allow", "kms:Encrypt"), OPERATOR)
    t_one = moment(runtime)
    admin.put_policy(ALICE, "no-decrypt", doc("Deny", "kms:Decrypt"), OPERATOR)
    admin.create_principal(ROLE, OPERATOR)
    admin.put_policy(ROLE, "sign", doc("Allow", "kms:Sign"), OPERATOR)
    key = admin.create_access_key(ROLE, OPERATOR)
    t_both = moment(runtime)
    admin.delete_principal(ALICE, OPERATOR, force=True)
    t_deleted = moment(runtime)

    def actions(documents: list) -> list[str]:
        return [a for d in documents for s in d.statements for a in s.actions]

    assert actions(principals.identity_policies_at(ALICE, t_before)) == []
    assert actions(principals.identity_policies_at(ALICE, t_one)) == ["kms:Encrypt"]
    assert actions(principals.identity_policies_at(ALICE, t_both)) == ["kms:Encrypt", "kms:Decrypt"]
    assert principals.identity_policies_at(ALICE, t_deleted) == [] and principals.identity_policies(ALICE) == []
    assert not principals.exists(ALICE)

    # A role's access key acts as a session of the role, governed by the role's policies.
    session = services.credentials.lookup(key.access_key_id)
    assert session is not None and session.principal_arn == key.acts_as
    assert session.principal_arn == f"arn:aws:sts::{ACCOUNT}:assumed-role/deploy/{key.access_key_id}"
    assert principals.exists(session.principal_arn) and principals.exists(ROLE)
    assert actions(principals.identity_policies(session.principal_arn)) == ["kms:Sign"]
    assert actions(principals.identity_policies_at(session.principal_arn, t_both)) == ["kms:Sign"]
    assert not principals.exists(f"arn:aws:iam::{ACCOUNT}:role/deploy")  # the role's ARN has its path
    assert not principals.exists(f"arn:aws:sts::{ACCOUNT}:assumed-role/other/s1")

    # Account roots exist for every account and have no identity policies.
    assert principals.exists("arn:aws:iam::999988887777:root") and principals.identity_policies(
        "arn:aws:iam::999988887777:root") == []
    assert not principals.exists("*") and principals.identity_policies("kms.amazonaws.com") == []

    root = f"arn:aws:iam::{ACCOUNT}:root"
    assert principals.principals_at(ACCOUNT, t_before) == [root]
    assert principals.principals_at(ACCOUNT, t_both) == [root, ROLE, ALICE]
    assert principals.principals_at(ACCOUNT, t_deleted) == [root, ROLE]
    assert principals.principals_at("444455556666", t_deleted) == ["arn:aws:iam::444455556666:root"]


def test_a_change_reaches_another_process_within_the_cache_time(runtimes: list[Runtime]) -> None:
    writer, server = (r.services for r in runtimes)
    assert writer is not None and server is not None
    writer.principal_admin.create_principal(ALICE, OPERATOR)
    key = writer.principal_admin.create_access_key(ALICE, OPERATOR)
    assert server.credentials.lookup(key.access_key_id) is not None  # the "server" has it cached now
    assert server.principals.identity_policies(ALICE) == []

    writer.principal_admin.set_access_key_status(key.access_key_id, "Inactive", OPERATOR)
    writer.principal_admin.put_policy(ALICE, "deny", doc("Deny", "kms:*"), OPERATOR)
    changed = time.monotonic()
    assert writer.credentials.lookup(key.access_key_id) is None, "the changing process must see it at once"
    assert len(writer.principals.identity_policies(ALICE)) == 1
    # How soon it shows is the cache's TTL (tests/unit/test_ttl_cache.py, on a moved clock); the deadline
    # only stops a hang.
    while server.credentials.lookup(key.access_key_id) is not None or not server.principals.identity_policies(ALICE):
        if time.monotonic() > changed + 30:
            pytest.fail("the other process still used the old state 30 s after the change")
        time.sleep(0.05)

    writer.principal_admin.set_access_key_status(key.access_key_id, "Active", OPERATOR)
    writer.principal_admin.delete_principal(ALICE, OPERATOR, force=True)
    assert writer.credentials.lookup(key.access_key_id) is None and not writer.principals.exists(ALICE)
    time.sleep(0.6)
    assert server.credentials.lookup(key.access_key_id) is None and not server.principals.exists(ALICE)


def test_point_in_time_answers_survive_many_changes(runtimes: list[Runtime]) -> None:
    """Past the snapshot interval, "the policies at T" still come from the version current at T."""
    runtime = runtimes[0]
    admin, principals = runtime.services.principal_admin, runtime.services.principals
    admin.create_principal(ALICE, OPERATOR)
    key = admin.create_access_key(ALICE, OPERATOR)
    admin.put_policy(ALICE, "p", doc("Allow", "kms:Encrypt"), OPERATOR)
    t_encrypt = moment(runtime)
    for i in range(30):
        admin.set_access_key_status(key.access_key_id, ("Inactive", "Active")[i % 2], OPERATOR)
    admin.put_policy(ALICE, "p", doc("Allow", "kms:Decrypt"), OPERATOR)
    for i in range(30):
        admin.set_access_key_status(key.access_key_id, ("Inactive", "Active")[i % 2], OPERATOR)
    assert [s.actions for d in principals.identity_policies_at(ALICE, t_encrypt) for s in d.statements] == [
        ("kms:Encrypt",)]
    assert [s.actions for d in principals.identity_policies(ALICE) for s in d.statements] == [("kms:Decrypt",)]
    later = datetime.now(timezone.utc) + timedelta(seconds=1)
    assert principals.principals_at(ACCOUNT, later) == [f"arn:aws:iam::{ACCOUNT}:root", ALICE]
