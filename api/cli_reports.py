"""`keyledger report ...`: rotation and usage reports, rich tables on a terminal, JSON with --json."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console
from rich.table import Table

from api.cli_audit import parse_time
from infrastructure.settings import Settings

report_cli = typer.Typer(help="Compliance reports.", no_args_is_help=True)
DataDir = typer.Option(None, help="Data directory [env KEYLEDGER_DATA_DIR].")
DatabaseUrl = typer.Option(None, help="Database URL [env KEYLEDGER_DATABASE_URL].")
Json = typer.Option(False, "--json", help="Print JSON instead of a table.")


def _show(rows: list[dict[str, Any]], as_json: bool, title: str) -> None:
    if as_json:
        typer.echo(json.dumps(rows, default=str))
        return
    table = Table(title=title)
    for column in (rows[0].keys() if rows else ["(none)"]):
        table.add_column(column)
    for row in rows:
        table.add_row(*(str(v) for v in row.values()))
    Console().print(table)


@report_cli.command()
def rotation(as_json: bool = Json, data_dir: Optional[Path] = DataDir, database_url: Optional[str] = DatabaseUrl) -> None:
    """Keys whose material is older than their rotation period (or 365 days without automatic rotation)."""
    from infrastructure.bootstrap import build_runtime

    runtime = build_runtime(Settings.load(data_dir=data_dir, database_url=database_url))
    try:
        rows = runtime.reports.rotation()
    finally:
        runtime.close()
    _show(rows, as_json, "Keys due for rotation")


@report_cli.command()
def usage(key: str = typer.Option(..., help="Key id."),
          start: Optional[str] = typer.Option(None, "--from", help="RFC 3339 or epoch seconds."),
          end: Optional[str] = typer.Option(None, "--to", help="RFC 3339 or epoch seconds."),
          as_json: bool = Json, data_dir: Optional[Path] = DataDir, database_url: Optional[str] = DatabaseUrl) -> None:
    """Calls per operation and principal for one key, from the audit log."""
    from infrastructure.bootstrap import build_runtime

    key_id = key.rsplit("/", 1)[-1]
    runtime = build_runtime(Settings.load(data_dir=data_dir, database_url=database_url))
    try:
        rows = runtime.reports.usage(key_id, parse_time(start) if start else None, parse_time(end) if end else None)
    finally:
        runtime.close()
    _show(rows, as_json, f"Usage of {key_id}")


@report_cli.command()
def access(key: str = typer.Option(..., help="Key id or key ARN."),
           at: Optional[str] = typer.Option(None, help="RFC 3339 or epoch seconds [default: now]."),
           operation: Optional[str] = typer.Option(None, help="One operation [default: every key operation]."),
           as_json: bool = Json, data_dir: Optional[Path] = DataDir, database_url: Optional[str] = DatabaseUrl) -> None:
    """Who could do what with a key at an instant (key state and key policy as they were then)."""
    from domain.errors import KmsError
    from infrastructure.bootstrap import build_runtime

    runtime = build_runtime(Settings.load(data_dir=data_dir, database_url=database_url))
    try:
        rows = runtime.reports.access(key, parse_time(at) if at else None, operation)
    except KmsError as exc:
        typer.echo(exc.message, err=True)
        raise typer.Exit(1) from None
    finally:
        runtime.close()
    _show(rows, as_json, f"Access to {key}")
