"""`make bench`, archive (issue 13, "Retention without losing proof"): `keyledger audit archive` throughput and the
bytes an archived record costs, against what it costs in the database, and verify across segments against verify of
the same ledger before archiving. Printed, never asserted.

    python -m bench.archive [--records N]

Builds a store through the real write path (Encrypt records by the group committer's batches, a checkpoint every
1,000 records, a key changed 1,000 times), moves the clock two days on, adds a few records, then archives everything
older than a day (runs of ``--max-records``) and times it. The floor, measured in the same run on the same store, is
a full in-process verify (it reads and hashes every row too). ``KEYLEDGER_BENCH_SCALE_URL`` builds it on PostgreSQL.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from application.audit.archived import MergedRows  # noqa: E402
from application.audit.checkpoints import stored_checkpoints  # noqa: E402
from application.audit.ledger_verify import verify_ledger  # noqa: E402
from application.calls import Operator  # noqa: E402
from bench.scale import DATABASE_URL, _call, fresh_runtime, grow_key  # noqa: E402
from bench.verify import grow  # noqa: E402
from domain.audit.log import AUDIT_LOG_ID  # noqa: E402
from infrastructure.audit_segments import body_rows, load_segments  # noqa: E402
from infrastructure.event_rows import SqlEventRows  # noqa: E402


def audit_bytes(runtime) -> tuple[int, int]:
    """(records, bytes of their stored rows' state) in the event store."""
    events = runtime.ledger.recorder.events_record_cls.__table__
    with runtime.uow.read() as session:
        count, size = session.execute(sa.select(sa.func.count(), sa.func.sum(sa.func.length(events.c.state))).where(
            events.c.originator_id == AUDIT_LOG_ID)).one()
    return count, int(size or 0)


def full_verify(runtime, segments: Path | None = None) -> tuple[float, int]:
    key = runtime.services.audit_public_key
    rows = SqlEventRows(runtime.uow)
    if segments is not None:
        loaded = load_segments(segments, key)
        rows = MergedRows(rows, (row for name, _, body in loaded for row in body_rows(name, body)))
    started = time.perf_counter()
    result = verify_ledger(runtime.ledger, stored_checkpoints(runtime.ledger), key, rows=rows)
    elapsed = time.perf_counter() - started
    assert result.ok, result.problem
    return (result.records + result.events) / elapsed, result.records


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=int(os.environ.get("KEYLEDGER_BENCH_RECORDS", "100000")))
    parser.add_argument("--max-records", type=int, default=100_000)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        runtime = fresh_runtime(Path(tmp) / "data")
        try:
            services = runtime.services
            keys = [services.keys.create_key(_call(runtime, "CreateKey"))["KeyMetadata"]["KeyId"] for _ in range(10)]
            grow_key(runtime, keys[0], 1000)
            grow(runtime, args.records, keys)
            runtime.clock_service.advance(2 * 86_400)
            grow(runtime, 1000, keys)
            records, size = audit_bytes(runtime)
            floor, _ = full_verify(runtime)
            segments = Path(tmp) / "segments"
            before = runtime.now() - timedelta(days=1)
            operator = Operator(user="bench", host="bench")
            archived = runs = 0
            started = time.perf_counter()
            while (result := services.archive.archive(operator, before, segments, args.max_records)) is not None:
                archived, runs = archived + result.records, runs + 1
            elapsed = time.perf_counter() - started
            segment_bytes = sum(p.stat().st_size for p in segments.iterdir())
            left, left_size = audit_bytes(runtime)
            across, verified = full_verify(runtime, segments)
        finally:
            runtime.close()
    engine = "PostgreSQL" if DATABASE_URL else "SQLite"
    rate = archived / elapsed
    print(f"archive ({engine}): {records:,} records stored, {archived:,} archived in {runs} runs of at most "
          f"{args.max_records:,}")
    print(f"  archive: {rate:,.0f} records/s ({elapsed:.2f} s); floor (full verify of the same store, in process): "
          f"{floor:,.0f} events/s; ratio archive/floor {rate / floor:.2f}")
    print(f"  bytes per record: {size / records:,.0f} B stored state in the database -> "
          f"{segment_bytes / archived:,.0f} B in a segment ({size / records / (segment_bytes / archived):.1f}x "
          f"smaller); {left:,} records ({left_size / max(left, 1):,.0f} B each) left in the database")
    print(f"  verify --segments: {across:,.0f} events/s over {verified:,} records; ratio to the floor before "
          f"archiving {across / floor:.2f}")


if __name__ == "__main__":
    main(sys.argv[1:])
