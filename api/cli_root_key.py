"""`keyledger root-key ...`: create the root key in a PKCS#11 token, rotate it online, retire old versions.

These run with direct database access beside running servers (like `keyledger principals`); every change is an
event of the root key's history with an audit record (eventSource kms.amazonaws.com, userIdentity Operator).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from api.cli_common import data_dir_option, database_url_option
from infrastructure.settings import Settings

root_key_cli = typer.Typer(help="The root key: init (PKCS#11 token), status, rotate (online, resumable), retire.",
                           no_args_is_help=True)
DataDir = data_dir_option()
DatabaseUrl = database_url_option()


def _runtime(data_dir: Optional[Path], database_url: Optional[str]):
    from infrastructure.bootstrap import build_runtime

    runtime = build_runtime(Settings.load(data_dir=data_dir, database_url=database_url))
    if runtime.services is None:
        runtime.close()
        typer.echo(f"keyledger is sealed: {runtime.sealed_reason}", err=True)
        raise typer.Exit(2)
    return runtime


def _refused(error: Exception) -> None:
    message = getattr(error, "message", None) or str(error)
    typer.echo(f"keyledger: {message}", err=True)
    raise typer.Exit(1) from None


@root_key_cli.command("init")
def init(data_dir: Optional[Path] = DataDir) -> None:
    """Create the root key where KEYLEDGER_ROOT_KEY_PROVIDER says: for pkcs11, a non-extractable AES-256 key in
    the token named by KEYLEDGER_ROOT_KEY (version 1); for file, the root key file. Refuses if one exists."""
    from infrastructure.bootstrap import ensure_data_dir
    from infrastructure.root_keys import RootKeyUnavailable, root_key_provider

    settings = Settings.load(data_dir=data_dir)
    try:
        provider = root_key_provider(settings)
        if settings.root_key_provider == "pkcs11":
            if provider.held_versions():
                typer.echo(f"keyledger: the token already holds root key {settings.root_key}; nothing created.", err=True)
                raise typer.Exit(1)
            provider.add_version(1)
            typer.echo(f"created root key version 1 in {settings.root_key} (AES-256, sensitive, not extractable)")
        elif settings.root_key_provider == "file":
            ensure_data_dir(settings.node_dir)
            if settings.root_key_file.exists():
                typer.echo(f"keyledger: {settings.root_key_file} exists; nothing created.", err=True)
                raise typer.Exit(1)
            provider.load(first_start=True)
            typer.echo(f"created root key file {settings.root_key_file.resolve()} (mode 0600)")
        else:
            typer.echo("keyledger: with KEYLEDGER_ROOT_KEY_PROVIDER=env the operator makes the key: 32 random bytes, "
                       "base64, in KEYLEDGER_ROOT_KEY.", err=True)
            raise typer.Exit(2)
        provider.close()
    except RootKeyUnavailable as exc:
        typer.echo(f"keyledger: {exc}", err=True)
        raise typer.Exit(2) from None


@root_key_cli.command("status")
def status(data_dir: Optional[Path] = DataDir, database_url: Optional[str] = DatabaseUrl) -> None:
    """The provider, the current version, active and retired versions, and how many values each version wraps."""
    runtime = _runtime(data_dir, database_url)
    try:
        typer.echo(json.dumps(runtime.services.root_key.status()))
    finally:
        runtime.close()


@root_key_cli.command("rotate")
def rotate(data_dir: Optional[Path] = DataDir, database_url: Optional[str] = DatabaseUrl,
           batch: int = typer.Option(200, min=1, max=10000, help="Values re-wrapped per transaction.")) -> None:
    """Make a new root key version and re-wrap every root-wrapped value under it while servers keep serving.
    Run it again after a crash: it finishes the rotation under way instead of starting another."""
    from api.cli_principals import _operator
    from application.principals.audit import Operator
    from domain.crypto.wrapping import UnwrapError
    from domain.errors import KmsError
    from infrastructure.pkcs11_token import TokenUnavailable
    from infrastructure.root_keys import RootKeyUnavailable

    runtime = _runtime(data_dir, database_url)
    try:
        operator: Operator = _operator()
        result = runtime.services.root_key.rotate(operator, batch=batch)
    except (KmsError, RootKeyUnavailable, TokenUnavailable, UnwrapError) as exc:
        _refused(exc)  # a value that does not unwrap (tampered, or under a lost version) or a token gone mid-way
    finally:
        runtime.close()
    verb = "finished the rotation to" if result["resumed"] else "rotated to"
    typer.echo(f"{verb} root key version {result['version']}; re-wrapped {result['rewrapped']} values")


@root_key_cli.command("retire")
def retire(version: int = typer.Argument(..., min=1, help="The root key version to destroy."),
           data_dir: Optional[Path] = DataDir, database_url: Optional[str] = DatabaseUrl) -> None:
    """Destroy an old root key version once nothing is wrapped under it. Backups of the database made while it was
    in use can no longer be unwrapped with this provider's keys (docs/key-hierarchy.md: the backup horizon)."""
    from api.cli_principals import _operator
    from domain.crypto.wrapping import UnwrapError
    from domain.errors import KmsError
    from infrastructure.pkcs11_token import TokenUnavailable
    from infrastructure.root_keys import RootKeyUnavailable

    runtime = _runtime(data_dir, database_url)
    try:
        result = runtime.services.root_key.retire(version, _operator())
    except (KmsError, RootKeyUnavailable, TokenUnavailable, UnwrapError) as exc:
        _refused(exc)
    finally:
        runtime.close()
    typer.echo(f"retired root key version {result['version']} (re-wrapped {result['rewrapped']} late values first)")
