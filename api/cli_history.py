"""`keyledger history ...`: key state at a past moment, a key's timeline, and replaying the projections.

None of these needs the root key: history is read from the event store, so an auditor can run them on a
copy of the database without the key that protects the material.
"""
from __future__ import annotations

import json
import sys
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator, Optional

import typer

from api.cli_audit import parse_time
from infrastructure.settings import Settings

history_cli = typer.Typer(help="Key history: state at a moment, timelines, replay of the projections.",
                          no_args_is_help=True)
DataDir = typer.Option(None, help="Data directory [env KEYLEDGER_DATA_DIR].")
DatabaseUrl = typer.Option(None, help="Database URL [env KEYLEDGER_DATABASE_URL].")
Json = typer.Option(False, "--json", help="Print JSON instead of a table.")
Region = typer.Option(None, help="Region of the key (needed to name a key by alias).")
Account = typer.Option(None, help="Account of the key [default: KEYLEDGER_ACCOUNT_ID].")


def _runtime(data_dir: Optional[Path], database_url: Optional[str]):
    from infrastructure.bootstrap import build_runtime

    return build_runtime(Settings.load(data_dir=data_dir, database_url=database_url))


@contextmanager
def _history(data_dir: Optional[Path], database_url: Optional[str]) -> Iterator[Any]:
    from domain.errors import KmsError, NotFoundError

    runtime = _runtime(data_dir, database_url)
    try:
        yield runtime, runtime.history
    except KmsError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1 if isinstance(exc, NotFoundError) else 2) from None
    finally:
        runtime.close()


def _time(value: str) -> datetime:
    try:
        return parse_time(value)
    except (ValueError, OverflowError, OSError):
        raise typer.BadParameter(f"{value!r} is neither RFC 3339 nor epoch seconds") from None


def _scope(runtime: Any, account: Optional[str], region: Optional[str]) -> Any:
    from domain.identifiers import Scope

    return Scope(account or runtime.settings.account_id, region) if region else None


def show_time(moment: datetime) -> str:
    # Full precision: a time copied from this output into --at must land on the same event.
    return moment.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return show_time(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _print_json(value: Any) -> None:
    typer.echo(json.dumps(_plain(value), indent=2, default=str))


def _print_table(title: str, columns: list[str], rows: list[list[Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for column in columns:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*("" if v is None else str(_plain(v)) for v in row))
    Console().print(table)


@history_cli.command("key-at")
def key_at(key: str = typer.Argument(..., help="Key id, key ARN, or alias name (with --region)."),
           at: str = typer.Option(..., help="RFC 3339 or epoch seconds."), json_output: bool = Json,
           region: Optional[str] = Region, account: Optional[str] = Account,
           data_dir: Optional[Path] = DataDir, database_url: Optional[str] = DatabaseUrl) -> None:
    """The key as DescribeKey would have answered at --at, with its aliases, tags, policy and rotation."""
    moment = _time(at)
    with _history(data_dir, database_url) as (runtime, history):
        answer = history.key_at(_scope(runtime, account, region), key, moment)
    if json_output:
        return _print_json(answer)
    fields = [[k, v] for k, v in answer["KeyMetadata"].items()]
    fields += [[k, json.dumps(_plain(v)) if isinstance(v, (list, dict)) else v]
               for k, v in answer.items() if k != "KeyMetadata"]
    _print_table(f"{answer['KeyMetadata']['KeyId']} at {show_time(answer['AsOf'])}", ["Field", "Value"], fields)


@history_cli.command("keys-at")
def keys_at(at: str = typer.Option(..., help="RFC 3339 or epoch seconds."),
            state: Optional[str] = typer.Option(None, help="Only keys in this state (Enabled, Disabled, ...)."),
            key_spec: Optional[str] = typer.Option(None, help="Only keys of this key spec."),
            alias: Optional[str] = typer.Option(None, help="Only the key this alias pointed to."),
            region: Optional[str] = typer.Option(None, help="Only keys of this region."),
            account: Optional[str] = typer.Option(None, help="Only keys of this account."), json_output: bool = Json,
            data_dir: Optional[Path] = DataDir, database_url: Optional[str] = DatabaseUrl) -> None:
    """Every key as it was at --at (deleted keys included, in state Deleted)."""
    moment = _time(at)
    with _history(data_dir, database_url) as (_, history):
        answers = history.keys_at(moment, account_id=account, region=region, state=state, key_spec=key_spec,
                                  alias=alias)
    if json_output:
        return _print_json(answers)
    rows = [[a["KeyMetadata"]["Arn"], a["KeyMetadata"]["KeyState"], a["KeyMetadata"]["KeySpec"],
             a["KeyMetadata"]["KeyUsage"], ", ".join(a["Aliases"]), a["KeyMetadata"]["Description"], a["Version"]]
            for a in answers]
    _print_table(f"{len(rows)} keys at {show_time(moment)}",
                 ["Key", "State", "Spec", "Usage", "Aliases", "Description", "Version"], rows)


@history_cli.command()
def timeline(key: str = typer.Argument(..., help="Key id, key ARN, or alias name (with --region)."),
             limit: Optional[int] = typer.Option(None, min=1, max=1000, help="One page of this many events (default: "
                                                 "every event, read a page at a time)."),
             marker: Optional[str] = typer.Option(None, help="Start after this NextMarker (printed after a page)."),
             json_output: bool = Json, region: Optional[str] = Region, account: Optional[str] = Account,
             data_dir: Optional[Path] = DataDir, database_url: Optional[str] = DatabaseUrl) -> None:
    """Every event of the key in order, with who made it (from the audit record that names the event)."""
    with _history(data_dir, database_url) as (runtime, history):
        scope = _scope(runtime, account, region)
        if limit is None and marker is None:
            page = {"Events": history.timeline(key, scope), "Truncated": False}
        else:
            page = history.timeline_page(key, scope, limit or 100, marker)
    events = page["Events"]
    if json_output:
        return _print_json(page if limit is not None or marker is not None else events)
    rows = [[e["Version"], e["Time"], e["EventType"], e["Actor"], e["EventName"], e["RequestId"],
             json.dumps(_plain(e["Details"]))[:80]] for e in events]
    _print_table(f"timeline of {key}", ["Version", "Time", "Event", "Who", "Call", "Request id", "Details"], rows)
    if page.get("Truncated"):
        typer.echo(f"NextMarker: {page['NextMarker']}  (--marker {page['NextMarker']} for the next page)")


@contextmanager
def _progress() -> Iterator[Any]:
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("replaying"), BarColumn(), TextColumn("{task.completed}/{task.total} notifications"),
                  TimeElapsedColumn(), console=Console(stderr=True), transient=True,
                  disable=not sys.stderr.isatty()) as progress:
        task = progress.add_task("replay", total=None)
        yield lambda done, total: progress.update(task, completed=done, total=total)


@history_cli.command()
def replay(until: Optional[str] = typer.Option(None, help="Rebuild the world as it was at this moment."),
           into: Optional[str] = typer.Option(None, help="Database URL to write into [default: fresh replay_* tables "
                                              "beside the live ones; with --until, a SQLite file in the data directory]."),
           keep: bool = typer.Option(False, help="Keep the rebuilt replay_* tables even when they equal the live ones."),
           data_dir: Optional[Path] = DataDir, database_url: Optional[str] = DatabaseUrl) -> None:
    """Rebuild the projections from the event log and compare: with the live tables, or with --until, with
    the point-in-time answers for that moment. Exit 1 on any difference."""
    moment = _time(until) if until else None
    with _history(data_dir, database_url) as (runtime, _):
        with _progress() as progress:
            outcome = (runtime.replay.at(moment, into=into, progress=progress) if moment is not None
                       else runtime.replay.against_live(into=into, keep=keep, progress=progress))
        if moment is not None:
            typer.echo(f"the world at {show_time(moment)} is in {outcome.location}")
    stats, differences, grew = outcome.stats, outcome.differences, outcome.written_during
    typer.echo(f"replayed {stats.events} events ({stats.keys} keys, {stats.aliases} aliases, {stats.principals} principals) in "
               f"{stats.seconds:.2f}s: {stats.events_per_second:,.0f} events/s")
    if differences:
        for line in differences:
            typer.echo(line)
        typer.echo(f"DIFFERENT: {len(differences)} differences", err=True)
        if grew:
            typer.echo("(events were written during the replay; run it again on a quiet database to confirm)", err=True)
        raise typer.Exit(1)
    typer.echo(f"OK: {stats.key_state_rows} keys, {stats.alias_rows} aliases, {stats.index_rows} key events, "
               f"{stats.principal_rows} principals match")
