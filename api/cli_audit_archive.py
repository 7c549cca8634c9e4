"""`keyledger audit archive --before T` and what `verify` and `export` do with archived segments (docs/audit.md,
"Retention: archived segments")."""
from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any, Iterator, Optional

import typer

from api.cli_audit import DatabaseUrl, DataDir, _runtime, audit_cli
from api.cli_common import moment_option
from api.moments import MomentError, parse_moment

SEGMENTS_HELP = "The directory of archived audit segments ('keyledger audit archive' writes them there)."


def segments_option(help_text: str = SEGMENTS_HELP) -> Any:
    return typer.Option(None, "--segments", help=help_text, file_okay=False)


def default_directory(runtime: Any) -> Path:
    if runtime.settings.data_dir is None:
        typer.echo("keyledger audit archive: this node has no data directory: give --segments DIR", err=True)
        raise typer.Exit(2)
    return Path(runtime.settings.data_dir) / "audit-segments"


@audit_cli.command()
def archive(before: str = moment_option(None, "Archive records older than this", "--before"),
            segments: Optional[Path] = segments_option("Where to write the segment (default: <data dir>/"
                                                       "audit-segments). Copy it where the database's "
                                                       "administrators cannot write, with the checkpoints."),
            max_records: int = typer.Option(100_000, "--max-records", min=1, max=200_000,
                                            help="At most this many records per run (run again for more)."),
            data_dir: Optional[Path] = DataDir, database_url: Optional[str] = DatabaseUrl) -> None:
    """Move the oldest audit records, up to the newest signed checkpoint before --before, out of the database into
    a signed, compressed segment file. Key events stay. 'verify --segments DIR' and 'export --segments DIR' read
    them again. One segment per run."""
    from api.cli_principals import _operator
    from domain.errors import ValidationError
    from infrastructure.audit_segments import SegmentError

    def refuse(message: str, code: int) -> None:
        typer.echo(f"keyledger audit archive: {message}", err=True)
        raise typer.Exit(code)

    if before is None:
        refuse("--before is required (e.g. --before 2025-01-01T00:00:00Z or --before '400d ago')", 2)
    try:
        moment = parse_moment(before)  # type: ignore[arg-type]
    except MomentError as exc:
        refuse(f"--before: {exc}", 2)
    runtime = _runtime(data_dir, database_url, need_keys=True)
    try:
        at: datetime = moment.resolve(runtime.now())
        if at > runtime.now():
            refuse(f"--before {before} is in the future: only records already written can be archived", 2)
        directory = segments or default_directory(runtime)
        try:
            result = runtime.services.archive.archive(_operator(), at, directory, max_records)
        except (ValidationError, SegmentError, OSError) as exc:
            refuse(str(exc), 1)
    finally:
        runtime.close()
    if result is None:
        typer.echo("nothing to archive: no signed checkpoint covers a record older than --before that is not "
                   "archived yet")
        return
    per = result.segment_bytes / max(result.records, 1)
    typer.echo(f"archived records {result.first_seq}-{result.last_seq} ({result.records} records, "
               f"{result.segment_bytes} bytes, {per:.0f} B/record) to {result.segment}"
               f"{' (finishing an interrupted run)' if result.resumed else ''}")


def load_or_fail(directory: Path, key: Optional[bytes], archived: list[dict[str, Any]], command: str) -> list[Any]:
    """The segments of ``directory``, each sound, together an unbroken run holding every segment the database
    archived; otherwise one FAILED line and exit 1."""
    from application.audit.archived import coverage_problem
    from infrastructure.audit_segments import SegmentError, load_segments

    try:
        loaded = load_segments(directory, key)
    except SegmentError as exc:
        typer.echo(f"FAILED ({command} --segments {directory}): {exc}", err=True)
        raise typer.Exit(1) from None
    problem = coverage_problem(archived, [manifest for _, manifest, _ in loaded])
    if problem is not None:
        typer.echo(f"FAILED ({command} --segments {directory}): {problem}", err=True)
        raise typer.Exit(1)
    return loaded


def archived_rows(loaded: list[Any]) -> Iterator[Any]:
    from infrastructure.audit_segments import body_rows

    for name, _, body in loaded:
        yield from body_rows(name, body)


def archived_records(runtime: Any, directory: Optional[Path], key: Optional[bytes]) -> Iterator[dict[str, Any]]:
    """For `export`: the archived records (those the database no longer holds), oldest first; a note on standard
    error when records are archived and no segments were given."""
    from application.audit.archived import segment_records

    archived = runtime.archive_store.archived()
    if not archived:
        return iter(())
    if directory is None:
        typer.echo(f"note: records 1-{archived[-1]['last_seq']} are archived and not in this export: give "
                   "--segments DIR to include them", err=True)
        return iter(())
    loaded = load_or_fail(directory, key, archived, "export")
    return segment_records(runtime.ledger, archived_rows(loaded), archived[-1]["last_seq"])


def partial_note(archived: list[dict[str, Any]]) -> str:
    names = ", ".join(m["first_seq"].__str__() + "-" + str(m["last_seq"]) for m in archived[-3:])
    more = f"{len(archived) - 3} more and " if len(archived) > 3 else ""
    return (f"records 1-{archived[-1]['last_seq']} (store positions up to {archived[-1]['last_position']}) are "
            f"archived in {len(archived)} segment(s) ({more}{names}) and were NOT verified, nor the events stored "
            "among them against the records that claim them: give --segments DIR to verify the whole ledger")
