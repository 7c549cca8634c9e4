"""Prometheus metrics, served at ``GET /metrics`` (prometheus-client's text format).

Labels are drawn from fixed sets only: the operation (a KMS operation name, a /v1 query's name such as
GetKeyStateAt, or "unknown" for whatever else a client put in X-Amz-Target) and the AWS error code ("" when the call succeeded). No key id, alias, principal,
account or address is ever a label, so the series stay few and the metrics say nothing about who holds what.
With several worker processes each answers for itself (whichever one the scrape reaches)."""
from __future__ import annotations

import time
from bisect import bisect_left
from itertools import accumulate
from typing import Any, Iterable, Iterator

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample

from domain.keystores.store import ConnectionState
from infrastructure.runtime import Runtime

CONTENT_TYPE = CONTENT_TYPE_LATEST
# From a cached Encrypt (under a millisecond) to a call that waited out a slow disk.
_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


CONNECTION_STATES = tuple(s.value for s in ConnectionState)


class _RuntimeCollector(Collector):
    """Read at scrape time from what the runtime already counts: nothing on the request path."""

    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime

    def collect(self) -> Iterator[Any]:
        stats = self._runtime.audit.stats
        yield CounterMetricFamily("keyledger_audit_batches", "Group commits of audit records.", value=stats.batches)
        yield CounterMetricFamily("keyledger_audit_records", "Audit records committed by group commit (a key "
                                  "change's record commits with the change and is not counted here).",
                                  value=stats.records - stats.failed_records)
        yield CounterMetricFamily("keyledger_audit_failed_records", "Audit records that could not be made "
                                  "durable; each call answered KMSInternalException.", value=stats.failed_records)
        yield GaugeMetricFamily("keyledger_audit_largest_batch", "The largest group commit so far.",
                                value=stats.largest)
        yield GaugeMetricFamily("keyledger_audit_committer_process", "1 while this server process hands its audit "
                                "records to the audit committer process, 0 while it commits them itself.",
                                value=1 if self._runtime.audit.hands_batches_over else 0)
        yield GaugeMetricFamily("keyledger_sealed", "1 while the service refuses key operations (root key "
                                "unavailable), else 0.", value=1 if self._runtime.sealed_reason else 0)
        background = self._runtime.background_state()
        if background is not None:
            yield GaugeMetricFamily("keyledger_background_leader", "1 while this process runs the background work "
                                    "(checkpoint signing, maintenance) of the deployment, else 0.",
                                    value=1 if background["leader"] else 0)
        root_key = self._runtime.root_key_state()
        provider = GaugeMetricFamily("keyledger_root_key_provider", "1 for the root-key provider in use (file, env or "
                                     "pkcs11).", labels=("provider",))
        provider.add_metric((root_key["provider"],), 1)
        yield provider
        if root_key.get("current_version") is not None:
            yield GaugeMetricFamily("keyledger_root_key_version", "The root key version new values are wrapped under.",
                                    value=root_key["current_version"])
            yield GaugeMetricFamily("keyledger_root_key_rotation_in_progress", "1 while a root-key rotation is "
                                    "re-wrapping stored values (run 'keyledger root-key rotate' to finish it), else 0.",
                                    value=1 if root_key["rotation"] == "re-wrapping" else 0)
            yield GaugeMetricFamily("keyledger_root_key_retired_versions", "Root key versions retired (destroyed).",
                                    value=len(root_key["retired_versions"]))
        stores = GaugeMetricFamily("keyledger_custom_key_stores", "Custom key stores by type and ConnectionState.",
                                   labels=("connection_state", "type"))
        counts = {(state, "AWS_CLOUDHSM"): 0 for state in CONNECTION_STATES}
        for store in self._runtime.key_store_state():
            counts[(store["connection_state"], store["type"])] = counts.get((store["connection_state"], store["type"]), 0) + 1
        for labels, count in sorted(counts.items()):
            stores.add_metric(labels, count)
        yield stores


class _CallCounts(Collector):
    """keyledger_requests and keyledger_request_duration_seconds: what prometheus-client's Counter and Histogram
    would expose, counted in plain lists and spelled as its metric families only when scraped. Every call is
    counted here, on the event loop's thread (the pipeline is a coroutine), and the library's children each take a
    lock on every increment: three locks and their calls a call cost about 7 us of a GenerateDataKey's CPU in place
    (docs/performance.md, session 14). A scrape reads while the loop counts: it may see a call counted and not yet
    timed, as a scrape of the library's own may."""

    def __init__(self) -> None:
        self._calls: dict[tuple[str, str], list[float]] = {}  # (operation, error code) -> [count, created]
        self._times: dict[str, list[float]] = {}  # operation -> [a count per bucket and +Inf, sum, created]

    def count(self, operation: str, error_code: str, seconds: float) -> None:
        calls = self._calls.get((operation, error_code))
        if calls is None:
            calls = self._calls[(operation, error_code)] = [0, time.time()]
        calls[0] += 1
        times = self._times.get(operation)
        if times is None:
            times = self._times[operation] = [0] * (len(_BUCKETS) + 1) + [0.0, time.time()]
        times[bisect_left(_BUCKETS, seconds)] += 1  # the first bucket whose bound is >= seconds, as the library's
        times[-2] += seconds

    def collect(self) -> Iterator[Any]:
        requests = CounterMetricFamily("keyledger_requests", "Calls answered (KMS API and /v1), by operation and AWS "
                                       "error code ('' when the call succeeded).", labels=("operation", "error_code"))
        for (operation, error_code), (count, created) in sorted(list(self._calls.items())):
            requests.add_metric((operation, error_code), count, created=created)
        yield requests
        durations = HistogramMetricFamily("keyledger_request_duration_seconds", "Time from a request's arrival to its "
                                          "answer, audit record included, by operation.", labels=("operation",))
        bounds = [*map(_bucket_label, _BUCKETS), "+Inf"]
        for operation, times in sorted(list(self._times.items())):
            counts = list(accumulate(times[:len(bounds)]))
            durations.add_metric((operation,), list(zip(bounds, counts)), sum_value=times[-2])
            durations.samples.append(Sample("keyledger_request_duration_seconds_created", {"operation": operation},
                                            times[-1]))
        yield durations


def _bucket_label(bound: float) -> str:
    return repr(float(bound))  # as the library spells a bucket's bound


class Metrics:
    def __init__(self, runtime: Runtime | None, operations: Iterable[str]) -> None:
        """``runtime``: None for the calls' series alone (their tests)."""
        self.registry = CollectorRegistry()
        self._operations = frozenset(operations)
        self._calls = _CallCounts()
        self.registry.register(self._calls)
        if runtime is not None:
            self.registry.register(_RuntimeCollector(runtime))

    def knows(self, operation: str) -> bool:
        """A KMS or /v1 operation's name (not a caller's made-up one)."""
        return operation in self._operations

    def observe(self, operation: str, error_code: str | None, seconds: float) -> None:
        self._calls.count(operation if operation in self._operations else "unknown", error_code or "", seconds)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
