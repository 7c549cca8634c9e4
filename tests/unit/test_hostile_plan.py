"""The hostile-input campaign's generator (tests/hostile/): a request is a function of (seed, index), the plan
covers every (operation, member, wrong type) of the model, and the signer is botocore's."""
from __future__ import annotations

from datetime import datetime, timezone

import botocore.auth
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from api.wire_model import WireModel
from domain.errors import SerializationError, ValidationError
from tests.hostile.plan import WEIGHTS, Plan
from tests.hostile.show import PLACEHOLDER_TARGETS
from tests.hostile.signing import SigV4AtInstant
from tests.hostile.values import splice
from tests.servers import ADMIN_KEY_ID, ADMIN_SECRET


def fingerprint(plan: Plan, index: int) -> tuple:
    request = plan.request(index)
    return (request.category, request.note, request.target, request.body, request.auth, request.extra,
            request.may_succeed, request.authentic)


def test_a_request_is_a_function_of_seed_and_index():
    first, again = Plan(7, 300, PLACEHOLDER_TARGETS), Plan(7, 300, PLACEHOLDER_TARGETS)
    assert [fingerprint(first, i) for i in range(300)] == [fingerprint(again, i) for i in range(300)]
    other = Plan(8, 300, PLACEHOLDER_TARGETS)
    assert [fingerprint(first, i) for i in range(300)] != [fingerprint(other, i) for i in range(300)]


def test_the_plan_is_prefix_stable():
    """`python -m tests.hostile.show <seed> <index>` rebuilds request i without knowing the run's length."""
    short, long = Plan(11, 50, PLACEHOLDER_TARGETS), Plan(11, 2_000, PLACEHOLDER_TARGETS)
    assert [fingerprint(short, i) for i in range(50)] == [fingerprint(long, i) for i in range(50)]


def test_ten_thousand_requests_cover_every_category_and_every_member_case():
    plan = Plan(11, 10_000, PLACEHOLDER_TARGETS)
    assert set(plan.categories) == set(WEIGHTS)
    assert plan.covered_member_cases() == plan.member_cases > 3_000
    signed = sum(plan.request(i).authentic for i in range(0, 10_000, 10))
    assert 400 < signed < 900  # both sides well represented


def test_skipping_a_category_leaves_it_out():
    plan = Plan(11, 500, PLACEHOLDER_TARGETS, frozenset({"policies", "sizes"}))
    assert not {"policies", "sizes"} & set(plan.categories)
    with pytest.raises(ValueError, match="names no category"):
        Plan(11, 5, PLACEHOLDER_TARGETS, frozenset({"nope"}))


def test_every_wrong_typed_member_is_refused_by_the_wire_model():
    """The documents carry their one wrong member where the model says it is: the server's own parser refuses
    each (so in the campaign a 2xx for one of them is a finding, not noise)."""
    plan, wire = Plan(11, 1, PLACEHOLDER_TARGETS), WireModel()
    for case in plan.catalog.cases():
        with pytest.raises((SerializationError, ValidationError)):
            wire.parse_request(case.operation, splice(plan.catalog.document(case)))


def test_requests_are_signed_as_botocore_signs_them(monkeypatch):
    instant = datetime(2026, 11, 24, 10, 0, 0, tzinfo=timezone.utc)
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda: instant.replace(tzinfo=None))
    signed = []
    for signer in (SigV4Auth(Credentials(ADMIN_KEY_ID, ADMIN_SECRET), "kms", "us-east-1"),
                   SigV4AtInstant(Credentials(ADMIN_KEY_ID, ADMIN_SECRET), "kms", "us-east-1", instant)):
        request = AWSRequest(method="POST", url="http://127.0.0.1:8080/", data=b'{"Limit": 1}',
                             headers={"X-Amz-Target": "TrentService.ListKeys"})
        signer.add_auth(request)
        signed.append(dict(request.headers.items()))
    assert signed[0] == signed[1]
