"""`make bench`, part two: state-at-T latency for keys with 10, 1,000 and 10,000 events (snapshots should
keep the largest near the smallest), and replay throughput over a store of at least 100,000 events.

The store is filled through the application's own write path (events, view rows and snapshots in one
transaction), a thousand events per transaction so filling takes seconds, not an fsync per event."""
from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from application.cores import usable_cores  # noqa: E402
from application.history.point_in_time import PointInTime  # noqa: E402
from domain.identifiers import Scope  # noqa: E402
from infrastructure.bootstrap import build_runtime  # noqa: E402
from infrastructure.settings import Settings  # noqa: E402
from projections.key_event_index import SqlKeyEventIndex  # noqa: E402
from projections.replay import rebuild  # noqa: E402
from projections.replay_compare import compare  # noqa: E402
from projections.replay_tables import drop_tables  # noqa: E402

SCOPE = Scope("111122223333", "us-east-1")
REPLAY_EVENTS = int(os.environ.get("KEYLEDGER_BENCH_REPLAY_EVENTS", "100000"))
REPLAY_RECORDS_PER_EVENT = int(os.environ.get("KEYLEDGER_BENCH_REPLAY_RECORDS_PER_EVENT", "3"))
# Processes for the replay (as `keyledger replay --jobs`); one process is measured too.
REPLAY_WORKERS = int(os.environ.get("KEYLEDGER_BENCH_REPLAY_WORKERS", "0")) or usable_cores()


def _cpu() -> float:
    """CPU seconds of this process and of its children that have been waited for (the replay's forked ones)."""
    times = os.times()
    return times.user + times.system + times.children_user + times.children_system


def grow(runtime, key_id: str, events: int) -> None:
    """Adds ``events`` DescriptionUpdated events to the key through the one write path (bench/scale.py)."""
    from bench.scale import grow_key

    grow_key(runtime, key_id, events)


def create_key(runtime) -> str:
    from bench.scale import _call

    return runtime.services.keys.create_key(_call(runtime, "CreateKey"))["KeyMetadata"]["KeyId"]


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        runtime = build_runtime(Settings.load(data_dir=Path(tmp)))
        history = PointInTime(runtime.ledger, SqlKeyEventIndex(runtime.uow), runtime.clock)
        sizes = {}
        for events in (10, 1000, 10000):
            key_id = create_key(runtime)
            grow(runtime, key_id, events - 1)
            sizes[events] = key_id
        midpoint = runtime.now() - timedelta(milliseconds=1)
        print("state at T (key_at, SQLite, snapshots every 50 events):")
        medians = {}
        for events, key_id in sizes.items():
            samples = []
            for _ in range(30):
                start = time.perf_counter()
                history.key_at(SCOPE, key_id, midpoint)
                samples.append(time.perf_counter() - start)
            medians[events] = statistics.median(samples) * 1000
            print(f"  {events:>6} events: median {medians[events]:6.2f} ms, p90 {sorted(samples)[26] * 1000:6.2f} ms")
        print(f"  ratio 10,000 / 10 events: {medians[10000] / medians[10]:.2f}")

        total = sum(sizes)
        while total < REPLAY_EVENTS:
            key_id = create_key(runtime)
            grow(runtime, key_id, 4999)
            total += 5000
        engine = runtime.ledger.recorder.datastore.engine
        for workers in sorted({1, REPLAY_WORKERS}):
            started_cpu = _cpu()
            stats = rebuild(runtime.ledger, engine, "bench_", workers=workers)
            cpu = _cpu() - started_cpu
            differences = compare(engine, "", "bench_")
            drop_tables(engine, "bench_")
            print(f"replay ({workers} process{'es' if workers > 1 else ''}): {stats.events:,} events in "
                  f"{stats.seconds:.1f} s = {stats.events / stats.seconds:,.0f} events/s "
                  f"({stats.seconds / stats.events * 1e6:.1f} µs an event, CPU {cpu / stats.events * 1e6:.1f} µs an "
                  f"event in all processes, {stats.decoded_fast:,} decoded without the mapper); "
                  f"{len(differences)} differences from the live projections")
        replay_among_records(runtime, engine, total)
        runtime.close()


def replay_among_records(runtime, engine, events: int) -> None:
    """Issue 13: replay costs the events it replays, not the log. The same store with audit records among the
    key events (REPLAY_RECORDS_PER_EVENT per event, Encrypt records through the group committer), replayed by the
    event library's topic filter (before) and by the index of non-audit events (after), interleaved, in one run."""
    from bench.scale import add_records

    records = events * REPLAY_RECORDS_PER_EVENT
    add_records(runtime, records, [create_key(runtime)])
    rates: dict[str, list[float]] = {"topic": [], "index": []}
    for _ in range(2):
        for reader in ("topic", "index"):
            stats = rebuild(runtime.ledger, engine, "bench_", reader=reader)
            rates[reader].append(stats.events / stats.seconds)
            drop_tables(engine, "bench_")
    best = {reader: max(values) for reader, values in rates.items()}
    print(f"replay among {records:,} audit records ({events:,} key events, SQLite, best of 2, interleaved):")
    for reader, label in (("topic", "by topic (before)"), ("index", "by index (after)")):
        print(f"  {label:<18} {best[reader]:>10,.0f} events/s")
    print(f"  ratio after / before: {best['index'] / best['topic']:.2f}")


if __name__ == "__main__":
    main()
