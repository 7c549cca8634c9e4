"""`keyledger xks credentials ...`: the credentials AWS KMS (or another keyledger) signs XKS proxy API requests
with. The operator manages them with direct database access, also while servers run on the same database: a
server sees a change within KEYLEDGER_KEY_CACHE_SECONDS.

Every change is an event of the credential and gets an audit record (eventSource kms-xks-proxy). A new secret is
shown once and never stored in clear (it is root-wrapped). ``create --json`` prints what AWS KMS's
CreateCustomKeyStore takes as XksProxyAuthenticationCredential: {"AccessKeyId", "SecretAccessKey"}.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import typer

from api.cli_common import data_dir_option, database_url_option
from api.cli_principals import _operator, _services, _table, _time

xks_cli = typer.Typer(help="keyledger as an XKS proxy (the AWS KMS External Key Store Proxy API).", no_args_is_help=True)
credentials_cli = typer.Typer(help="XKS proxy credentials: create (secret shown once), rotate, list, delete.",
                              no_args_is_help=True)
xks_cli.add_typer(credentials_cli, name="credentials")
DataDir = data_dir_option()
DatabaseUrl = database_url_option()
Json = typer.Option(False, "--json", help="Print JSON instead of text.")
AccessKeyId = typer.Argument(..., help="The credential's access key id.")


def _shown(new: Any, json_output: bool, note: str) -> None:
    row = new.row
    if json_output:
        typer.echo(json.dumps({"AccessKeyId": row.access_key_id, "SecretAccessKey": new.secret}, indent=2))
        return
    typer.echo(f"AccessKeyId:      {row.access_key_id}")
    typer.echo(f"SecretAccessKey:  {new.secret}")
    typer.echo(f"Account:          {row.account_id}")
    typer.echo(f"Acts as:          {row.principal_arn}")
    typer.echo(f"The secret is shown only now: give it to AWS KMS as XksProxyAuthenticationCredential. {note}")


@credentials_cli.command("create")
def create(principal: Optional[str] = typer.Option(
               None, help="What XKS calls signed with it act as (a user, role or account root ARN); key policies "
                          "authorize them. Default: the root of KEYLEDGER_ACCOUNT_ID."),
           json_output: bool = Json, data_dir: Optional[Path] = DataDir,
           database_url: Optional[str] = DatabaseUrl) -> None:
    """Create an XKS proxy credential for an account: its keys' ids are the external key ids AWS KMS can use."""
    from infrastructure.settings import Settings

    with _services(data_dir, database_url) as services:
        arn = principal or f"arn:aws:iam::{Settings.load(data_dir=data_dir).account_id}:root"
        new = services.xks_credential_admin.create(arn, _operator())
    _shown(new, json_output, "")


@credentials_cli.command("rotate")
def rotate(access_key_id: str = AccessKeyId, json_output: bool = Json, data_dir: Optional[Path] = DataDir,
           database_url: Optional[str] = DatabaseUrl) -> None:
    """Make a successor for the same account and principal. The old credential keeps working: give AWS KMS the
    new one (UpdateCustomKeyStore), then delete the old one."""
    with _services(data_dir, database_url) as services:
        new = services.xks_credential_admin.rotate(access_key_id, _operator())
    _shown(new, json_output, f"Delete {access_key_id} once AWS KMS uses the new one.")


@credentials_cli.command("list")
def list_credentials(account: Optional[str] = typer.Option(None, help="Only this account's credentials."),
                     json_output: bool = Json, data_dir: Optional[Path] = DataDir,
                     database_url: Optional[str] = DatabaseUrl) -> None:
    """The credentials, their account and principal (never the secret)."""
    with _services(data_dir, database_url) as services:
        rows = [{"AccessKeyId": r.access_key_id, "AccountId": r.account_id, "Principal": r.principal_arn,
                 "CreateDate": _time(r.created), "Replaces": r.replaces, "ReplacedBy": r.replaced_by}
                for r in services.xks_credential_admin.rows(account)]
    if json_output:
        typer.echo(json.dumps(rows, indent=2))
        return
    _table(f"{len(rows)} XKS proxy credentials", ["Access key id", "Account", "Acts as", "Created", "Replaced by"],
           [[r["AccessKeyId"], r["AccountId"], r["Principal"], r["CreateDate"], r["ReplacedBy"] or ""] for r in rows])


@credentials_cli.command("delete")
def delete(access_key_id: str = AccessKeyId, data_dir: Optional[Path] = DataDir,
           database_url: Optional[str] = DatabaseUrl) -> None:
    """Delete a credential for good: requests signed with it are refused; its root-wrapped secret is removed."""
    with _services(data_dir, database_url) as services:
        row = services.xks_credential_admin.delete(access_key_id, _operator())
    typer.echo(f"deleted XKS proxy credential {row.access_key_id} of account {row.account_id}")
