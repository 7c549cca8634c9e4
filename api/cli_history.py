"""`keyledger history ...`: key state at a past moment, a key's timeline, and replaying the projections.

None of these needs the root key: history is read from the event store, so an auditor can run them on a
copy of the database without the key that protects the material.
"""
from __future__ import annotations

import json
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Optional

import typer

from api.cli_common import (
    MARKUP,
    KeyNotNamed,
    Output,
    account_option,
    chosen_output,
    data_dir_option,
    database_url_option,
    json_flag,
    key_scope,
    moment_option,
    output_option,
    parsed_moment,
    plain,
    print_json,
    print_rows,
    region_option,
    show_time,
)
from infrastructure.settings import Settings

history_cli = typer.Typer(help="Key history: state at a moment, timelines, replay of the projections.",
                          no_args_is_help=True, rich_markup_mode=MARKUP)
DataDir = data_dir_option()
DatabaseUrl = database_url_option()
Json = json_flag()
Out = output_option()
Region = region_option()
Account = account_option()
KEY_HELP = "Key id, key ARN, alias name or alias ARN."


def _runtime(data_dir: Optional[Path], database_url: Optional[str]):
    from infrastructure.bootstrap import build_runtime

    return build_runtime(Settings.load(data_dir=data_dir, database_url=database_url))


@contextmanager
def _history(data_dir: Optional[Path], database_url: Optional[str]) -> Iterator[Any]:
    from domain.errors import KmsError, NotFoundError

    runtime = _runtime(data_dir, database_url)
    try:
        yield runtime, runtime.history
    except KeyNotNamed as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from None
    except KmsError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1 if isinstance(exc, NotFoundError) else 2) from None
    finally:
        runtime.close()


@history_cli.command("key-at")
def key_at(key: str = typer.Argument(..., help=KEY_HELP), at: str = moment_option("now"),
           output: Output = Out, json_output: bool = Json,
           region: Optional[str] = Region, account: Optional[str] = Account,
           data_dir: Optional[Path] = DataDir, database_url: Optional[str] = DatabaseUrl) -> None:
    """The key as DescribeKey would have answered at --at, with its aliases, tags, policy and rotation."""
    spec = parsed_moment(at, "--at")
    with _history(data_dir, database_url) as (runtime, history):
        moment = spec.resolve(runtime.now())
        answer = history.key_at(key_scope(runtime, key, moment, region, account), key, moment)
    output = chosen_output(output, json_output)
    if output == Output.json:
        return print_json(answer)
    fields = [[k, v] for k, v in answer["KeyMetadata"].items()]
    fields += [[k, v] for k, v in answer.items() if k != "KeyMetadata"]
    print_rows(f"{answer['KeyMetadata']['KeyId']} at {show_time(answer['AsOf'])}", ["Field", "Value"], fields, output)


@history_cli.command("key-store-at")
def key_store_at(key: str = typer.Argument(..., help=KEY_HELP), at: str = moment_option("now"),
                 output: Output = Out, json_output: bool = Json,
                 region: Optional[str] = Region, account: Optional[str] = Account,
                 data_dir: Optional[Path] = DataDir, database_url: Optional[str] = DatabaseUrl) -> None:
    """Which custom key store held the key at --at, and its ConnectionState then."""
    from application.keystores.history import key_store_at as store_of_key

    spec = parsed_moment(at, "--at")
    with _history(data_dir, database_url) as (runtime, history):
        moment = spec.resolve(runtime.now())
        answer = store_of_key(runtime.ledger, history.key_at(key_scope(runtime, key, moment, region, account), key,
                                                             moment), moment)
    output = chosen_output(output, json_output)
    if output == Output.json:
        return print_json(answer)
    store = (answer["Store"] or {}).get("CustomKeyStore") or {}
    print_rows(f"{answer['KeyId']} at {show_time(moment)}", ["Field", "Value"],
               [["KeyState", answer["KeyState"]], ["CustomKeyStoreId", store.get("CustomKeyStoreId", "-")],
                ["CloudHsmClusterId", store.get("CloudHsmClusterId", "-")],
                ["ConnectionState", store.get("ConnectionState", "-")]], output)


@history_cli.command("keys-at")
def keys_at(at: str = moment_option("now"),
            state: Optional[str] = typer.Option(None, help="Only keys in this state (Enabled, Disabled, ...)."),
            key_spec: Optional[str] = typer.Option(None, help="Only keys of this key spec."),
            alias: Optional[str] = typer.Option(None, help="Only the key this alias pointed to."),
            region: Optional[str] = typer.Option(None, help="Only keys of this region."),
            account: Optional[str] = typer.Option(None, help="Only keys of this account."),
            output: Output = Out, json_output: bool = Json,
            data_dir: Optional[Path] = DataDir, database_url: Optional[str] = DatabaseUrl) -> None:
    """Every key as it was at --at (deleted keys included, in state Deleted)."""
    spec = parsed_moment(at, "--at")
    with _history(data_dir, database_url) as (runtime, history):
        moment = spec.resolve(runtime.now())
        answers = history.keys_at(moment, account_id=account, region=region, state=state, key_spec=key_spec,
                                  alias=alias)
    rows = [[a["KeyMetadata"]["Arn"], a["KeyMetadata"]["KeyState"], a["KeyMetadata"]["KeySpec"],
             a["KeyMetadata"]["KeyUsage"], ", ".join(a["Aliases"]), a["KeyMetadata"]["Description"], a["Version"]]
            for a in answers]
    print_rows(f"{len(rows)} keys at {show_time(moment)}",
               ["Key", "State", "Spec", "Usage", "Aliases", "Description", "Version"], rows,
               chosen_output(output, json_output), json_value=answers)


@history_cli.command()
def timeline(key: str = typer.Argument(..., help=KEY_HELP),
             limit: Optional[int] = typer.Option(None, min=1, max=1000, help="One page of this many events (default: "
                                                 "every event, read a page at a time)."),
             marker: Optional[str] = typer.Option(None, help="Start after this NextMarker (printed after a page)."),
             output: Output = Out, json_output: bool = Json, region: Optional[str] = Region,
             account: Optional[str] = Account,
             data_dir: Optional[Path] = DataDir, database_url: Optional[str] = DatabaseUrl) -> None:
    """Every event of the key in order, with who made it (from the audit record that names the event).
    An alias names the key it points to now."""
    with _history(data_dir, database_url) as (runtime, history):
        scope = key_scope(runtime, key, runtime.now(), region, account)
        if limit is None and marker is None:
            page = {"Events": history.timeline(key, scope), "Truncated": False}
        else:
            page = history.timeline_page(key, scope, limit or 100, marker)
    events = page["Events"]
    paged = limit is not None or marker is not None
    rows = [[e["Version"], e["Time"], e["EventType"], e["Actor"], e["EventName"], e["RequestId"],
             json.dumps(plain(e["Details"]), default=str)] for e in events]
    print_rows(f"timeline of {key}", ["Version", "Time", "Event", "Who", "Call", "Request id", "Details"], rows,
               chosen_output(output, json_output), json_value=page if paged else events)
    if page.get("Truncated") and chosen_output(output, json_output) != Output.json:
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
def replay(until: Optional[str] = moment_option(None, "Rebuild the world as it was at this moment"),
           into: Optional[str] = typer.Option(None, help="Database URL to write into [default: fresh replay_* tables "
                                              "beside the live ones; with --until, a SQLite file in the data directory]."),
           keep: bool = typer.Option(False, help="Keep the rebuilt replay_* tables even when they equal the live ones."),
           jobs: int = typer.Option(
               0, "--jobs", min=0, max=8,
               help="Processes that replay at once, each a share of the aggregates (0: one per usable core, at most "
                    "8; 1: one process). The rebuilt tables are the same; with --until the replay is one process."),
           data_dir: Optional[Path] = DataDir, database_url: Optional[str] = DatabaseUrl) -> None:
    """Rebuild the projections from the event log and compare: with the live tables, or with --until, with
    the point-in-time answers for that moment. Exit 1 on any difference."""
    from application.cores import usable_cores

    spec = parsed_moment(until, "--until")
    with _history(data_dir, database_url) as (runtime, _):
        moment = spec.resolve(runtime.now()) if spec else None
        with _progress() as progress:
            outcome = (runtime.replay.at(moment, into=into, progress=progress) if moment is not None
                       else runtime.replay.against_live(into=into, keep=keep, progress=progress,
                                                        workers=jobs or usable_cores()))
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
