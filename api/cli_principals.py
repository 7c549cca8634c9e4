"""`keyledger principals ...` and `keyledger access-keys ...`: the operator manages IAM-style users and roles,
their identity policies and access keys with direct database access (like `keyledger clock advance`), also
while servers run on the same database: a server sees a change within KEYLEDGER_KEY_CACHE_SECONDS.

Every change is an event of the principal and gets an audit record (eventSource iam.amazonaws.com). A new
secret access key is shown once, or written to an AWS credentials file (mode 0600), and never stored in clear.
"""
from __future__ import annotations

import configparser
import getpass
import json
import os
import socket
import sys
import tempfile
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator, Optional

import typer

from api.cli_common import Output, data_dir_option, database_url_option, print_rows
from infrastructure.settings import Settings

principals_cli = typer.Typer(help="IAM-style principals (users, roles, account roots) and their identity policies.",
                             no_args_is_help=True)
access_keys_cli = typer.Typer(help="Access keys of principals: create (secret shown once), list, disable, enable, "
                                   "delete.", no_args_is_help=True)
DataDir = data_dir_option()
DatabaseUrl = database_url_option()
Json = typer.Option(False, "--json", help="Print JSON instead of a table.")
PrincipalArn = typer.Argument(..., help="arn:aws:iam::<account>:user/<name>, ...:role/<name> or ...:root.")


def _operator() -> Any:
    from application.principals.audit import Operator

    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (containers): the uid still says who
        user = f"uid {os.getuid()}"
    return Operator(user=user, host=socket.gethostname())


@contextmanager
def _services(data_dir: Optional[Path], database_url: Optional[str]) -> Iterator[Any]:
    """The services on the configured database; a refusal becomes a one-line message and a non-zero exit
    (1: refused in the state found, e.g. no such principal; 2: the request itself is invalid)."""
    from domain.errors import KmsError, MalformedPolicyDocumentError, ValidationError
    from infrastructure.bootstrap import build_runtime

    runtime = build_runtime(Settings.load(data_dir=data_dir, database_url=database_url))
    try:
        if runtime.services is None:
            typer.echo(f"keyledger is sealed: {runtime.sealed_reason}", err=True)
            raise typer.Exit(2)
        yield runtime.services
    except KmsError as error:
        typer.echo(f"keyledger: {error.code}: {error.message}", err=True)
        raise typer.Exit(2 if isinstance(error, (ValidationError, MalformedPolicyDocumentError)) else 1) from None
    finally:
        runtime.close()


def _time(moment: datetime | None) -> str | None:
    return moment.astimezone(timezone.utc).isoformat().replace("+00:00", "Z") if moment else None


def _table(title: str, columns: list[str], rows: list[list[Any]]) -> None:
    print_rows(title, columns, rows, Output.table)


def _echo_json(value: Any) -> None:
    typer.echo(json.dumps(value, indent=2, default=str))


def _principal_json(row: Any, keys: list[Any] | None = None) -> dict[str, Any]:
    out = {"Arn": row.arn, "Type": row.kind, "AccountId": row.account_id, "Name": row.name or None, "Path": row.path,
           "PrincipalId": row.unique_id, "CreateDate": _time(row.created), "PolicyNames": sorted(row.policies),
           "AccessKeyIds": sorted(row.access_keys)}
    if keys is not None:
        out["Policies"] = {name: json.loads(text) for name, text in sorted(row.policies.items())}
        out["AccessKeys"] = [_key_json(k) for k in keys]
    return out


def _key_json(key: Any) -> dict[str, Any]:
    from domain.principals.arns import acting_arn

    return {"AccessKeyId": key.access_key_id, "Status": key.status, "Principal": key.principal_arn,
            "ActsAs": acting_arn(key.principal_arn, key.access_key_id), "AccountId": key.account_id,
            "CreateDate": _time(key.created)}


# -- principals -----------------------------------------------------------------------------------------

@principals_cli.command("create")
def create_principal(arn: str = PrincipalArn, json_output: bool = Json,
                     data_dir: Optional[Path] = DataDir, database_url: Optional[str] = DatabaseUrl) -> None:
    """Create a user or a role (CreateUser / CreateRole). Account roots need no creating."""
    with _services(data_dir, database_url) as services:
        row = services.principal_admin.create_principal(arn, _operator())
    if json_output:
        return _echo_json(_principal_json(row))
    typer.echo(f"created {row.kind} {row.arn} (id {row.unique_id})")


@principals_cli.command("list")
def list_principals(account: Optional[str] = typer.Option(None, help="Only principals of this account."),
                    json_output: bool = Json, data_dir: Optional[Path] = DataDir,
                    database_url: Optional[str] = DatabaseUrl) -> None:
    """Users and roles, and account roots that have (or had) access keys."""
    with _services(data_dir, database_url) as services:
        rows = services.principal_admin.list_principals(account)
    if json_output:
        return _echo_json([_principal_json(r) for r in rows])
    _table(f"{len(rows)} principals", ["Principal", "Type", "Id", "Created", "Policies", "Access keys"],
           [[r.arn, r.kind, r.unique_id, _time(r.created), ", ".join(sorted(r.policies)),
             ", ".join(f"{k} ({s})" for k, s in sorted(r.access_keys.items()))] for r in rows])


@principals_cli.command("show")
def show_principal(arn: str = PrincipalArn, json_output: bool = Json,
                   data_dir: Optional[Path] = DataDir, database_url: Optional[str] = DatabaseUrl) -> None:
    """One principal with its identity policies and access keys."""
    with _services(data_dir, database_url) as services:
        row, keys = services.principal_admin.describe(arn)
    answer = _principal_json(row, keys)
    if json_output:
        return _echo_json(answer)
    _table(row.arn, ["Field", "Value"], [[k, v] for k, v in answer.items()
                                         if k not in ("Policies", "AccessKeys", "PolicyNames", "AccessKeyIds")])
    _table("identity policies", ["Name", "Document"],
           [[name, json.dumps(document, indent=1)] for name, document in answer["Policies"].items()])
    _table("access keys", ["Access key", "Status", "Acts as", "Created"],
           [[k["AccessKeyId"], k["Status"], k["ActsAs"], k["CreateDate"]] for k in answer["AccessKeys"]])


@principals_cli.command("delete")
def delete_principal(arn: str = PrincipalArn,
                     force: bool = typer.Option(False, "--force", help="Also delete its access keys and policies."),
                     json_output: bool = Json, data_dir: Optional[Path] = DataDir,
                     database_url: Optional[str] = DatabaseUrl) -> None:
    """Delete a user or role (DeleteUser / DeleteRole). Refused while it has access keys or policies,
    as IAM refuses (DeleteConflict), unless --force."""
    with _services(data_dir, database_url) as services:
        removed = services.principal_admin.delete_principal(arn, _operator(), force=force)
    if json_output:
        return _echo_json({"Arn": arn, "DeletedAccessKeyIds": removed["deletedAccessKeyIds"],
                           "DeletedPolicyNames": removed["deletedPolicyNames"]})
    also = [f"access keys {', '.join(removed['deletedAccessKeyIds'])}" if removed["deletedAccessKeyIds"] else "",
            f"policies {', '.join(removed['deletedPolicyNames'])}" if removed["deletedPolicyNames"] else ""]
    typer.echo(f"deleted {arn}" + (f" with its {' and '.join(filter(None, also))}" if any(also) else ""))


def _policy_text(policy: Optional[str], policy_file: Optional[Path]) -> str:
    if (policy is None) == (policy_file is None):
        raise typer.BadParameter("give exactly one of --policy JSON or --policy-file FILE")
    if policy is not None:
        return policy
    assert policy_file is not None
    try:
        return sys.stdin.read() if str(policy_file) == "-" else policy_file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise typer.BadParameter(f"cannot read {policy_file}: {exc}") from None


@principals_cli.command("attach-policy")
def attach_policy(arn: str = PrincipalArn,
                  name: str = typer.Option(..., "--name", help="The inline policy's name (replaces one of that name)."),
                  policy: Optional[str] = typer.Option(None, help="The IAM policy document (JSON)."),
                  policy_file: Optional[Path] = typer.Option(None, help="A file holding the policy ('-': stdin)."),
                  data_dir: Optional[Path] = DataDir, database_url: Optional[str] = DatabaseUrl) -> None:
    """Attach an identity policy to a user or role (PutUserPolicy / PutRolePolicy): IAM grammar, no Principal
    element, Resource required."""
    text = _policy_text(policy, policy_file)
    with _services(data_dir, database_url) as services:
        changed = services.principal_admin.put_policy(arn, name, text, _operator())
    typer.echo(f"attached policy {name} to {arn}" if changed else f"policy {name} of {arn} is already this document")


@principals_cli.command("detach-policy")
def detach_policy(arn: str = PrincipalArn, name: str = typer.Option(..., "--name", help="The inline policy's name."),
                  data_dir: Optional[Path] = DataDir, database_url: Optional[str] = DatabaseUrl) -> None:
    """Remove an identity policy from a user or role (DeleteUserPolicy / DeleteRolePolicy)."""
    with _services(data_dir, database_url) as services:
        services.principal_admin.delete_policy(arn, name, _operator())
    typer.echo(f"detached policy {name} from {arn}")


# -- access keys ----------------------------------------------------------------------------------------

def _free_profile(path: Path, profile: str) -> str:
    """The credentials file's text, if the profile can be added to it."""
    try:
        existing = path.read_text() if path.exists() else ""
    except (OSError, UnicodeDecodeError) as exc:
        raise typer.BadParameter(f"cannot read {path}: {exc}") from None
    parser = configparser.RawConfigParser()
    try:
        parser.read_string(existing)
    except configparser.Error as exc:
        raise typer.BadParameter(f"{path} is not an AWS credentials file: {exc}") from None
    if parser.has_section(profile):
        raise typer.BadParameter(f"{path} already has a profile [{profile}]; choose another with --profile")
    return existing


def write_profile(path: Path, profile: str, access_key_id: str, secret: str) -> None:
    """Adds a profile to an AWS credentials file, creating it mode 0600; never overwrites a profile."""
    existing = _free_profile(path, profile)
    text = (existing.rstrip("\n") + "\n\n" if existing.strip() else "") + \
        f"[{profile}]\naws_access_key_id = {access_key_id}\naws_secret_access_key = {secret}\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")  # mode 0600 from mkstemp
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


@access_keys_cli.command("create")
def create_access_key(principal: str = typer.Option(..., help="The owner: a user, role or account root ARN."),
                      credentials_file: Optional[Path] = typer.Option(
                          None, help="Write the key to this AWS credentials file (mode 0600) instead of printing "
                                     "the secret."),
                      profile: str = typer.Option("keyledger", help="Profile name in --credentials-file."),
                      json_output: bool = Json, data_dir: Optional[Path] = DataDir,
                      database_url: Optional[str] = DatabaseUrl) -> None:
    """Create an access key (at most two per principal). The secret is shown once, or written to
    --credentials-file; keyledger keeps only a root-wrapped copy. A role's key acts as the session
    arn:aws:sts::<account>:assumed-role/<role>/<access key id>."""
    if credentials_file is not None:
        _free_profile(credentials_file, profile)  # before the key exists: a refused file leaves no orphan key
    with _services(data_dir, database_url) as services:
        key = services.principal_admin.create_access_key(principal, _operator())
    if credentials_file is not None:
        write_profile(credentials_file, profile, key.access_key_id, key.secret)
    answer = {"AccessKeyId": key.access_key_id, "Status": key.status, "Principal": key.principal_arn,
              "ActsAs": key.acts_as, "AccountId": key.account_id, "CreateDate": _time(key.created)}
    if credentials_file is None:
        answer["SecretAccessKey"] = key.secret
    if json_output:
        return _echo_json({"AccessKey": answer})
    for field, value in answer.items():
        typer.echo(f"{field + ':':<17}{value}")
    if credentials_file is None:
        typer.echo("The secret access key is shown only now: store it safely.")
    else:
        typer.echo(f"written to {credentials_file.resolve()} as profile [{profile}] (mode 0600)")


@access_keys_cli.command("list")
def list_access_keys(principal: Optional[str] = typer.Option(None, help="Only this principal's keys."),
                     account: Optional[str] = typer.Option(None, help="Only keys of this account."),
                     json_output: bool = Json, data_dir: Optional[Path] = DataDir,
                     database_url: Optional[str] = DatabaseUrl) -> None:
    """Access keys with their owner, what they act as, and status (never the secret)."""
    with _services(data_dir, database_url) as services:
        keys = [_key_json(k) for k in services.principal_admin.list_access_keys(principal, account)]
    if json_output:
        return _echo_json(keys)
    _table(f"{len(keys)} access keys", ["Access key", "Status", "Principal", "Acts as", "Created"],
           [[k["AccessKeyId"], k["Status"], k["Principal"], k["ActsAs"], k["CreateDate"]] for k in keys])


def _set_status(access_key_id: str, status: str, data_dir: Optional[Path], database_url: Optional[str]) -> None:
    with _services(data_dir, database_url) as services:
        key = services.principal_admin.set_access_key_status(access_key_id, status, _operator())
    typer.echo(f"access key {key.access_key_id} of {key.principal_arn} is {status}")


AccessKeyId = typer.Argument(..., help="The access key id (AKIA...).")


@access_keys_cli.command("disable")
def disable_access_key(access_key_id: str = AccessKeyId, data_dir: Optional[Path] = DataDir,
                       database_url: Optional[str] = DatabaseUrl) -> None:
    """Make a key Inactive (UpdateAccessKey): requests signed with it are refused as unrecognized."""
    _set_status(access_key_id, "Inactive", data_dir, database_url)


@access_keys_cli.command("enable")
def enable_access_key(access_key_id: str = AccessKeyId, data_dir: Optional[Path] = DataDir,
                      database_url: Optional[str] = DatabaseUrl) -> None:
    """Make a key Active again (UpdateAccessKey)."""
    _set_status(access_key_id, "Active", data_dir, database_url)


@access_keys_cli.command("delete")
def delete_access_key(access_key_id: str = AccessKeyId, data_dir: Optional[Path] = DataDir,
                      database_url: Optional[str] = DatabaseUrl) -> None:
    """Delete a key for good (DeleteAccessKey); its root-wrapped secret is removed."""
    with _services(data_dir, database_url) as services:
        key = services.principal_admin.delete_access_key(access_key_id, _operator())
    typer.echo(f"deleted access key {key.access_key_id} of {key.principal_arn}")
