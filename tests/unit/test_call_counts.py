"""`api/metrics.py`: the calls' counter and duration histogram are counted in plain lists and spelled at scrape
time. For any calls, what a scrape reads is what prometheus-client's own Counter and Histogram expose for the same
calls (bucket bounds included, a duration on a bound too), but for the `_created` times, which only say when."""
from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from api.metrics import _BUCKETS, Metrics

OPERATIONS = ["Encrypt", "Decrypt", "GenerateDataKey", "ListKeysAt"]


def samples(text: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text.decode()) for s in family.samples
            if not s.name.endswith("_created") and s.name.startswith("keyledger_request")}


def by_the_library(calls: list[tuple[str, str | None, float]]) -> bytes:
    registry = CollectorRegistry()
    requests = Counter("keyledger_requests", "x", ("operation", "error_code"), registry=registry)
    durations = Histogram("keyledger_request_duration_seconds", "y", ("operation",), buckets=_BUCKETS,
                          registry=registry)
    for operation, code, seconds in calls:
        name = operation if operation in OPERATIONS else "unknown"
        requests.labels(name, code or "").inc()
        durations.labels(name).observe(seconds)
    return generate_latest(registry)


def ours(calls: list[tuple[str, str | None, float]]) -> Metrics:
    metrics = Metrics(None, OPERATIONS)  # the calls' series alone; the runtime's gauges are tested end to end
    for call in calls:
        metrics.observe(*call)
    return metrics


durations = st.one_of(st.sampled_from(_BUCKETS), st.floats(min_value=0, max_value=20, allow_nan=False))
calls = st.lists(st.tuples(st.sampled_from([*OPERATIONS, "MadeUp"]),
                           st.sampled_from([None, "ValidationException", "NotFoundException"]), durations), max_size=40)


@settings(max_examples=200, deadline=None)
@given(calls=calls)
def test_a_scrape_reads_what_the_library_would_expose(calls: Any) -> None:
    expected = samples(by_the_library(calls))
    assert samples(ours(calls).exposition()) == expected


def test_every_series_has_its_created_time_and_the_text_is_the_librarys_shape() -> None:
    text = ours([("Encrypt", None, 0.003), ("Encrypt", "ValidationException", 7.0)]).exposition().decode()
    assert 'keyledger_request_duration_seconds_bucket{le="0.005",operation="Encrypt"} 1.0' in text
    assert 'keyledger_request_duration_seconds_bucket{le="+Inf",operation="Encrypt"} 2.0' in text
    assert 'keyledger_requests_created{error_code="",operation="Encrypt"}' in text
    assert 'keyledger_request_duration_seconds_created{operation="Encrypt"}' in text
    assert "# TYPE keyledger_requests_total counter" in text
