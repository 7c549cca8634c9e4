"""Request quotas (application/quotas.py) and the failed-authentication aggregation
(application/audit/unauthenticated.py), on a clock the test moves: no test waits or times anything."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from application.audit.unauthenticated import (
    LISTED_SOURCES,
    MAX_TRACKED_SOURCES,
    OTHER_SOURCES,
    SUMMARY_EVENT,
    UNKNOWN_OPERATION,
    UnauthenticatedFailures,
)
from application.quotas import CRYPTOGRAPHIC, MANAGEMENT, RequestQuotas, TokenBucket, operation_class
from domain.errors import (
    InvalidSignatureError,
    RequestEntityTooLargeError,
    ThrottlingError,
    UnrecognizedClientError,
)


class Clock:
    def __init__(self) -> None:
        self.seconds = 1000.0
        self.at = datetime(2026, 11, 1, tzinfo=timezone.utc)

    def monotonic(self) -> float:
        return self.seconds

    def now(self) -> datetime:
        return self.at + timedelta(seconds=self.seconds - 1000.0)

    def advance(self, seconds: float) -> None:
        self.seconds += seconds


def test_a_bucket_allows_its_rate_and_refills() -> None:
    bucket = TokenBucket(3.0, now=0.0)
    assert [bucket.take(0.0) for _ in range(4)] == [True, True, True, False]
    assert bucket.take(1 / 3) and not bucket.take(1 / 3)
    assert [bucket.take(100.0) for _ in range(4)] == [True, True, True, False]  # saves up one second at most


def test_a_rate_below_one_still_allows_one_call() -> None:
    bucket = TokenBucket(0.001, now=0.0)
    assert bucket.take(0.0) and not bucket.take(999.0) and bucket.take(1000.0)


def test_operations_fall_into_aws_s_classes() -> None:
    assert {operation_class(op) for op in ("Encrypt", "Decrypt", "GenerateDataKey", "Sign", "GenerateMac",
                                           "GenerateRandom", "DeriveSharedSecret")} == {CRYPTOGRAPHIC}
    assert {operation_class(op) for op in ("CreateKey", "DescribeKey", "ListKeys", "PutKeyPolicy",
                                           "CreateGrant", "TagResource")} == {MANAGEMENT}


def test_quotas_are_per_account_region_and_class() -> None:
    clock = Clock()
    quotas = RequestQuotas(2, 1, {"444455556666": {"management": 5}}, monotonic=clock.monotonic)
    quotas.take("111122223333", "us-east-1", "CreateKey")
    with pytest.raises(ThrottlingError) as refused:
        quotas.take("111122223333", "us-east-1", "DescribeKey")
    assert (refused.value.code, refused.value.status, refused.value.message) == (
        "ThrottlingException", 400, "Rate exceeded")
    quotas.take("111122223333", "eu-west-1", "DescribeKey")  # another region: its own quota
    quotas.take("111122223333", "us-east-1", "Encrypt")  # another class
    quotas.take("111122223333", "us-east-1", "Decrypt")
    with pytest.raises(ThrottlingError):
        quotas.take("111122223333", "us-east-1", "GenerateRandom")
    for _ in range(5):  # an account's override
        quotas.take("444455556666", "us-east-1", "ListKeys")
    clock.advance(1.0)
    quotas.take("111122223333", "us-east-1", "DescribeKey")


def test_a_rate_of_zero_is_no_quota() -> None:
    quotas = RequestQuotas(0, 0)
    for _ in range(10_000):
        quotas.take("111122223333", "us-east-1", "Encrypt")


def failures(clock: Clock, **overrides: float) -> UnauthenticatedFailures:
    options = {"window_seconds": 60.0, "per_source": 3, "total": 5, "per_second": 0.0} | overrides
    return UnauthenticatedFailures(now=clock.now, monotonic=clock.monotonic, **options)  # type: ignore[arg-type]


def test_each_source_gets_a_few_records_per_window_and_all_together_a_few_more() -> None:
    clock = Clock()
    tracker = failures(clock)
    error = UnrecognizedClientError("The security token included in the request is invalid.")
    own = [tracker.refused("198.51.100.1", error, "Encrypt")[1] for _ in range(5)]
    assert own == [True, True, True, False, False]
    own = [tracker.refused(f"198.51.100.{i}", error, "Encrypt")[1] for i in range(2, 6)]
    assert own == [True, True, False, False]  # 5 in total
    assert tracker.due() == []  # the window is under way
    clock.advance(60.0)
    (summary,) = tracker.due()
    assert summary["eventName"] == SUMMARY_EVENT and summary["eventType"] == "AwsServiceEvent"
    data = summary["additionalEventData"]
    assert (data["aggregatedCount"], data["recordedIndividually"]) == (4, 5)
    assert data["sources"] == {"198.51.100.1": 2, "198.51.100.4": 1, "198.51.100.5": 1}
    assert data["errorCodes"] == {"UnrecognizedClientException": 4} and data["operations"] == {"Encrypt": 4}
    assert data["window"]["seconds"] == 60.0
    assert tracker.refused("198.51.100.1", error, None)[1]  # a new window, a new allowance
    assert tracker.due() == []


def test_a_window_with_nothing_counted_writes_no_summary() -> None:
    clock = Clock()
    tracker = failures(clock)
    tracker.refused("198.51.100.1", InvalidSignatureError("no"), "ListKeys")
    clock.advance(61.0)
    assert tracker.due() == [] and tracker.due(force=True) == []


def test_shutdown_summarizes_the_window_under_way() -> None:
    clock = Clock()
    tracker = failures(clock, per_source=0)
    for _ in range(3):
        tracker.refused("198.51.100.1", InvalidSignatureError("no"), None)
    written: list[dict] = []
    assert tracker.flush(written.append, force=True) == 1
    assert written[0]["additionalEventData"]["operations"] == {UNKNOWN_OPERATION: 3}
    assert tracker.flush(written.append, force=True) == 0


def test_a_source_over_its_rate_is_answered_throttling_and_only_counted() -> None:
    clock = Clock()
    tracker = failures(clock, per_second=1.0)
    first = tracker.refused("198.51.100.1", UnrecognizedClientError("bad"), "Encrypt")
    second = tracker.refused("198.51.100.1", UnrecognizedClientError("bad"), "Encrypt")
    assert (first[0].code, first[1]) == ("UnrecognizedClientException", True)
    assert (second[0].code, second[0].message, second[1]) == ("ThrottlingException", "Rate exceeded", False)
    assert tracker.refused("198.51.100.2", UnrecognizedClientError("bad"), "Encrypt")[0].code != "ThrottlingException"
    # A refused body is never turned into a throttle: the connection closes on its 413.
    assert tracker.refused("198.51.100.1", RequestEntityTooLargeError("big"), None)[0].code == \
        "RequestEntityTooLargeException"
    clock.advance(1.0)
    assert tracker.refused("198.51.100.1", UnrecognizedClientError("bad"), "Encrypt")[0].code == \
        "UnrecognizedClientException"


def test_many_sources_are_tracked_and_listed_within_bounds() -> None:
    clock = Clock()
    tracker = failures(clock, per_source=0)
    for i in range(MAX_TRACKED_SOURCES + 500):
        tracker.refused(f"2001:db8::{i:x}", InvalidSignatureError("no"), None)
    clock.advance(60.0)
    (summary,) = tracker.due()
    data = summary["additionalEventData"]
    assert data["aggregatedCount"] == MAX_TRACKED_SOURCES + 500
    assert len(data["sources"]) <= LISTED_SOURCES + 1 and OTHER_SOURCES in data["sources"]
    assert sum(data["sources"].values()) == MAX_TRACKED_SOURCES + 500
