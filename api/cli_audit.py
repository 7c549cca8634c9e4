"""`keyledger audit ...`: verify, export, tail, checkpoint, public-key."""
from __future__ import annotations

import json
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator, Optional

import typer

from api.cli_common import (
    MARKUP,
    KeyNotNamed,
    account_option,
    data_dir_option,
    database_url_option,
    flag_help,
    moment_option,
    parsed_moment,
    region_option,
)
from api.moments import resolve_moment
from infrastructure.settings import Settings

audit_cli = typer.Typer(help="The tamper-evident audit log.", no_args_is_help=True, rich_markup_mode=MARKUP)
DataDir = data_dir_option()
DatabaseUrl = database_url_option()
KEY_HELP = ("Only records about this key: key id, key ARN, alias name or alias ARN (an alias: calls that named it, "
            "and calls on the key it pointed to at the time).")


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


def parse_time(value: str) -> datetime:
    """Any time argument (api/moments.py); a relative one against the system clock."""
    return resolve_moment(value, datetime.now(tz=timezone.utc))


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


class RecordFilter:
    """Which records ``--from``, ``--to`` and ``--key`` choose. A key id or key ARN: records whose resources
    name that key. An alias: records whose request named the alias (name or ARN), and records about the key
    the alias pointed to at the record's time (the calls that used it, resolved as they were then)."""

    def __init__(self, runtime: Any, start: Optional[datetime], end: Optional[datetime], key: Optional[str],
                 region: Optional[str], account: Optional[str]) -> None:
        self.start, self.end = start, end
        self.key_id: Optional[str] = None
        self.alias_names: set[str] = set()
        self.periods: list[Any] = []
        if key is None:
            return
        alias = _alias_name(key)
        if alias is None:
            self.key_id = key.rsplit("/", 1)[-1]
            return
        account_id = (key.split(":")[4] if key.startswith("arn:") else None) or account or runtime.settings.account_id
        region = (key.split(":")[3] if key.startswith("arn:") else None) or region
        self.periods = [p for p in runtime.history.alias_periods(alias, account_id) if region in (None, p.region)]
        regions = {p.region for p in self.periods}
        if len(regions) > 1:
            raise KeyNotNamed(f"Alias {alias} exists in several regions ({', '.join(sorted(regions))}): add --region.")
        self.alias_names = {alias} | {f"arn:aws:kms:{r}:{account_id}:{alias}" for r in regions}

    def __call__(self, record: dict[str, Any]) -> bool:
        if not record.get("eventTime"):
            return False
        at = parse_time(record["eventTime"])
        if (self.start and at < self.start) or (self.end and at > self.end):
            return False
        if self.key_id is None and not self.alias_names:
            return True
        key_ids = {arn.rsplit("/", 1)[-1] for r in record.get("resources") or [] if ":key/" in (arn := r.get("ARN") or "")}
        if self.key_id is not None:
            return self.key_id in key_ids
        named = {v for v in (record.get("requestParameters") or {}).values() if isinstance(v, str)}
        if named & self.alias_names:
            return True
        return any(p.key_id in key_ids and p.covers(at) for p in self.periods)


def _alias_name(key: str) -> Optional[str]:
    if key.startswith("alias/"):
        return key
    if key.startswith("arn:") and ":alias/" in key:
        return "alias/" + key.split(":alias/", 1)[1]
    return None


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
def export(start: Optional[str] = moment_option(None, "From", "--from"),
           end: Optional[str] = moment_option(None, "To", "--to"),
           key: Optional[str] = typer.Option(None, help=flag_help(KEY_HELP)),
           region: Optional[str] = region_option(), account: Optional[str] = account_option(),
           fmt: str = typer.Option("cloudtrail", "--format", help=flag_help("cloudtrail ({\"Records\": [...]}) or "
                                                                             "jsonl.", default="cloudtrail")),
           segments: Optional[Path] = typer.Option(None, "--segments", file_okay=False, help=flag_help(
               "The directory of archived audit segments: include the records archived there.")),
           data_dir: Optional[Path] = DataDir, database_url: Optional[str] = DatabaseUrl) -> None:
    """Write records as CloudTrail JSON or JSON lines to standard output."""
    import itertools

    from api.cli_audit_archive import archived_records
    from application.audit.checkpoints import audit_records

    if fmt not in ("cloudtrail", "jsonl"):
        raise typer.BadParameter("--format is cloudtrail or jsonl")
    low, high = parsed_moment(start, "--from"), parsed_moment(end, "--to")
    runtime = _runtime(data_dir, database_url)
    try:
        now = runtime.now()
        s, e = (low.resolve(now) if low else None), (high.resolve(now) if high else None)
        try:
            chosen_by = RecordFilter(runtime, s, e, key, region, account)
        except KeyNotNamed as exc:
            typer.echo(str(exc), err=True)
            raise typer.Exit(1) from None
        source: Iterator[dict[str, Any]] = audit_records(runtime.ledger)
        if (chosen_by.key_id or s or e) and runtime.audit_index is not None:
            # Seeks: reads only the records the index names (issue 13). An alias is resolved per record's time.
            source = _indexed(runtime, chosen_by.key_id, s, e)
        key = runtime.services.audit_public_key if runtime.services is not None else None
        source = itertools.chain(archived_records(runtime, segments, key), source)  # older: not in the index
        chosen: Iterator[dict[str, Any]] = (r for r in source if chosen_by(r))
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
def tail(lines: int = typer.Option(10, "--lines", "-n", "--count", min=0,
                                   help=flag_help("Show the last N records (with --from-seq: the N after it).", default="10")),
         follow: bool = typer.Option(False, "--follow", "-f", help="Then keep printing new records as they are "
                                     "written, until interrupted (for log shippers)."),
         from_seq: Optional[int] = typer.Option(None, min=0, help="Start after this seq instead of the last N "
                                                "(with --follow: every record after it, then the new ones)."),
         poll: float = typer.Option(0.5, min=0.05, max=60.0, help=flag_help("Seconds between looks for new "
                                                                           "records with --follow.", default="0.5")),
         data_dir: Optional[Path] = DataDir, database_url: Optional[str] = DatabaseUrl) -> None:
    """The last N records as JSON lines, oldest first; with --follow, then every new record as it comes."""
    from application.audit.checkpoints import audit_head, audit_records

    runtime = _runtime(data_dir, database_url)
    try:
        head = audit_head(runtime.ledger)[0]
        after = from_seq if from_seq is not None else max(0, head - lines)
        # From a seq: the N records after it (all of them with --follow, then the new ones).
        limit = None if from_seq is None or follow else lines
        for shown, record in enumerate(audit_records(runtime.ledger, after_seq=after)):
            if limit is not None and shown >= limit:
                break
            typer.echo(json.dumps(record))
            after = record["seq"]
        sys.stdout.flush()
        while follow:
            for record in audit_records(runtime.ledger, after_seq=after):
                typer.echo(json.dumps(record))
                after = record["seq"]
            sys.stdout.flush()
            time.sleep(poll)
    except KeyboardInterrupt:
        pass
    except BrokenPipeError:  # `| head`: the reader has what it wanted
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


import api.cli_audit_archive  # noqa: E402,F401  (registers `audit archive` on audit_cli)
import api.cli_audit_verify  # noqa: E402,F401  (registers `audit verify` on audit_cli)
