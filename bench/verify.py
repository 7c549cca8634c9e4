"""`make bench`, verify and storage (issue 13): events per second of a full `keyledger audit verify`, bytes per
audit record, and what an incremental verify reads. Printed, never asserted.

    python -m bench.verify [--records N] [--key-events N] [--before TREE] [--keep DIR]

Builds a store through the real write path (the group committer's batches of Encrypt records, a key changed
``--key-events`` times through LedgerWriter.commit, a checkpoint every 1,000 records as a server signs them); with
``--before`` (a checkout of another commit, e.g. ``git archive main | tar -x -C /tmp/before``) that tree builds its
own store the same way, since each tree writes its own stored form. Then:
  * bytes per record of each store: the audit record's stored state, the event table (its pages and index), and
    the whole database (every table and index, the audit index included), each over the records in the store;
  * the command, `python -m api audit verify`: this tree on its store, the other tree on its store, and this tree on
    the other tree's store (rows written before), alternated, best of ``--runs``, with the ratio to the other tree;
  * `verify_ledger` in process through the event library's reader and through the plain SELECT (infrastructure/
    event_rows.py);
  * an incremental verify after 1 % more records: the rows it read against the rows in the store.
``KEYLEDGER_BENCH_SCALE_URL=postgresql+psycopg://...`` builds the store on PostgreSQL."""
from __future__ import annotations

import argparse
import os
import re
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from application.audit.checkpoints import stored_checkpoints  # noqa: E402
from application.audit.ledger_rows import NotificationRows  # noqa: E402
from application.audit.ledger_verify import verify_ledger  # noqa: E402
from application.audit.verify_anchor import (  # noqa: E402
    checkpoints_after,
    proved_anchor,
    stored_newest_first,
    verify_incremental,
)
from bench.scale import _call, add_records, fresh_runtime, grow_key  # noqa: E402
from infrastructure.bootstrap import Runtime, build_runtime  # noqa: E402
from infrastructure.event_rows import SqlEventRows  # noqa: E402
from infrastructure.settings import Settings  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def build(runtime: Runtime, records: int, key_events: int) -> None:
    services = runtime.services
    assert services is not None
    keys = [services.keys.create_key(_call(runtime, "CreateKey"))["KeyMetadata"]["KeyId"] for _ in range(10)]
    grow_key(runtime, keys[0], key_events)
    grow(runtime, records, keys)


def grow(runtime: Runtime, records: int, keys: list[str] | None = None) -> None:
    services = runtime.services
    assert services is not None
    keys = keys or ["1234abcd-12ab-34cd-56ef-1234567890ab"]
    done = 0
    while done < records:
        step = min(1000, records - done)
        add_records(runtime, step, keys)
        services.checkpointer.checkpoint_if_due(force=True)
        done += step


def reopen(data_dir: Path, database_url: str | None) -> Runtime:
    return build_runtime(Settings.load(environ={}, data_dir=data_dir, database_url=database_url))


_BUILD_ELSEWHERE = ("import sys; from pathlib import Path; from bench.scale import fresh_runtime; "
                    "from bench.verify import build; rt = fresh_runtime(Path(sys.argv[1])); "
                    "build(rt, int(sys.argv[2]), int(sys.argv[3])); "
                    "print(f'{rt.settings.data_dir}\\t{rt.settings.database_url or \"\"}'); rt.close()")


def build_with(tree: Path, directory: Path, records: int, key_events: int) -> tuple[Path, str | None]:
    """A store built by another tree's code (its stored form); (data dir, database URL or None for SQLite)."""
    done = subprocess.run([sys.executable, "-c", _BUILD_ELSEWHERE, str(directory), str(records), str(key_events)],
                          cwd=tree, env={**os.environ, "PYTHONPATH": str(tree)}, capture_output=True, text=True,
                          check=True)
    data_dir, _, url = done.stdout.splitlines()[-1].partition("\t")
    return Path(data_dir), (url or None)


def storage(data_dir: Path, database_url: str | None) -> dict[str, float]:
    """Bytes per audit record: its stored state (mean), the event table with its index, the whole database."""
    if database_url is None:
        db = sqlite3.connect(data_dir / "keyledger.db")
        try:
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            records, state = db.execute("SELECT count(*), avg(length(state)) FROM keyledger_events "
                                        "WHERE topic LIKE '%RecordAppended'").fetchone()
            events = db.execute("SELECT sum(pgsize) FROM dbstat WHERE name IN ('keyledger_events', "
                                "'keyledger_events_aggregate_idx')").fetchone()[0]
            total = db.execute("PRAGMA page_count").fetchone()[0] * db.execute("PRAGMA page_size").fetchone()[0]
        finally:
            db.close()
    else:
        import sqlalchemy as sa

        engine = sa.create_engine(database_url)
        try:
            with engine.connect() as conn:
                records, state = conn.execute(sa.text("SELECT count(*), avg(octet_length(state)) FROM keyledger_events "
                                                      "WHERE topic LIKE '%RecordAppended'")).one()
                events = conn.execute(sa.text("SELECT pg_total_relation_size('keyledger_events')")).scalar()
                total = conn.execute(sa.text(
                    "SELECT sum(pg_total_relation_size(c.oid)) FROM pg_class c JOIN pg_namespace n ON n.oid = "
                    "c.relnamespace WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'm')")).scalar()
        finally:
            engine.dispose()
    return {"records": records, "state": float(state), "events": events / records, "total": total / records}


def command(tree: Path, data_dir: Path, database_url: str | None, *extra: str) -> tuple[float, str]:
    """Seconds of one `audit verify` by the tree's code, and its output line."""
    args = [sys.executable, "-m", "api", "audit", "verify", "--data-dir", str(data_dir), *extra]
    if database_url:
        args += ["--database-url", database_url]
    started = time.perf_counter()
    done = subprocess.run(args, cwd=tree, env={**os.environ, "PYTHONPATH": str(tree)}, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    return elapsed, (done.stdout or done.stderr).strip().splitlines()[-1]


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=int(os.environ.get("KEYLEDGER_BENCH_RECORDS", "100000")))
    parser.add_argument("--key-events", type=int, default=10_000)
    parser.add_argument("--before", type=Path, help="another tree whose `audit verify` to time on the same store")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--keep", type=Path, help="build the store here (or reuse the one there) and keep it")
    options = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        store = options.keep or Path(tmp) / "store"
        reuse = (store / "data" / "keyledger.db").is_file()
        runtime = fresh_runtime(store) if not reuse else reopen(store / "data", None)
        data_dir = runtime.settings.data_dir  # fresh_runtime keeps the data in the store's "data" directory
        database_url = runtime.settings.database_url if os.environ.get("KEYLEDGER_BENCH_SCALE_URL") else None
        if not reuse:
            started = time.perf_counter()
            build(runtime, options.records, options.key_events)
            print(f"built {options.records:,} records and a key with {options.key_events:,} events in "
                  f"{time.perf_counter() - started:.0f} s ({'PostgreSQL' if database_url else 'SQLite'})")
        checkpoints = stored_checkpoints(runtime.ledger)
        key = runtime.services.audit_public_key if runtime.services else None
        runtime.close()
        stores = {"this tree": (ROOT, data_dir, database_url)}
        if options.before:
            before_dir, before_url = build_with(options.before.resolve(), Path(tmp) / "before", options.records,
                                                options.key_events)
            stores["before"] = (options.before.resolve(), before_dir, before_url)
        sizes = {name: storage(directory, url) for name, (_, directory, url) in stores.items()}
        for name, size in sizes.items():
            print(f"  bytes per audit record, {name}'s store ({size['records']:,} records): state {size['state']:,.0f}, "
                  f"event table and its index {size['events']:,.0f}, whole database {size['total']:,.0f}")
        if "before" in sizes:
            after, before = sizes["this tree"], sizes["before"]
            print("  ratio this tree / before: " + ", ".join(f"{what} {after[what] / before[what]:.2f}"
                                                          for what in ("state", "events", "total")) +
                  f"  (goal: whole database <= 700 bytes per record: {after['total']:,.0f})")
        # The default verifies a large ledger in parts, one process per core (decision 251); --jobs 1 is one pass.
        runs = [("this tree", ROOT, data_dir, database_url, ()),
                ("this tree, one pass", ROOT, data_dir, database_url, ("--jobs", "1"))]
        if options.before:
            runs += [("before", stores["before"][0], stores["before"][1], stores["before"][2], ()),
                     ("this tree on the before store", ROOT, stores["before"][1], stores["before"][2], ())]
        best: dict[str, tuple[float, str]] = {}
        for _ in range(options.runs):
            for name, tree, directory, url, extra in runs:
                elapsed, line = command(tree, directory, url, *extra)
                if name not in best or elapsed < best[name][0]:
                    best[name] = (elapsed, line)
        rates = {}
        for name, (elapsed, line) in best.items():
            rate = re.search(r"\(([0-9,]+) events/s(?: in \d+ processes)?\)", line)
            rates[name] = int(rate.group(1).replace(",", "")) if rate else None
            print(f"  `audit verify`, {name}: best {elapsed:.2f} s (whole process)  | {line}")
        if rates.get("before"):
            print("  verify events/s ratio to before: " + ", ".join(
                f"{name} {rate / rates['before']:.2f}" for name, rate in rates.items() if rate and name != "before") +
                  f"  (goal: >= 100,000 events/s: {rates['this tree'] or 0:,})")

        runtime = reopen(data_dir, database_url)
        try:
            for name, rows in (("event library's reader", lambda: NotificationRows(runtime.ledger)),
                               ("plain SELECT", lambda: SqlEventRows(runtime.uow))):
                times = []
                for _ in range(options.runs):
                    started = time.perf_counter()
                    result = verify_ledger(runtime.ledger, checkpoints, key, rows=rows())
                    times.append(time.perf_counter() - started)
                assert result.ok, result.problem
                events = result.records + result.events
                print(f"  verify_ledger, {name}: {events:,} events ({result.records:,} records) in {min(times):.2f} s, "
                      f"{events / min(times):,.0f} events/s")
            anchor = proved_anchor(result, checkpoints, runtime.uow.position_of, "bench")
            assert anchor is not None
            more = max(1000, options.records // 100)
            size_before = storage(data_dir, database_url)
            grow(runtime, more)
            size_after = storage(data_dir, database_url)
            grown = size_after["total"] * size_after["records"] - size_before["total"] * size_before["records"]
            print(f"  bytes per Encrypt record, marginal: the database grew by {grown / more:,.0f} bytes a record over "
                  f"{more:,} more (a checkpoint per 1,000 included; goal <= 700)")
            newer = checkpoints_after(stored_newest_first(runtime.ledger), anchor.checkpoint)
            assert newer is not None
            rows = SqlEventRows(runtime.uow)
            started = time.perf_counter()
            result = verify_incremental(runtime.ledger, anchor, newer, key, runtime.uow.position_of, rows)
            elapsed = time.perf_counter() - started
            assert result.ok, result.problem
            print(f"  incremental verify after {result.records:,} more records: read {rows.read:,} rows "
                  f"(the store holds {anchor.position + rows.read:,}), {elapsed * 1000:.0f} ms")
        finally:
            runtime.close()


if __name__ == "__main__":
    main(sys.argv[1:])
