"""`make bench`, part three (issue 13): what history costs as it grows. Every number is measured on a small
and a large store in one run and printed as a ratio (goal: <= 1.5); nothing here is asserted in tests.

    python -m bench.scale [checkpoints] ...      (KEYLEDGER_BENCH_SCALE_URL=postgresql+psycopg://... for PostgreSQL)

Stores are built through the real write path (the services, LedgerWriter, the group committer), not HTTP."""
from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from application.audit.checkpoints import Checkpointer, stored_checkpoints  # noqa: E402
from application.audit.records import iso  # noqa: E402
from domain.audit.chain import checkpoint_from_json, checkpoint_to_json, make_checkpoint  # noqa: E402
from domain.audit.log import AUDIT_CHECKPOINTS_ID, AuditCheckpoints  # noqa: E402
from infrastructure.bootstrap import Runtime, build_runtime  # noqa: E402
from infrastructure.checkpoint_file import CheckpointFile  # noqa: E402
from infrastructure.settings import Settings  # noqa: E402

CHECKPOINTS = int(os.environ.get("KEYLEDGER_BENCH_CHECKPOINTS", "100000"))
DATABASE_URL = os.environ.get("KEYLEDGER_BENCH_SCALE_URL") or None


def median_ms(fn: Callable[[], Any], runs: int) -> float:
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples) * 1000


def fresh_runtime(directory: Path) -> Runtime:
    url = None
    if DATABASE_URL:
        from tests.servers import new_postgres_schema

        url, _ = new_postgres_schema(DATABASE_URL)
    return build_runtime(Settings.load(environ={}, data_dir=directory, database_url=url))


# -- checkpoints ---------------------------------------------------------------------------------------------

def store_checkpoints(runtime: Runtime, count: int) -> None:
    """``count`` signed checkpoints saved as the checkpointer saves them (one event each, chained), in batches of
    10,000 per transaction, and the same lines in the checkpoint file."""
    services = runtime.services
    assert services is not None
    checkpointer = services.checkpointer
    checkpointer.checkpoint_if_due(force=True)
    last = checkpointer.newest()
    path = runtime.settings.checkpoint_file
    done = 1
    while done < count:
        stored = runtime.ledger.recorder.select_events(AUDIT_CHECKPOINTS_ID, desc=True, limit=1)
        holder = AuditCheckpoints.__new__(AuditCheckpoints)
        now = runtime.now()
        holder.__base_init__(AUDIT_CHECKPOINTS_ID, stored[0].originator_version, now)
        holder.last = None
        lines = []
        for _ in range(min(10_000, count - done)):
            assert last is not None
            last = make_checkpoint(checkpointer._signing_key, last.seq, last.chain, iso(now), last)
            holder.add(last.__dict__, now)
            lines.append(checkpoint_to_json(last))
        runtime.ledger.save(holder)
        with path.open("a") as f:
            f.write("".join(line + "\n" for line in lines))
        done += len(lines)


def previous_sync(runtime: Runtime) -> None:
    """What every checkpoint cost before issue 13: the whole file parsed, every stored checkpoint decoded."""
    in_file = {checkpoint_from_json(line).signature for line in CheckpointFile(runtime.settings.checkpoint_file).lines()}
    for checkpoint in stored_checkpoints(runtime.ledger):
        assert checkpoint.signature in in_file


def bench_checkpoints() -> None:
    print(f"checkpoint signing ({'PostgreSQL' if DATABASE_URL else 'SQLite'}), 10 vs {CHECKPOINTS:,} stored:")
    results: dict[int, tuple[float, float]] = {}
    for count in (10, CHECKPOINTS):
        with tempfile.TemporaryDirectory() as tmp:
            runtime = fresh_runtime(Path(tmp))
            try:
                started = time.perf_counter()
                store_checkpoints(runtime, count)
                built = time.perf_counter() - started
                services = runtime.services
                assert services is not None
                checkpointer: Checkpointer = services.checkpointer
                now_ms = median_ms(lambda: checkpointer.checkpoint_if_due(force=True), 20)
                before_ms = median_ms(lambda: previous_sync(runtime), 3 if count > 1000 else 20)
                results[count] = (now_ms, before_ms)
                print(f"  {count:>9,} stored (built in {built:.1f} s): sign + append {now_ms:7.2f} ms; "
                      f"the previous whole re-read alone {before_ms:9.2f} ms")
            finally:
                runtime.close()
    small, large = results[10], results[CHECKPOINTS]
    print(f"  ratio {CHECKPOINTS:,} / 10 stored: now {large[0] / small[0]:.2f}, before {large[1] / small[1]:.1f}")


SECTIONS = {"checkpoints": bench_checkpoints}


def main(argv: list[str]) -> None:
    for name in argv or list(SECTIONS):
        SECTIONS[name]()


if __name__ == "__main__":
    main(sys.argv[1:])
