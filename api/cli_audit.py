"""`keyledger audit ...`: verify, export, tail, checkpoint, public-key."""
from __future__ import annotations

import json
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator, Optional

import typer

from infrastructure.settings import Settings

audit_cli = typer.Typer(help="The tamper-evident audit log.", no_args_is_help=True)
DataDir = typer.Option(None, help="Data directory [env KEYLEDGER_DATA_DIR].")
DatabaseUrl = typer.Option(None, help="Database URL [env KEYLEDGER_DATABASE_URL].")


def _runtime(data_dir: Optional[Path], database_url: Optional[str], need_keys: bool = False):
    from infrastructure.bootstrap import build_runtime

    runtime = build_runtime(Settings.load(data_dir=data_dir, database_url=database_url))
    if need_keys and runtime.services is None:
        typer.echo(f"keyledger is sealed: {runtime.sealed_reason}", err=True)
        raise typer.Exit(2)
    return runtime


def _pem(raw: bytes) -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    return Ed25519PublicKey.from_public_bytes(raw).public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def _raw_from_pem(path: Path) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return serialization.load_pem_public_key(path.read_bytes()).public_bytes_raw()  # type: ignore[union-attr]


def parse_time(value: str) -> datetime:
    """RFC 3339 or epoch seconds."""
    try:
        return datetime.fromtimestamp(float(value), tz=timezone.utc)
    except ValueError:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


@audit_cli.command("public-key")
def public_key(data_dir: Optional[Path] = DataDir, database_url: Optional[str] = DatabaseUrl) -> None:
    """Print the checkpoint signing public key (PEM). Keep a copy apart from the server."""
    runtime = _runtime(data_dir, database_url, need_keys=True)
    try:
        typer.echo(_pem(runtime.services.audit_public_key), nl=False)
    finally:
        runtime.close()


@audit_cli.command()
def checkpoint(data_dir: Optional[Path] = DataDir, database_url: Optional[str] = DatabaseUrl) -> None:
    """Sign a checkpoint of the log now."""
    runtime = _runtime(data_dir, database_url, need_keys=True)
    try:
        cp = runtime.services.checkpointer.checkpoint_if_due(force=True)
    finally:
        runtime.close()
    typer.echo(f"checkpoint at seq {cp.seq}" if cp else "another process signed this checkpoint")


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


@audit_cli.command()
def verify(checkpoints: Optional[Path] = typer.Option(
               None, help="Checkpoint file, e.g. the copy shipped off the machine with 'audit checkpoints --follow' "
                          "(default: the data directory's file, else the database's copy)."),
           public_key_file: Optional[Path] = typer.Option(None, "--public-key", help="PEM public key (default: the server's)."),
           data_dir: Optional[Path] = DataDir, database_url: Optional[str] = DatabaseUrl) -> None:
    """Prove the whole ledger: every record's hashes, every event against the record that names it, every
    checkpoint, and (with the root key) every read-model row's tag. Exit 1 naming the first bad position."""
    from rich.progress import Progress

    from application.audit.checkpoints import audit_head, stored_checkpoints
    from application.audit.ledger_verify import verify_ledger
    from domain.audit.chain import checkpoint_from_json
    from infrastructure.row_audit import forged_rows

    key = _public_key_file(public_key_file) if public_key_file else None
    given = _checkpoint_file(checkpoints) if checkpoints else None
    runtime = _runtime(data_dir, database_url)
    try:
        settings = runtime.settings
        if given is not None:
            cps, source = given, str(checkpoints)
        elif settings.checkpoint_file.is_file():
            cps = [checkpoint_from_json(line) for line in settings.checkpoint_file.read_text().splitlines() if line.strip()]
            source = str(settings.checkpoint_file)
        else:
            cps, source = stored_checkpoints(runtime.ledger), "the database's copy"
        if key is None and runtime.services is not None:
            key = runtime.services.audit_public_key
        total, _ = audit_head(runtime.ledger)
        started = time.perf_counter()
        with Progress(transient=True, disable=total < 10_000 or not sys.stderr.isatty()) as progress:
            task = progress.add_task("verifying", total=total)
            result = verify_ledger(runtime.ledger, cps, key, progress=lambda n: progress.update(task, completed=n))
        elapsed = max(time.perf_counter() - started, 1e-9)
        problems: list[str] = []
        if result.ok:
            uncovered = _record_time(runtime.ledger, cps[-1].seq + 1) if cps and total > cps[-1].seq else None
            problems = _coverage_problems(total, cps, runtime.now(), settings.audit_checkpoint_seconds, uncovered)
            seal = runtime.ledger.row_seal
            if seal is not None:
                problems += list(forged_rows(runtime.ledger, seal))
    finally:
        runtime.close()
    rate = f"{result.records / elapsed:,.0f} records/s"
    signatures = "signatures checked" if key else "signatures NOT checked (no public key: pass --public-key)"
    if result.ok and not problems:
        typer.echo(f"OK: {result.records} records, {result.events} events, {result.checkpoints_checked} checkpoints "
                   f"verified from {source}, {signatures} ({rate})")
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


def _matches(record: dict[str, Any], start: Optional[datetime], end: Optional[datetime], key: Optional[str]) -> bool:
    at = parse_time(record["eventTime"])
    if (start and at < start) or (end and at > end):
        return False
    if key:
        arns = [r.get("ARN", "") for r in record.get("resources") or []]
        return any(arn == key or arn.endswith("/" + key) for arn in arns)
    return True


def _indexed(runtime: Any, key: Optional[str], start: Optional[datetime], end: Optional[datetime]) -> Iterator[dict[str, Any]]:
    from projections.audit_index import AuditFilter

    index = runtime.audit_index
    where = AuditFilter(key_id=key.rpartition("/")[2] if key else None, low=start, high=end)
    chunk: list[int] = []
    for seq in index.matching(where):
        chunk.append(seq)
        if len(chunk) == 1000:
            yield from index.records(runtime.ledger, chunk)
            chunk = []
    yield from index.records(runtime.ledger, chunk)


@audit_cli.command()
def export(start: Optional[str] = typer.Option(None, "--from", help="RFC 3339 or epoch seconds."),
           end: Optional[str] = typer.Option(None, "--to", help="RFC 3339 or epoch seconds."),
           key: Optional[str] = typer.Option(None, help="Only records about this key id or key ARN."),
           fmt: str = typer.Option("cloudtrail", "--format", help="cloudtrail ({\"Records\": [...]}) or jsonl."),
           data_dir: Optional[Path] = DataDir, database_url: Optional[str] = DatabaseUrl) -> None:
    """Write records as CloudTrail JSON or JSON lines to standard output."""
    from application.audit.checkpoints import audit_records

    if fmt not in ("cloudtrail", "jsonl"):
        raise typer.BadParameter("--format is cloudtrail or jsonl")
    runtime = _runtime(data_dir, database_url)
    s, e = (parse_time(start) if start else None), (parse_time(end) if end else None)
    try:
        source: Iterator[dict[str, Any]] = audit_records(runtime.ledger)
        if (key or s or e) and runtime.audit_index is not None:
            source = _indexed(runtime, key, s, e)  # seeks: reads only the records that match (issue 13)
        chosen: Iterator[dict[str, Any]] = (r for r in source if _matches(r, s, e, key))
        if fmt == "jsonl":
            for record in chosen:
                sys.stdout.write(json.dumps(record) + "\n")
        else:
            sys.stdout.write('{"Records": [')
            for i, record in enumerate(chosen):
                sys.stdout.write(("," if i else "") + json.dumps(record))
            sys.stdout.write("]}\n")
    finally:
        runtime.close()


@audit_cli.command()
def tail(count: Optional[int] = typer.Option(None, help="Stop after this many records."),
         from_seq: Optional[int] = typer.Option(None, help="Start after this seq (default: the current end)."),
         data_dir: Optional[Path] = DataDir, database_url: Optional[str] = DatabaseUrl) -> None:
    """Follow new records as JSON lines."""
    from application.audit.checkpoints import audit_head, audit_records

    runtime = _runtime(data_dir, database_url)
    seen = 0
    try:
        after = audit_head(runtime.ledger)[0] if from_seq is None else from_seq
        while count is None or seen < count:
            for record in audit_records(runtime.ledger, after_seq=after):
                typer.echo(json.dumps(record))
                after, seen = record["seq"], seen + 1
                if count is not None and seen >= count:
                    break
            else:
                time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        runtime.close()


@audit_cli.command("checkpoints")
def checkpoints_command(follow: bool = typer.Option(False, "--follow", "-f", help="Keep running and print each new "
                                                    "checkpoint as it is signed (ship them where the database's "
                                                    "administrators cannot write)."),
                        data_dir: Optional[Path] = DataDir, database_url: Optional[str] = DatabaseUrl) -> None:
    """Print the signed checkpoints as JSON lines, the checkpoint file's format (a copy 'audit verify
    --checkpoints' takes)."""
    from application.audit.checkpoints import signed_checkpoints_after
    from domain.audit.chain import checkpoint_to_json

    runtime = _runtime(data_dir, database_url)
    version = 1
    try:
        while True:
            for version, checkpoint in signed_checkpoints_after(runtime.ledger, version):
                typer.echo(checkpoint_to_json(checkpoint))
            if not follow:
                return
            sys.stdout.flush()
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        runtime.close()
