"""What every ``keyledger`` command shares: help that shows each flag's variable and default, time
arguments (api/moments.py), key references in every form, and output as a table, JSON or text.

Typer renders help through rich, whose markup would take ``[env KEYLEDGER_X; default y]`` for a style tag
and drop it; ``flag_help`` escapes the brackets so they reach the terminal."""
from __future__ import annotations

import json
from datetime import datetime, timezone
from enum import Enum
from typing import Any, Optional, Sequence

import typer
from rich.markup import escape

from api.moments import Moment, MomentError, parse_moment

MARKUP = "rich"  # every Typer of the CLI renders help the same way; flag_help escapes for it


def flag_help(text: str, variable: str | None = None, default: str | None = None) -> str:
    """``text [env VARIABLE; default DEFAULT]``, escaped for rich markup."""
    parts = [f"env {variable}"] if variable else []
    if default is not None:
        parts.append(f"default {default}")
    return escape(f"{text} [{'; '.join(parts)}]") if parts else escape(text)


def data_dir_option() -> Any:
    return typer.Option(None, help=flag_help("Data directory.", "KEYLEDGER_DATA_DIR", "./keyledger-data; none for "
                                             "PostgreSQL with an env or pkcs11 root key"))


def database_url_option() -> Any:
    return typer.Option(None, help=flag_help("Database URL.", "KEYLEDGER_DATABASE_URL",
                                             "SQLite file keyledger.db in the data directory"))


class Output(str, Enum):
    table = "table"
    json = "json"
    text = "text"


def output_option() -> Any:
    return typer.Option(Output.table, "--output", "-o", case_sensitive=False,
                        help=flag_help("table (for people), json, or text (tab-separated, one line a row).",
                                       default="table"))


def json_flag() -> Any:
    return typer.Option(False, "--json", hidden=True, help="Same as --output json.")


def chosen_output(output: Output, as_json: bool) -> Output:
    return Output.json if as_json else output


# -- time -----------------------------------------------------------------------------------------

def moment_option(default: str | None, what: str = "The instant", *names: str) -> Any:
    text = f"{what}: RFC 3339, epoch seconds, now, today, yesterday, or relative (-1h, 7d ago)."
    return typer.Option(default, *names, help=flag_help(text, default=default))


def parsed_moment(value: str | None, flag: str) -> Moment | None:
    """Checked before anything is opened: a time that is none of the forms is one clear error (exit 2)."""
    if value is None:
        return None
    try:
        return parse_moment(value)
    except MomentError as exc:
        raise typer.BadParameter(str(exc), param_hint=flag) from None


def show_time(moment: datetime) -> str:
    # Full precision: a time copied from this output into --at must land on the same event.
    return moment.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


# -- keys -----------------------------------------------------------------------------------------

def region_option() -> Any:
    return typer.Option(None, help=flag_help("Region of the key; needed for an alias name only when the alias "
                                             "exists in several regions."))


def account_option() -> Any:
    return typer.Option(None, help=flag_help("Account of the key.", "KEYLEDGER_ACCOUNT_ID", "111122223333"))


class KeyNotNamed(Exception):
    """A key reference that names no key, or several: the message says which and what to add."""


def key_scope(runtime: Any, key_ref: str, at: datetime, region: Optional[str], account: Optional[str]) -> Any:
    """The scope (account and region) to read ``key_ref`` in, for the history services: None for a key id
    or ARN with no --region (they name their key wherever it is); for an alias name, --region, else the one
    region configured, else the one region where an alias of that name existed at ``at``."""
    from domain.identifiers import Scope

    account_id = account or runtime.settings.account_id
    if region:
        return Scope(account_id, region)
    if key_ref.startswith("arn:") or not key_ref.startswith("alias/"):
        return None
    if len(runtime.settings.regions) == 1:
        return Scope(account_id, runtime.settings.regions[0])
    places = runtime.history.alias_regions_at(key_ref, at, account_id)
    if not places:
        raise KeyNotNamed(f"Alias {key_ref} did not exist in account {account_id} at {show_time(at)}.")
    if len(places) > 1:
        raise KeyNotNamed(f"Alias {key_ref} exists in several regions ({', '.join(r for _, r in places)}): "
                          "add --region.")
    return Scope(account_id, places[0][1])


# -- output ---------------------------------------------------------------------------------------

def plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return show_time(value)
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


def cell(value: Any) -> str:
    if value is None:
        return ""
    value = plain(value)
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def print_json(value: Any) -> None:
    typer.echo(json.dumps(plain(value), indent=2, default=str))


def print_rows(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]], output: Output,
               json_value: Any = None) -> None:
    """Rows as a table whose identifiers (ARNs, ids: any value without a space) are never cut nor folded:
    those columns keep their full width and the table grows past the terminal if it must; prose columns fold.
    ``json``: ``json_value`` if given, else the rows as objects; ``text``: tab-separated, no header."""
    if output == Output.json:
        print_json(json_value if json_value is not None else [dict(zip(columns, row)) for row in rows])
        return
    texts = [[cell(v) for v in row] for row in rows]
    if output == Output.text:
        for row in texts:
            typer.echo("\t".join(v.replace("\t", " ").replace("\n", " ") for v in row))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    needed = 1
    for i, column in enumerate(columns):
        values = [row[i] for row in texts]
        identifier = all(" " not in v and "\n" not in v for v in values)
        longest = max([len(column), *(len(v) for v in values)])
        if identifier:
            table.add_column(column, no_wrap=True, min_width=longest, overflow="ignore")
            needed += longest + 3
        else:
            table.add_column(column, overflow="fold", min_width=min(longest, 12))
            needed += min(longest, 12) + 3
    for row in texts:
        table.add_row(*(escape(v) for v in row))
    console = Console()
    if console.width < needed:
        console = Console(width=needed)
    console.print(table)
