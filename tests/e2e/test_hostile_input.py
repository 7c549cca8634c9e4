"""The hostile-input campaign of issue #11 against a real server: 10,000 generated hostile requests on SQLite
(2,000 on PostgreSQL), seeded (KEYLEDGER_HOSTILE_SEED, default 11; the seed is in every failure message, and
`python -m tests.hostile.show <seed> <index>` prints one request), half of them or more correctly signed so
they reach validation and the services, the rest not signed, mis-signed or signed with made-up keys.

Every answer is checked as it arrives (tests/hostile/checks.py: no 5xx, no reset, AWS's error shape, short
messages, 431/413 for oversized requests, unauthenticated requests refused as such). Afterwards the server
must still serve (health, an Encrypt/Decrypt round trip on the campaign's key and on a new one), `keyledger
audit verify` must pass, and the audit log must have grown by no more than the documented bound: one record
per authenticated request, a capped number per aggregation window for the rest, none over 16 KiB.
"""
from __future__ import annotations

import time
from typing import Any

import httpx
from botocore.exceptions import BotoCoreError, ClientError

from tests.e2e.test_audit_support import verify
from tests.hostile.audit_growth import (
    PER_SOURCE_VARIABLE,
    TOTAL_VARIABLE,
    AuditBound,
    audit_version,
    growth_problems,
    records_after,
)
from tests.hostile.plan import Plan, count_from_environment, seed_from_environment, skipped_from_environment
from tests.hostile.storm import run_storm
from tests.hostile.targets import make_targets
from tests.servers import Server

REQUESTS = {"sqlite": 10_000, "postgres": 2_000}
PER_SOURCE, TOTAL = 20, 100  # unauthenticated records per window: small, so a flood shows against the bound


def test_hostile_requests_are_refused_cleanly_and_bounded(servers, backend):
    server = servers.start("hostile", **{PER_SOURCE_VARIABLE: str(PER_SOURCE), TOTAL_VARIABLE: str(TOTAL)})
    targets = make_targets(server.client())
    plan = Plan(seed_from_environment(), count_from_environment(REQUESTS[backend]), targets,
                skipped_from_environment())
    print(plan.describe())  # shown by pytest with any failure
    before = audit_version(server)

    result = run_storm(server, plan)

    new_records = records_after(server, before)
    bound = AuditBound(result.authentic, result.started, result.finished, PER_SOURCE, TOTAL)
    found = []
    if result.failure_count or result.stopped or result.sent != plan.count:
        found.append(result.report())
    found += growth_problems(new_records, bound)
    if result.stopped:  # a stuck server answers nothing more: say so instead of waiting for each check
        found.append("the server is stuck; whether it still serves was not checked")
    else:
        found += still_serving_problems(server, targets.crypto_key)
    verdict = verify(server)
    if not verdict.ok:
        found.append(f"keyledger audit verify failed: {verdict.output[-2000:]}")
    assert not found, "\n".join([f"hostile input on {backend}:"] + found)


def still_serving_problems(server: Server, key_id: str) -> list[str]:
    found = []
    if server.process is None or server.process.poll() is not None:
        return [f"the server process is gone:\n{server.log()[-3000:]}"]
    for path, want in (("/healthz", {"status": "ready"}), ("/healthz/live", None), ("/healthz/ready", None)):
        try:
            response = httpx.get(server.endpoint + path, timeout=60)
        except httpx.HTTPError as error:
            found.append(f"GET {path} failed: {error!r}")
            continue
        # /healthz carries the root key's and the custom key stores' state beside its status: compare the status.
        if response.status_code != 200 or (want is not None and response.json().get("status") != want["status"]):
            found.append(f"GET {path} answered {response.status_code} {response.text[:200]}")
    kms = server.client()
    try:
        new_key = _unthrottled(kms.create_key, Description="after the storm")["KeyMetadata"]["KeyId"]
        for key in (key_id, new_key):
            blob = _unthrottled(kms.encrypt, KeyId=key, Plaintext=b"still here",
                                EncryptionContext={"after": "storm"})["CiphertextBlob"]
            plain = _unthrottled(kms.decrypt, CiphertextBlob=blob, EncryptionContext={"after": "storm"})["Plaintext"]
            if plain != b"still here":
                found.append(f"Decrypt under {key} returned other bytes")
    except (ClientError, BotoCoreError) as error:
        found.append(f"a normal call failed after the storm: {error!r}")
    return found


def _unthrottled(call: Any, **kwargs: Any) -> Any:
    """The call, tried again while it is throttled (quotas per second may still be spent by the campaign)."""
    for attempt in range(30):
        try:
            return call(**kwargs)
        except ClientError as error:
            if error.response["Error"]["Code"] != "ThrottlingException" or attempt == 29:
                raise
            time.sleep(1)
    raise AssertionError("unreachable")
