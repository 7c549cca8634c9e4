"""CPU the audit committer spends per record (`python -m bench.audit_commit`).

Calls ``AuditTrail._commit`` on batches of realistic Encrypt records, in process, against a fresh SQLite
(or ``KEYLEDGER_DATABASE_URL``) store, and prints the committer thread's CPU time per record
(``time.thread_time``: the fsync's wait is not counted, the GIL-holding work is). With ``--profile`` it
also prints where that time goes. The machine's load moves the numbers; compare runs made back to back.
"""
from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from application.audit.group_commit import PendingRecord  # noqa: E402
from application.audit.records import cloudtrail_record, new_ids  # noqa: E402
from application.calls import Call, Caller  # noqa: E402
from domain.identifiers import Scope  # noqa: E402
from infrastructure.bootstrap import build_runtime  # noqa: E402
from infrastructure.settings import Settings  # noqa: E402

ACCOUNT = "111122223333"
KEY_ARN = f"arn:aws:kms:us-east-1:{ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ab"


def encrypt_record(runtime) -> dict:
    """The record an Encrypt call of the bench load leaves, built the way the API builds it."""
    request_id, event_id = new_ids(2)
    call = Call.api("Encrypt", at=runtime.now(), request_id=request_id, event_id=event_id, source_ip="127.0.0.1",
                    user_agent="Boto3/1.35.0 md/Botocore#1.35.0 ua/2.0 os/linux#6.1.0 md/arch#x86_64 "
                    "lang/python#3.11.7 md/pyimpl#CPython cfg/retry-mode#legacy Botocore/1.35.0")
    call.authenticate(Caller(f"arn:aws:iam::{ACCOUNT}:root", ACCOUNT, "AKIAIOSFODNN7EXAMPLE"), Scope(ACCOUNT, "us-east-1"))
    call.request_parameters = {"keyId": KEY_ARN, "encryptionAlgorithm": "SYMMETRIC_DEFAULT",
                               "encryptionContext": {"purpose": "bench", "tenant": "t-42"}}
    call.add_resource(KEY_ARN)
    return cloudtrail_record(call)


def measure(runtime, batches: int, batch_size: int, walls: list[float] | None = None, trail=None) -> list[float]:
    """µs of this thread's CPU per record, one sample per batch (and into ``walls`` each batch's wall ms)."""
    trail = trail or runtime.audit
    samples = []
    for _ in range(batches):
        errors: list = []
        batch = [PendingRecord(encrypt_record(runtime), errors.append) for _ in range(batch_size)]
        start, wall = time.thread_time(), time.perf_counter()
        trail._commit(batch)
        samples.append((time.thread_time() - start) * 1e6 / batch_size)
        if walls is not None:
            walls.append((time.perf_counter() - wall) * 1000)
        assert errors == [None] * batch_size, errors
    return samples


def compare_own_transactions(runtime, batches: int, batch_size: int) -> None:
    from infrastructure.audit_committer import build_committer_trail

    trail, close = build_committer_trail(runtime.settings, runtime.ledger.mapper.row_key)
    try:
        own, by = trail._appends, {"own transactions": [], "the library's": []}
        assert own is not None, "the committer's own transactions are for SQLite and PostgreSQL"
        measure(runtime, 10, batch_size, trail=trail)
        for _ in range(max(1, batches // 10)):
            for name, chosen in (("own transactions", own), ("the library's", None)):
                trail._appends = chosen
                by[name] += measure(runtime, 10, batch_size, trail=trail)
        trail._appends = own
    finally:
        close()
    for name, found in by.items():
        found.sort()
        print(f"audit commit, batches of {batch_size}, {name}: CPU per record median {statistics.median(found):.1f} µs, "
              f"p10 {found[len(found) // 10]:.1f}, p90 {found[len(found) * 9 // 10]:.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--profile", action="store_true", help="print the top of a cProfile of the commits")
    parser.add_argument("--compare-index", action="store_true",
                        help="alternate batches with and without the audit index rows and print both (issue 13)")
    parser.add_argument("--compare-own-transactions", action="store_true",
                        help="the committer process's trail: alternate batches in its own SQLite transactions and in "
                        "the library's, and print both (decision 269)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        runtime = build_runtime(Settings.load(data_dir=Path(tmp), database_url=os.environ.get("KEYLEDGER_DATABASE_URL")))
        try:
            measure(runtime, 10, args.batch_size)  # warm up: the head, the connection, caches
            if args.compare_own_transactions:
                compare_own_transactions(runtime, args.batches, args.batch_size)
                return
            if args.compare_index:
                index, by = runtime.audit._index, {"with the index": [], "without": []}
                for _ in range(args.batches // 10):
                    for name, chosen in (("with the index", index), ("without", None)):
                        runtime.audit._index = chosen
                        by[name] += measure(runtime, 10, args.batch_size)
                runtime.audit._index = index
                for name, found in by.items():
                    found.sort()
                    print(f"audit commit {name}: CPU per record median {statistics.median(found):.1f} µs, "
                          f"p10 {found[len(found) // 10]:.1f}, p90 {found[len(found) * 9 // 10]:.1f}")
                return
            if args.profile:
                profiler = cProfile.Profile(time.thread_time)  # CPU, as measured: not the fsync's wait
                profiler.enable()
            walls: list[float] = []
            samples = measure(runtime, args.batches, args.batch_size, walls)
            if args.profile:
                profiler.disable()
                pstats.Stats(profiler).sort_stats(os.environ.get("BENCH_SORT", "tottime")).print_stats(int(os.environ.get("BENCH_TOP", "25")))
        finally:
            runtime.close()
    samples.sort()
    print(f"audit commit, {args.batches} batches of {args.batch_size} Encrypt records: CPU per record "
          f"median {statistics.median(samples):.1f} µs, p10 {samples[len(samples) // 10]:.1f} µs, "
          f"p90 {samples[len(samples) * 9 // 10]:.1f} µs; wall per batch (the commit's wait included) median "
          f"{statistics.median(walls):.2f} ms")


if __name__ == "__main__":
    main()
