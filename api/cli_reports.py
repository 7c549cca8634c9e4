"""`keyledger report ...`: rotation, usage and access reports; a table on a terminal, JSON or text with
--output."""
from __future__ import annotations

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
    print_rows,
    region_option,
)
from infrastructure.settings import Settings

report_cli = typer.Typer(help="Compliance reports.", no_args_is_help=True, rich_markup_mode=MARKUP)
DataDir = data_dir_option()
DatabaseUrl = database_url_option()
Json = json_flag()
Out = output_option()
KEY_HELP = "Key id, key ARN, alias name or alias ARN."


@contextmanager
def _runtime(data_dir: Optional[Path], database_url: Optional[str]) -> Iterator[Any]:
    from domain.errors import KmsError
    from infrastructure.bootstrap import build_runtime

    runtime = build_runtime(Settings.load(data_dir=data_dir, database_url=database_url))
    try:
        yield runtime
    except (KmsError, KeyNotNamed) as exc:
        typer.echo(getattr(exc, "message", None) or str(exc), err=True)
        raise typer.Exit(1) from None
    except ValueError as exc:  # the price table (infrastructure/price_table.py names the file and the problem)
        typer.echo(f"keyledger: {exc}", err=True)
        raise typer.Exit(1) from None
    finally:
        runtime.close()


def _show(rows: list[dict[str, Any]], output: Output, title: str) -> None:
    columns = list(rows[0].keys()) if rows else []
    print_rows(title, columns, [list(row.values()) for row in rows], output, json_value=rows)


@report_cli.command()
def rotation(output: Output = Out, as_json: bool = Json, data_dir: Optional[Path] = DataDir,
             database_url: Optional[str] = DatabaseUrl) -> None:
    """Keys whose material is older than their rotation period (or 365 days without automatic rotation)."""
    with _runtime(data_dir, database_url) as runtime:
        rows = runtime.reports.rotation()
    _show(rows, chosen_output(output, as_json), "Keys due for rotation")


@report_cli.command()
def usage(key: Optional[str] = typer.Option(None, help=KEY_HELP + " Without it: every key of the account."),
          start: Optional[str] = moment_option(None, "From", "--from"), end: Optional[str] = moment_option(None, "To", "--to"),
          priced: bool = typer.Option(False, "--priced", help="Add what the same keys and calls would cost at AWS "
                                      "KMS list prices (docs/pricing.md; KEYLEDGER_PRICE_TABLE)."),
          region: Optional[str] = region_option(), account: Optional[str] = account_option(),
          output: Output = Out, as_json: bool = Json, data_dir: Optional[Path] = DataDir,
          database_url: Optional[str] = DatabaseUrl) -> None:
    """Calls per operation and principal for one key (or all), from the audit log."""
    low, high = parsed_moment(start, "--from"), parsed_moment(end, "--to")
    output = chosen_output(output, as_json)
    with _runtime(data_dir, database_url) as runtime:
        now = runtime.now()
        since, until = (low.resolve(now) if low else None), (high.resolve(now) if high else None)
        keys = _key_ids(runtime, key, region, account, now) if key else None
        rows = runtime.reports.usage_of(keys, since, until, account or runtime.settings.account_id)
        estimate = runtime.reports.priced(keys, since, until, account or runtime.settings.account_id) if priced else None
    title = f"Usage of {key}" if key else "Usage of every key"
    if estimate is None:
        return _show(rows, output, title)
    if output == Output.json:
        from api.cli_common import print_json

        return print_json({"Usage": rows, "Estimate": estimate})
    _show(rows, output, title)
    _show(estimate["Lines"], output, f"At AWS KMS list prices ({estimate['PriceTable']}): "
                                     f"{estimate['Currency']} {estimate['Total']:.2f}")


def _key_ids(runtime: Any, key: str, region: Optional[str], account: Optional[str], now: Any) -> set[str]:
    """The key ids a reference names: a key id or ARN its key; an alias every key it ever pointed to."""
    if key.startswith("alias/") or (key.startswith("arn:") and ":alias/" in key):
        name = "alias/" + key.split(":alias/", 1)[1] if key.startswith("arn:") else key
        arn_region = key.split(":")[3] if key.startswith("arn:") else None
        arn_account = key.split(":")[4] if key.startswith("arn:") else None
        periods = [p for p in runtime.history.alias_periods(name, arn_account or account or runtime.settings.account_id)
                   if (region or arn_region) in (None, p.region)]
        if not periods:
            raise KeyNotNamed(f"Alias {key} never pointed to a key.")
        return {p.key_id for p in periods}
    return {key.rsplit("/", 1)[-1]}


def flag_help_ops() -> str:
    return "One operation [default: every operation the key supports]."


@report_cli.command()
def access(key: str = typer.Option(..., help=KEY_HELP), at: str = moment_option("now"),
           operation: Optional[str] = typer.Option(None, help=flag_help_ops()),
           region: Optional[str] = region_option(), account: Optional[str] = account_option(),
           output: Output = Out, as_json: bool = Json, data_dir: Optional[Path] = DataDir,
           database_url: Optional[str] = DatabaseUrl) -> None:
    """Who could do what with a key at an instant (key state, key policy, grants and identity policies as
    they were then), for the operations the key supports."""
    spec = parsed_moment(at, "--at")
    with _runtime(data_dir, database_url) as runtime:
        moment = spec.resolve(runtime.now())
        rows = runtime.reports.access(key, moment, operation, key_scope(runtime, key, moment, region, account))
    _show(rows, chosen_output(output, as_json), f"Access to {key}")
