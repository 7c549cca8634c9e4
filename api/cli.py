"""The ``keyledger`` command line."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Optional

import typer

from api.cli_common import MARKUP, data_dir_option, database_url_option, flag_help
from api.listen import PortUnavailable, bind_listening_socket
from api.tls import ServerTls, TlsConfigError, describe, host_named, server_tls
from infrastructure.settings import Settings

cli = typer.Typer(help="keyledger: an event-sourced key management service that speaks AWS KMS.",
                  no_args_is_help=True, add_completion=False, rich_markup_mode=MARKUP)


def package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("keyledger")
    except PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown (not installed)"


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"keyledger {package_version()}")
        raise typer.Exit()


@cli.callback()
def _group(version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True,
                                        help="Print the version and exit.")) -> None:
    """keyledger: an event-sourced key management service that speaks AWS KMS."""


def _first_region(settings: Settings) -> str:
    return "us-east-1" if "us-east-1" in settings.regions else settings.regions[0]


def _print_start_banner(settings: Settings, admin_created: bool, sealed_reason: str | None,
                       tls: ServerTls | None = None, admin_note: str | None = None) -> None:
    endpoint = f"{'https' if tls else 'http'}://{settings.host}:{settings.port}"
    where = f"data directory {settings.data_dir.resolve()}" if settings.data_dir is not None else "no data directory"
    store = "PostgreSQL" if settings.uses_postgres else "SQLite"
    typer.echo(f"keyledger listening on {endpoint}  ({where}, {store} store)")
    if tls:
        _print_tls_banner(settings, tls, endpoint)
    if sealed_reason:
        typer.echo(f"SEALED: {sealed_reason}", err=True)
        return
    if settings.root_key_provider == "file":
        typer.echo(f"root key: {settings.root_key_file.resolve()} (mode 0600; back it up, keep it apart from the database)")
    checkpoints = settings.checkpoint_file
    typer.echo(f"audit checkpoints: {checkpoints.resolve()} and the database" if checkpoints else
               "audit checkpoints: in the database only (ship them with 'keyledger audit checkpoints --follow')")
    if admin_note:
        typer.echo(f"NOTE: {admin_note}", err=True)
    if admin_created and settings.admin_access_key_id and settings.admin_credentials_file is None:
        typer.echo(f"administrator access key {settings.admin_access_key_id} created now (from "
                   "KEYLEDGER_ADMIN_ACCESS_KEY_ID)")
    credentials = settings.admin_credentials_file.resolve() if settings.admin_credentials_file else None
    if credentials is not None and credentials.exists():
        note = "created now" if admin_created else "from the first start"
        typer.echo(f"administrator credentials ({note}): {credentials} (mode 0600)")
        typer.echo("Use them with the AWS CLI or boto3:")
        typer.echo(f"  export AWS_SHARED_CREDENTIALS_FILE={credentials}")
        typer.echo(f"  export AWS_PROFILE=keyledger AWS_DEFAULT_REGION={_first_region(settings)}")
        trust = f" --ca-bundle {tls.certificate.resolve()}" if tls and tls.self_signed else ""
        typer.echo(f"  aws kms create-key --endpoint-url {endpoint}{trust}")
        typer.echo("or copy them into your own AWS CLI profile:")
        typer.echo(f"  aws configure set aws_access_key_id \"$(sed -n 's/^aws_access_key_id = //p' {credentials})\" --profile keyledger")
        typer.echo(f"  aws configure set aws_secret_access_key \"$(sed -n 's/^aws_secret_access_key = //p' {credentials})\" --profile keyledger")


def _print_tls_banner(settings: Settings, tls: ServerTls, endpoint: str) -> None:
    typer.echo(describe(tls))
    if not host_named(tls, settings.host):
        typer.echo(f"WARNING: the certificate does not name {settings.host}; clients connecting to it will refuse it",
                   err=True)
    # Clients verify the certificate against the CAs they trust; a self-signed one is its own CA, so the
    # AWS CLI and boto3 must be pointed at this very file.
    if tls.self_signed:
        ca = str(tls.certificate.resolve())
        typer.echo("The certificate is self-signed; clients must trust it explicitly:")
    else:
        ca = "<PEM file of the CA>"
        typer.echo(f"Clients that do not already trust the issuer ({tls.issuer}) need its CA certificate:")
    typer.echo(f"  aws kms list-keys --endpoint-url {endpoint} --ca-bundle {ca}   (or export AWS_CA_BUNDLE={ca})")
    typer.echo(f"  boto3.client(\"kms\", endpoint_url=\"{endpoint}\", verify=\"{ca}\")")


def _load_tls(settings: Settings) -> ServerTls | None:
    """Checked before anything is created, opened or imported: a bad certificate or key must stop the start
    with one clear line, not leave a data directory behind or end in a traceback."""
    if settings.tls_cert is None or settings.tls_key is None:
        return None
    try:
        return server_tls(settings.tls_cert, settings.tls_key)
    except TlsConfigError as exc:
        typer.echo(f"keyledger: {exc}", err=True)
        raise typer.Exit(2) from None


@cli.command()
def serve(
    host: Optional[str] = typer.Option(None, help=flag_help("Address to listen on.", "KEYLEDGER_HOST", "127.0.0.1")),
    port: Optional[int] = typer.Option(None, help=flag_help("Port to listen on.", "KEYLEDGER_PORT", "8080")),
    data_dir: Optional[Path] = data_dir_option(),
    database_url: Optional[str] = database_url_option(),
    tls_cert: Optional[Path] = typer.Option(None, help=flag_help("PEM certificate (chain) to serve HTTPS with; needs "
                                                                 "--tls-key.", "KEYLEDGER_TLS_CERT", "none: plain HTTP")),
    tls_key: Optional[Path] = typer.Option(None, help=flag_help("PEM private key (unencrypted) of --tls-cert.",
                                                                "KEYLEDGER_TLS_KEY", "none")),
    workers: Optional[int] = typer.Option(None, help=flag_help("Server processes sharing the port and the database.",
                                                               "KEYLEDGER_WORKERS", "1")),
    access_log: bool = typer.Option(False, help="Log one line per HTTP request."),
    max_header_bytes: Optional[int] = typer.Option(None, help=flag_help(
        "Most bytes of header names and values a request may have.", "KEYLEDGER_MAX_HEADER_BYTES", "16384")),
    max_body_bytes: Optional[int] = typer.Option(None, help=flag_help(
        "Most bytes a request body may have, whatever the operation.", "KEYLEDGER_MAX_BODY_BYTES",
        "the largest valid KMS request")),
) -> None:
    """Start the HTTP server (AWS KMS JSON protocol at /, the web console at /console, the /v1 query API,
    health at /healthz); HTTPS with --tls-cert and --tls-key."""
    settings = Settings.load(host=host, port=port, data_dir=data_dir, database_url=database_url,
                             tls_cert=tls_cert, tls_key=tls_key, workers=workers, max_header_bytes=max_header_bytes,
                             max_body_bytes=max_body_bytes)
    tls = _load_tls(settings)
    # The port first: if it is taken, say so before a data directory, a root key or credentials are made.
    try:
        sock = bind_listening_socket(settings.host, settings.port)
    except PortUnavailable as exc:
        typer.echo(f"keyledger: {exc}", err=True)
        raise typer.Exit(1) from None

    from infrastructure.audit_committer_launch import spawn_audit_committer, start_audit_committer

    spawned = spawn_audit_committer(settings)  # it imports its modules while this process imports and opens its own
    try:
        from infrastructure.bootstrap import build_runtime, start_serving

        runtime = build_runtime(settings)
        start_serving(runtime)
    except BaseException:
        sock.close()
        if spawned is not None:
            spawned.stop(0)
        raise
    _print_start_banner(settings, runtime.admin_created, runtime.sealed_reason, tls, runtime.admin_note)
    committer = start_audit_committer(runtime, spawned)  # before the workers: they connect to it as they start
    try:
        _run_servers(settings, runtime, sock, tls, access_log, flags=dict(
            host=host, port=port, data_dir=data_dir, database_url=database_url, max_header_bytes=max_header_bytes,
            max_body_bytes=max_body_bytes, tls_cert=tls_cert, tls_key=tls_key))
    finally:
        if committer is not None:
            committer.stop()  # after every server process stopped: it finishes the batch under way


def _run_servers(settings: Settings, runtime: Any, sock: Any, tls: Any, access_log: bool,
                 flags: dict[str, Any]) -> None:
    import uvicorn

    from api.http import create_app
    from api.http_protocol import uvicorn_http_options
    from api.serve import background_passes
    from api.tls import worker_context_factory

    # proxy_headers=False: uvicorn would otherwise believe X-Forwarded-Proto/-For from any client on 127.0.0.1,
    # so a local caller could claim aws:SecureTransport over plain HTTP and forge its audit sourceIPAddress.
    options = dict(host=settings.host, port=settings.port, log_level=settings.log_level, access_log=access_log,
                   proxy_headers=False, **uvicorn_http_options(settings.max_header_bytes))
    if settings.workers > 1:
        from uvicorn.supervisors import Multiprocess

        # First-start work is done (root key, administrator key); each worker builds its own runtime from
        # the environment, so hand the flags on through it. The workers share the socket bound above.
        runtime.close()
        for name, value in flags.items():
            variable = f"KEYLEDGER_{name.upper()}"
            if value is not None:
                os.environ[variable] = str(value)
        # Each worker builds the same TLS context again (an SSLContext does not cross into a spawned process).
        config = uvicorn.Config("api.serve:worker_app", factory=True, workers=settings.workers,
                                ssl_context_factory=worker_context_factory if tls else None, **options)
        try:
            Multiprocess(config, sockets=[sock]).run()  # what uvicorn.run does, with the socket bound above
        except KeyboardInterrupt:
            pass
        return
    config = uvicorn.Config(create_app(runtime, background_passes(runtime), whole_process=True),
                            ssl_context_factory=tls.context_factory() if tls else None, **options)
    server = uvicorn.Server(config)
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:
        pass
    if not server.started:  # as uvicorn.run: a start that failed (the lifespan) is not a clean exit
        raise typer.Exit(3)


def _open_runtime(data_dir: Optional[Path], database_url: Optional[str]):
    from infrastructure.bootstrap import build_runtime

    runtime = build_runtime(Settings.load(data_dir=data_dir, database_url=database_url))
    if runtime.sealed_reason or runtime.services is None:
        typer.echo(f"keyledger is sealed: {runtime.sealed_reason}", err=True)
        raise typer.Exit(2)
    return runtime


DataDir = data_dir_option()
DatabaseUrl = database_url_option()


@cli.command()
def maintenance(data_dir: Optional[Path] = DataDir, database_url: Optional[str] = DatabaseUrl,
                json_output: bool = typer.Option(False, "--json", help="Print the report as JSON.")) -> None:
    """Run one maintenance pass now: rotate due keys, delete keys whose waiting period ended, expire
    imported material. The server runs the same pass on an interval; running both at once is safe."""
    import json

    runtime = _open_runtime(data_dir, database_url)
    try:
        assert runtime.services is not None
        report = runtime.services.maintenance.run_once().as_dict()
    finally:
        runtime.close()
    if json_output:
        typer.echo(json.dumps(report))
    else:
        typer.echo(f"rotated {len(report['rotated'])}, deleted {len(report['deleted'])}, "
                   f"expired {len(report['expired'])} keys; removed {report['import_keys_removed']} unused import keys")


from api.cli_audit import audit_cli  # noqa: E402

cli.add_typer(audit_cli, name="audit")

from api.cli_history import history_cli  # noqa: E402
from api.cli_history import replay as history_replay  # noqa: E402

cli.add_typer(history_cli, name="history")

from api.cli_reports import report_cli  # noqa: E402

cli.add_typer(report_cli, name="report")

from api.cli_principals import access_keys_cli, principals_cli  # noqa: E402

cli.add_typer(principals_cli, name="principals")

from api.cli_root_key import root_key_cli  # noqa: E402

cli.add_typer(root_key_cli, name="root-key")
cli.add_typer(access_keys_cli, name="access-keys")

from api.cli_xks import xks_cli  # noqa: E402

cli.add_typer(xks_cli, name="xks")
cli.command("replay", help="Rebuild every projection from the event log and compare it with the live one.")(history_replay)

clock_cli = typer.Typer(help="The service clock (operators with direct database access only).", rich_markup_mode=MARKUP)
cli.add_typer(clock_cli, name="clock")


@clock_cli.command("advance")
def clock_advance(days: float = typer.Option(0.0, help="Days to move forward."),
                  seconds: float = typer.Option(0.0, help="Seconds to move forward."),
                  data_dir: Optional[Path] = DataDir, database_url: Optional[str] = DatabaseUrl) -> None:
    """Move the service clock forward for every process on this database (for tests and drills).
    Time only moves forward; no API can do this."""
    from infrastructure.bootstrap import open_clock_service

    clock, close = open_clock_service(Settings.load(data_dir=data_dir, database_url=database_url))
    try:
        total = clock.advance(days * 86400 + seconds)
    except ValueError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None
    finally:
        close()
    typer.echo(f"service clock is now {total / 86400:.3f} days ahead of system time")


@cli.command()
def status(data_dir: Optional[Path] = DataDir, database_url: Optional[str] = DatabaseUrl,
           json_output: bool = typer.Option(False, "--json", help="Print the status as JSON.")) -> None:
    """What this installation is and how it is doing: endpoint, storage backend, sealed or not, root key
    provider, audit head, newest checkpoint, and which process runs the background work. Creates nothing."""
    import json

    from api.status import installation_status

    report = installation_status(Settings.load(data_dir=data_dir, database_url=database_url))
    if json_output:
        typer.echo(json.dumps(report, indent=2))
    else:
        width = max(len(k) for k in report)
        for name, value in report.items():
            typer.echo(f"{name:<{width}}  {value}")
    if report.get("initialized") is False:
        raise typer.Exit(1)


def main() -> None:
    # Everything keyledger writes (database, WAL, checkpoints, exports) is readable by its owner only.
    os.umask(0o077)
    cli()
