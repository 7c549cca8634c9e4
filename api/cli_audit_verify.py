"""`keyledger audit verify`: the whole ledger, or (``--incremental``) what was stored since the checkpoint an earlier
verify proved (docs/audit.md, "Incremental verify")."""
from __future__ import annotations

import os
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator, Optional

import typer

from api.cli_audit import DatabaseUrl, DataDir, _runtime, audit_cli, parse_time
from api.cli_audit_archive import segments_option

_BLOCK = 1 << 16
# Below this many records a verify in parts saves less than starting its processes costs (docs/performance.md).
PARTS_FROM_RECORDS = 10_000
MAX_JOBS = 8


def _raw_from_pem(path: Path) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return serialization.load_pem_public_key(path.read_bytes()).public_bytes_raw()  # type: ignore[union-attr]


def _checkpoint_file(path: Path) -> list[Any]:
    """A checkpoint file named on the command line: missing, empty or damaged is an error, never a fallback."""
    from domain.audit.chain import checkpoint_from_json

    if not path.is_file():
        _fail(f"the checkpoint file {path} does not exist")
    lines = [line for line in path.read_text(encoding="utf-8", errors="replace").splitlines() if line.strip()]
    if not lines:
        _fail(f"the checkpoint file {path} is empty")
    out = []
    for number, line in enumerate(lines, start=1):
        try:
            out.append(checkpoint_from_json(line))
        except ValueError as exc:
            _fail(f"line {number} of {path} is not a checkpoint: {exc}")
    return out


def _file_newest_first(path: Path) -> Iterator[Any]:
    """The file's checkpoints from its last line back, reading blocks from its end: walking back to a checkpoint
    costs the lines after it, not the file."""
    from domain.audit.chain import checkpoint_from_json

    with path.open("rb") as f:
        position, carried, from_end = f.seek(0, os.SEEK_END), b"", 0
        while position > 0:
            start = max(0, position - _BLOCK)
            f.seek(start)
            lines = (f.read(position - start) + carried).split(b"\n")
            position = start
            carried = lines.pop(0) if start > 0 else b""  # the first line may begin in the block before
            for raw in reversed(lines):
                if not raw.strip():
                    continue
                from_end += 1
                try:
                    yield checkpoint_from_json(raw.decode("utf-8", errors="replace"))
                except ValueError as exc:
                    _fail(f"line {from_end} from the end of {path} is not a checkpoint: {exc}")


def _public_key_file(path: Path) -> bytes:
    try:
        return _raw_from_pem(path)
    except FileNotFoundError:
        _fail(f"the public key file {path} does not exist")
    except (ValueError, TypeError, AttributeError, OSError) as exc:
        _fail(f"{path} is not a PEM Ed25519 public key ({type(exc).__name__})")
    raise AssertionError


def _fail(message: str) -> None:
    typer.echo(f"keyledger audit verify: {message}", err=True)
    raise typer.Exit(2)


def _read_state(path: Path) -> Any:
    from application.audit.verify_anchor import VerifiedAnchor

    try:
        return VerifiedAnchor.from_json(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None  # no verify has been remembered here yet: this one is a full one
    except (OSError, ValueError) as exc:
        _fail(f"the verify state {path} cannot be used ({exc}); remove it to verify the whole ledger again")


def _write_state(path: Path, anchor: Any) -> None:
    """Atomically, readable by its owner only: a crash leaves the previous state or the new one."""
    temporary = path.with_name(path.name + ".tmp")
    try:
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as f:
            f.write(anchor.to_json())
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)
    except OSError as exc:
        _fail(f"the ledger verified, but the verify state {path} could not be written: {exc}")


@audit_cli.command()
def verify(checkpoints: Optional[Path] = typer.Option(
               None, help="Checkpoint file, e.g. the copy shipped off the machine with 'audit checkpoints --follow' "
                          "(default: the data directory's file, else the database's copy)."),
           public_key_file: Optional[Path] = typer.Option(None, "--public-key", help="PEM public key (default: the server's)."),
           incremental: bool = typer.Option(
               False, "--incremental", help="Read only what was stored since the checkpoint the previous verify with "
                                            "this state proved (the first time: the whole ledger)."),
           state: Optional[Path] = typer.Option(
               None, "--state", help="Where this operator's verifies remember what they proved (default with "
                                     "--incremental: the checkpoint file's path + '.verified'). Keep it where the "
                                     "database's administrators cannot write, beside your shipped checkpoints."),
           segments: Optional[Path] = segments_option("The directory of archived audit segments: verify the "
                                                      "records archived there too (without it, a ledger with "
                                                      "archived records verifies only what follows them: exit 3)."),
           jobs: int = typer.Option(
               0, "--jobs", min=0, max=MAX_JOBS,
               help="Processes that prove the ledger's parts at once (0: one per usable core, at most 8; 1: one "
                    "pass). The verdict is the same; a part that fails is verified again in one pass to name the "
                    "first problem."),
           data_dir: Optional[Path] = DataDir, database_url: Optional[str] = DatabaseUrl) -> None:
    """Prove the whole ledger: every record's hashes, every event against the record that names it, every
    checkpoint, and (with the root key) every read-model row's tag. Exit 1 naming the first bad position.
    With --incremental, only what was stored since the checkpoint the previous verify proved."""
    from rich.progress import Progress

    from api.cli_audit_archive import archived_rows, load_or_fail, partial_note
    from application.audit.archived import MergedRows, SegmentMismatch, verify_after_archive
    from application.audit.checkpoints import audit_record_count, stored_checkpoints, stored_copy_problems
    from application.audit.ledger_verify import verify_ledger
    from application.audit.verify_anchor import (
        checkpoints_after,
        proved_anchor,
        stored_newest_first,
        verify_incremental,
    )
    from application.audit.verify_parts import joined_parts, ledger_parts
    from application.cores import usable_cores
    from domain.audit.chain import checkpoint_from_json
    from infrastructure.audit_segments import SegmentError
    from infrastructure.event_rows import SqlEventRows
    from infrastructure.row_audit import forged_rows
    from infrastructure.row_freshness import stale_rows
    from infrastructure.verify_workers import verify_parts

    key = _public_key_file(public_key_file) if public_key_file else None
    given: list[Any] = []
    if checkpoints is not None and not incremental:
        given = _checkpoint_file(checkpoints)
    elif checkpoints is not None and not checkpoints.is_file():
        _fail(f"the checkpoint file {checkpoints} does not exist")
    runtime = _runtime(data_dir, database_url)
    try:
        settings = runtime.settings
        file = checkpoints or (settings.checkpoint_file if settings.checkpoint_file is not None and
                               settings.checkpoint_file.is_file() else None)
        source = str(file) if file is not None else "the database's copy"
        if state is None and incremental:
            if file is None:
                _fail("--incremental needs --state FILE when the checkpoints come from the database")
            state = Path(str(file) + ".verified")
        anchor = _read_state(state) if incremental and state is not None else None
        if key is None and runtime.services is not None:
            key = runtime.services.audit_public_key
        total = audit_record_count(runtime.ledger)
        rows = SqlEventRows(runtime.uow)
        archived = runtime.archive_store.archived()
        archived_head = (archived[-1]["last_seq"], archived[-1]["chain_out"]) if archived else None
        if anchor is not None and archived_head is not None and anchor.checkpoint.seq <= archived_head[0]:
            _fail(f"the checkpoint the verify of {anchor.verified_at} proved (seq {anchor.checkpoint.seq}) covers "
                  f"records archived since (up to seq {archived_head[0]}): run 'audit verify --segments DIR --state "
                  f"{state}' to prove the whole ledger again and renew the state")
        partial = bool(archived) and segments is None and not (anchor is not None and anchor.checkpoint.seq)
        started, processes = time.perf_counter(), 1
        with Progress(transient=True, disable=total < 10_000 or not sys.stderr.isatty()) as progress:
            task = progress.add_task("verifying", total=total)
            if anchor is not None and anchor.checkpoint.seq:
                newest_first = _file_newest_first(file) if file is not None else stored_newest_first(runtime.ledger)
                newer = checkpoints_after(newest_first, anchor.checkpoint)
                if newer is None:
                    typer.echo(f"FAILED: the checkpoint the verify of {anchor.verified_at} proved (seq "
                               f"{anchor.checkpoint.seq}) is not in {source}: its checkpoints were replaced, or the "
                               f"state {state} belongs to another ledger (verify without --incremental)", err=True)
                    raise typer.Exit(1)
                cps = [anchor.checkpoint, *newer]
                result = verify_incremental(runtime.ledger, anchor, newer, key, runtime.uow.position_of, rows,
                                            progress=lambda n: progress.update(task, completed=n),
                                            archived_head=archived_head)
            else:
                if file is None:
                    cps = stored_checkpoints(runtime.ledger)
                elif checkpoints is None:  # the data directory's own file
                    cps = [checkpoint_from_json(line) for line in file.read_text().splitlines() if line.strip()]
                else:
                    cps = given if not incremental else _checkpoint_file(file)
                if partial:
                    result = verify_after_archive(runtime.ledger, archived, cps, key, rows)
                elif segments is not None:
                    merged = MergedRows(rows, archived_rows(load_or_fail(segments, key, archived, "verify")))
                    try:
                        result = verify_ledger(runtime.ledger, cps, key, rows=merged,
                                               progress=lambda n: progress.update(task, completed=n))
                    except (SegmentMismatch, SegmentError) as exc:
                        typer.echo(f"FAILED (verify --segments {segments}): {exc}", err=True)
                        raise typer.Exit(1) from None
                else:
                    count = jobs or min(usable_cores(), MAX_JOBS)
                    parts = ledger_parts(cps, total, runtime.uow.position_of, count, rows.end()) \
                        if count > 1 and total >= PARTS_FROM_RECORDS else None
                    results = verify_parts(runtime.ledger, parts, key, lambda: SqlEventRows(runtime.uow),
                                           lambda n: progress.update(task, completed=n)) if parts else None
                    result = joined_parts(parts, results) if parts and results else None
                    processes = len(parts) if result is not None and parts else 1
                    if result is None:  # one pass: no parts, or a part did not prove OK (the one pass names why)
                        result = verify_ledger(runtime.ledger, cps, key, rows=rows,
                                               progress=lambda n: progress.update(task, completed=n))
        elapsed = max(time.perf_counter() - started, 1e-9)
        problems: list[str] = []
        if result.ok:
            uncovered = _record_time(runtime.ledger, cps[-1].seq + 1) if cps and total > cps[-1].seq else None
            problems = _coverage_problems(total, cps, runtime.now(), settings.audit_checkpoint_seconds, uncovered)
            if file is not None and not (anchor is not None and anchor.checkpoint.seq):
                problems += stored_copy_problems(stored_checkpoints(runtime.ledger), cps, key)
            seal = runtime.ledger.row_seal
            if seal is not None:
                problems += list(forged_rows(runtime.ledger, seal)) + list(stale_rows(runtime.ledger, seal))
        proved = proved_anchor(result, cps, runtime.uow.position_of, _iso_text(datetime.now(tz=timezone.utc)))
        if state is not None and proved is not None and not problems and not partial:
            _write_state(state, proved)
    finally:
        runtime.close()
    rate = f"{(result.records + result.events) / elapsed:,.0f} events/s" + \
        (f" in {processes} processes" if processes > 1 else "")
    signatures = "signatures checked" if key else "signatures NOT checked (no public key: pass --public-key)"
    if result.ok and not problems:
        if anchor is not None and anchor.checkpoint.seq:
            typer.echo(f"OK (incremental): {result.records} records after seq {anchor.checkpoint.seq}, "
                       f"{result.events} events, {result.checkpoints_checked} checkpoints verified from {source}, "
                       f"{signatures} ({rate}, {rows.read} rows read). Records up to seq {anchor.checkpoint.seq} were "
                       f"proved by the verify of {anchor.verified_at} and not read again: verify without "
                       "--incremental to prove them again")
        elif partial:
            typer.echo(f"PARTIAL: {result.records} records after seq {archived[-1]['last_seq']}, {result.events} "
                       f"events, {result.checkpoints_checked} checkpoints verified from {source}, {signatures} "
                       f"({rate}); {partial_note(archived)}", err=True)
            raise typer.Exit(3)
        else:
            typer.echo(f"OK: {result.records} records, {result.events} events, {result.checkpoints_checked} "
                       f"checkpoints verified from {source}, {signatures} ({rate})"
                       f"{f'; archived records from {segments} included' if segments is not None else ''}")
        return
    if not result.ok:
        where = f"first bad seq {result.first_bad_seq}" if result.first_bad_seq is not None else "checkpoint file"
        if result.position is not None:
            where += f", store position {result.position}, aggregate {result.aggregate}"
        typer.echo(f"FAILED ({where}): {result.problem}  [{result.records} records checked, {rate}]", err=True)
    for problem in problems:
        typer.echo(f"FAILED: {problem}", err=True)
    raise typer.Exit(1)


def _coverage_problems(head: int, cps: list[Any], now: datetime, interval: float,
                       first_uncovered_time: Optional[str]) -> list[str]:
    """Records that no checkpoint covers are a window an attacker could truncate: a log with records and no
    checkpoint fails; so does a tail whose first record is older than twice the interval, since a running server
    signs one within an interval of the first record it does not cover (docs/audit.md). An idle log's newest
    checkpoint may be old (idle servers sign only a heartbeat): with nothing after it, nothing is uncovered."""
    if head and not cps:
        return [f"the log holds {head} records but no checkpoint covers any of them: the checkpoints were removed"]
    if not cps or head <= cps[-1].seq:
        return []
    try:
        since = parse_time(first_uncovered_time) if first_uncovered_time else parse_time(cps[-1].time)
    except ValueError:
        since = parse_time(cps[-1].time)
    if (now - since).total_seconds() <= 2 * interval:
        return []
    return [f"records seq {cps[-1].seq + 1} to {head} are covered by no checkpoint, and the first of them "
            f"({_iso_text(since)}) is older than twice the {interval:g} s checkpoint interval: checkpoints were "
            "removed, or the server stopped without its shutdown checkpoint (restart it: it verifies and signs one)"]


def _iso_text(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _record_time(ledger: Any, seq: int) -> Optional[str]:
    """The eventTime of record ``seq`` (one index lookup), or None."""
    from application.audit.checkpoints import audit_records

    record = next(audit_records(ledger, after_seq=seq - 1, limit=1), None)
    return record.get("eventTime") if record and record.get("seq") == seq else None
