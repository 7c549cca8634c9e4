"""`make bench`, part three (issue 13): what history costs as it grows. Every number is measured on a small
and a large store in one run and printed as a ratio (goal: <= 1.5); nothing here is asserted in tests.

    python -m bench.scale [checkpoints] ...      (KEYLEDGER_BENCH_SCALE_URL=postgresql+psycopg://... for PostgreSQL)

Stores are built through the real write path (the services, LedgerWriter, the group committer), not HTTP."""
from __future__ import annotations

import atexit
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from application.audit.checkpoints import Checkpointer, stored_checkpoints  # noqa: E402
from application.audit.records import iso  # noqa: E402
from bench.query_load import ADMIN_ENV, encrypt_under_queries  # noqa: E402
from domain.audit.chain import checkpoint_from_json, checkpoint_to_json, make_checkpoint  # noqa: E402
from domain.audit.log import AUDIT_CHECKPOINTS_ID, AuditCheckpoints  # noqa: E402
from domain.identifiers import Scope  # noqa: E402
from infrastructure.bootstrap import Runtime, build_runtime  # noqa: E402
from infrastructure.checkpoint_file import CheckpointFile  # noqa: E402
from infrastructure.settings import Settings  # noqa: E402

SCOPE = Scope("111122223333", "us-east-1")

CHECKPOINTS = int(os.environ.get("KEYLEDGER_BENCH_CHECKPOINTS", "100000"))
DATABASE_URL = os.environ.get("KEYLEDGER_BENCH_SCALE_URL") or None


def median_ms(fn: Callable[[], Any], runs: int) -> float:
    return median_cost(fn, runs)[0]


def median_cost(fn: Callable[[], Any], runs: int) -> tuple[float, float]:
    """Median wall milliseconds and median CPU milliseconds of this process (SQLite runs in it). The CPU figure
    is the one other load on a shared machine barely moves, so the ratios below are printed for both."""
    wall, cpu = [], []
    for _ in range(runs):
        start, start_cpu = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return statistics.median(wall) * 1000, statistics.median(cpu) * 1000


def fresh_runtime(directory: Path) -> Runtime:
    url = None
    if DATABASE_URL:
        from tests.servers import drop_postgres_schema, new_postgres_schema

        url, schema = new_postgres_schema(DATABASE_URL)
        atexit.register(drop_postgres_schema, DATABASE_URL, schema)  # after every runtime has been closed
    # The administrator's access key, so that bench.query_load can serve the store afterwards.
    return build_runtime(Settings.load(environ=dict(ADMIN_ENV), data_dir=directory / "data", database_url=url))


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


# -- history: point in time, timeline, audit pages --------------------------------------------------------

RECORDS = int(os.environ.get("KEYLEDGER_BENCH_RECORDS", "1000000"))
KEY_EVENTS = int(os.environ.get("KEYLEDGER_BENCH_KEY_EVENTS", "10000"))


def grow_key(runtime: Runtime, key_id: str, events: int) -> None:
    """``events`` DescriptionUpdated events on the key through LedgerWriter.commit, 500 per change (one record
    naming them each), as a service call."""
    import uuid

    from application.audit.records import new_ids
    from application.calls import Call

    services = runtime.services
    assert services is not None
    writer = services.keys._access.writer  # the application's one write path
    done = 0
    while done < events:
        key = runtime.ledger.repository.get(uuid.UUID(key_id))
        for i in range(min(500, events - done)):
            key.update_description(f"d{done + i}", runtime.now())
        request_id, event_id = new_ids(2)
        call = Call.service("UpdateKeyDescription", at=runtime.now(), request_id=request_id, event_id=event_id,
                            scope=SCOPE)
        services.authorizer.authorize_call(call)
        writer.commit(call, [key])
        done += min(500, events - done)


def add_records(runtime: Runtime, count: int, key_ids: list[str]) -> None:
    """``count`` Encrypt records through the group committer (batches of 256), naming the keys in turn."""
    from application.audit.group_commit import PendingRecord
    from bench.audit_commit import encrypt_record

    done = 0
    while done < count:
        batch = []
        for i in range(min(256, count - done)):
            record = encrypt_record(runtime)
            record["resources"] = [{**record["resources"][0], "ARN": SCOPE.key_arn(key_ids[(done + i) % len(key_ids)])}]
            batch.append(PendingRecord(record, lambda error: None))
        runtime.audit._commit(batch)
        done += len(batch)


def bench_history() -> None:
    from projections.audit_index import AuditFilter

    print(f"history ({'PostgreSQL' if DATABASE_URL else 'SQLite'}): 10,000 vs {RECORDS:,} audit records, "
          f"a key with {KEY_EVENTS:,} events; medians")
    results: dict[int, dict[str, tuple[float, float]]] = {}
    served: dict[int, dict[str, float]] = {}
    for count in (10_000, RECORDS):
        with tempfile.TemporaryDirectory() as tmp:
            runtime = fresh_runtime(Path(tmp))
            try:
                services = runtime.services
                assert services is not None
                started = time.perf_counter()
                call_keys = [services.keys.create_key(_call(runtime, "CreateKey"))["KeyMetadata"]["KeyId"]
                             for _ in range(10)]
                big = call_keys[0]
                services.aliases.create_alias(_call(runtime, "CreateAlias"), "alias/big", big)
                grow_key(runtime, big, KEY_EVENTS)
                middle = runtime.now()
                runtime.clock_service.advance(1)
                add_records(runtime, count, call_keys)
                built = time.perf_counter() - started
                history = runtime.history
                index = runtime.audit_index
                assert index is not None
                where = AuditFilter(SCOPE.account_id, call_keys[3])
                index.refresh_statistics()  # as the leader's maintenance pass does once a tenth of the index is new
                marker = index.seqs(where, 0, count // 20)[-1]
                costs = {
                    "key-at": median_cost(lambda: history.key_at(SCOPE, "alias/big", middle), 20),
                    "keys-at": median_cost(lambda: history.keys_at(runtime.now(), SCOPE.account_id, SCOPE.region), 10),
                    "timeline page": median_cost(lambda: history.timeline_page(big, SCOPE, 100, str(KEY_EVENTS // 2)), 20),
                    "audit page (key)": median_cost(lambda: index.records(runtime.ledger, index.seqs(where, marker, 100)), 20),
                    "checkpoint": median_cost(lambda: services.checkpointer.checkpoint_if_due(force=True), 10),
                }
                results[count] = costs
                print(f"  {count:>9,} records (built in {built:.0f} s), wall / cpu: " +
                      ", ".join(f"{name} {wall:.2f} / {cpu:.2f} ms" for name, (wall, cpu) in costs.items()))
            finally:
                runtime.close()
            served[count] = encrypt_under_queries(Path(tmp) / "data", runtime.settings.database_url, call_keys[0],
                                                  call_keys[3])
    small, large = results[10_000], results[RECORDS]
    for position, what in ((0, "wall"), (1, "cpu")):
        print(f"  ratio {RECORDS:,} / 10,000 ({what}): " +
              ", ".join(f"{name} {large[name][position] / max(small[name][position], 1e-3):.2f}" for name in small))
    print(f"  ratio {RECORDS:,} / 10,000 (served): " +
          ", ".join(f"{name} {served[RECORDS][name] / served[10_000][name]:.2f}" for name in served[10_000]))


def _call(runtime: Runtime, operation: str) -> Any:
    from application.audit.records import new_ids
    from application.calls import Call, Caller

    request_id, event_id = new_ids(2)
    call = Call.api(operation, at=runtime.now(), request_id=request_id, event_id=event_id, source_ip="127.0.0.1",
                    user_agent="bench")
    call.authenticate(Caller(f"arn:aws:iam::{SCOPE.account_id}:root", SCOPE.account_id, "AKIAIOSFODNN7EXAMPLE"), SCOPE)
    return call


SECTIONS = {"checkpoints": bench_checkpoints, "history": bench_history}


def main(argv: list[str]) -> None:
    for name in argv or list(SECTIONS):
        SECTIONS[name]()


if __name__ == "__main__":
    main(sys.argv[1:])
