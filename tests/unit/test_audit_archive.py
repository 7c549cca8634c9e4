"""Retention without losing proof (issue 13, docs/audit.md "Retention: archived segments"): `keyledger audit archive`
moves old records into signed segments; `verify --segments` proves the whole ledger across them (the binding of key
events to the records that claim them included) and finds a tampered, dropped, reordered or replaced segment; without
them it says what is archived and does not pass (exit 3); `export --segments` crosses the boundary; a crash between
writing the segment and deleting the rows is finished by the next run, nothing lost or archived twice. Both backends;
the commands in-process (CliRunner)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from api.cli import cli as app
from infrastructure.audit_segments import read_manifest, segment_files
from tests import scale_support
from tests.scale_support import Ledger, grow_history
from tests.stored_states import plain, stored

ledger_backend, ledger = scale_support.ledger_backend, scale_support.ledger  # the fixtures, on both backends

DAY = 86_400.0


def _cli(ledger: Ledger, *args: str) -> Any:
    ledger.rt.close()
    where = ["--data-dir", str(ledger.data_dir)] + (["--database-url", ledger.database_url] if ledger.database_url
                                                      else [])
    result = CliRunner().invoke(app, [*args, *where])
    ledger.rt = ledger._build()
    return result


def _history(ledger: Ledger) -> str:
    """Old records (two checkpoints), then two days later newer ones; returns the key."""
    key_id = ledger.create_key()
    grow_history(ledger, key_id, 120, "old one")
    grow_history(ledger, key_id, 80, "old two")
    ledger.advance(2 * DAY)
    grow_history(ledger, key_id, 40, "new")
    return key_id


def _export(ledger: Ledger, *args: str) -> list[dict[str, Any]]:
    result = _cli(ledger, "audit", "export", "--format", "jsonl", *args)
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]


def _count_audit_rows(ledger: Ledger) -> int:
    with ledger.rt.ledger.recorder.datastore.engine.connect() as conn:  # type: ignore[attr-defined]
        return conn.execute(sa.text("SELECT count(*) FROM audit_index")).scalar()


def test_archive_round_trip_and_every_way_to_break_a_segment(ledger: Ledger, tmp_path: Path) -> None:
    key_id = _history(ledger)
    before_archive = _export(ledger)
    seqs = [r["seq"] for r in before_archive]
    assert seqs == list(range(1, len(seqs) + 1))
    segments = tmp_path / "segments"

    # Two runs of at most 150 records: each stops at the newest signed checkpoint it may reach.
    first = _cli(ledger, "audit", "archive", "--before", "1d ago", "--segments", str(segments), "--max-records", "150")
    assert first.exit_code == 0 and first.stdout.startswith("archived records 1-"), first.output
    second = _cli(ledger, "audit", "archive", "--before", "1d ago", "--segments", str(segments))
    assert second.exit_code == 0 and "archived records" in second.stdout, second.output
    again = _cli(ledger, "audit", "archive", "--before", "1d ago", "--segments", str(segments))
    assert again.exit_code == 0 and again.stdout.startswith("nothing to archive"), again.output
    files = segment_files(segments)
    assert len(files) == 2
    archived_up_to = read_manifest(files[-1])[0]["last_seq"]
    assert archived_up_to >= 200  # the old records, up to the checkpoint before the clock moved

    # Key state is untouched: the key's events stay, and point in time still answers.
    assert ledger.rt.services.keys.describe_key(_call(ledger), key_id)["KeyMetadata"]["Description"] == "new"

    # With the segments: the whole ledger, and the export across the boundary, archive records included.
    whole = _cli(ledger, "audit", "verify", "--segments", str(segments))
    assert whole.exit_code == 0 and whole.stdout.startswith("OK: ") and "included" in whole.stdout, whole.output
    after = _export(ledger, "--segments", str(segments))
    assert [r["seq"] for r in after] == list(range(1, len(after) + 1))
    assert after[:len(before_archive)] == before_archive
    assert [r["eventName"] for r in after].count("ArchiveAuditRecords") == 2
    by_key = _export(ledger, "--segments", str(segments), "--key", key_id)
    assert any(r["seq"] <= archived_up_to for r in by_key) and any(r["seq"] > archived_up_to for r in by_key)
    # The index no longer names archived records.
    assert _count_audit_rows(ledger) < len(after)

    # Without them: what follows is proved, what is archived is named, and it is not a pass.
    partial = _cli(ledger, "audit", "verify")
    assert partial.exit_code == 3 and f"records 1-{archived_up_to}" in partial.output, partial.output
    assert "NOT verified" in partial.output
    short = _export(ledger)
    assert short[0]["seq"] == archived_up_to + 1

    def verdict(directory: Path) -> Any:
        return _cli(ledger, "audit", "verify", "--segments", str(directory))

    # Tampered: one byte of the body; a record rewritten with the manifest re-digested but not re-signed.
    tampered = _copy(segments, tmp_path / "tampered")
    body = bytearray(files[0].read_bytes())
    body[-20] ^= 1
    (tampered / files[0].name).write_bytes(bytes(body))
    result = verdict(tampered)
    assert result.exit_code == 1 and "altered" in result.output, result.output
    resigned = _copy(segments, tmp_path / "resigned")
    manifest, offset = read_manifest(files[0])
    manifest["era_over"] = not manifest["era_over"]
    (resigned / files[0].name).write_bytes(json.dumps(manifest).encode() + b"\n" + files[0].read_bytes()[offset:])
    result = verdict(resigned)
    assert result.exit_code == 1 and "signature" in result.output, result.output

    # Dropped: the first segment, or the last (which the database says it archived).
    for dropped in (files[0], files[1]):
        missing = _copy(segments, tmp_path / f"without-{dropped.name}")
        (missing / dropped.name).unlink()
        result = verdict(missing)
        assert result.exit_code == 1 and ("dropped" in result.output or "not among" in result.output), result.output

    # Reordered: the files renamed into each other's places are read by their manifests, so the order is the
    # manifests' own; a segment from another run of the same range (replaced) breaks the link.
    swapped = _copy(segments, tmp_path / "swapped")
    (swapped / files[0].name).write_bytes(files[1].read_bytes())
    (swapped / files[1].name).write_bytes(files[0].read_bytes())
    assert verdict(swapped).exit_code == 0
    replaced = _copy(segments, tmp_path / "replaced")
    (replaced / files[1].name).write_bytes(files[0].read_bytes())
    result = verdict(replaced)
    assert result.exit_code == 1 and ("overlaps" in result.output or "not among" in result.output), result.output


def test_a_crash_between_the_segment_and_the_deletion_is_finished_by_the_next_run(ledger: Ledger,
                                                                                tmp_path: Path) -> None:
    _history(ledger)
    everything = _export(ledger)
    segments = tmp_path / "segments"
    services = ledger.rt.services

    def crash(path: Path) -> None:
        raise KeyboardInterrupt("killed after writing the segment")

    services.archive.before_remove = crash
    before = ledger.now().timestamp() - DAY
    with pytest.raises(KeyboardInterrupt):
        services.archive.archive(_operator(), _at(before), segments)
    [orphan] = segment_files(segments)
    orphan_bytes = orphan.read_bytes()
    assert _export(ledger) == everything  # nothing deleted
    assert _cli(ledger, "audit", "verify", "--segments", str(segments)).exit_code == 0  # the overlap is the same rows

    # A segment file put there in its place, not one this ledger signed, is refused, not resumed.
    manifest, offset = read_manifest(orphan)
    orphan.write_bytes(json.dumps({**manifest, "era_over": False}).encode() + b"\n" + orphan_bytes[offset:])
    planted = _cli(ledger, "audit", "archive", "--before", "1d ago", "--segments", str(segments))
    assert planted.exit_code == 1 and "signature" in planted.output and "move it aside" in planted.output
    orphan.write_bytes(orphan_bytes)

    resumed = _cli(ledger, "audit", "archive", "--before", "1d ago", "--segments", str(segments))
    assert resumed.exit_code == 0 and "finishing an interrupted run" in resumed.stdout, resumed.output
    assert segment_files(segments) == [orphan] and orphan.read_bytes() == orphan_bytes
    after = _export(ledger, "--segments", str(segments))
    assert after[:len(everything)] == everything and [r["seq"] for r in after] == list(range(1, len(after) + 1))
    assert _cli(ledger, "audit", "verify", "--segments", str(segments)).exit_code == 0
    # A restarted server proves its tail from the archive's checkpoint and serves.
    ledger.restart(serve=True)
    assert ledger.rt.sealed_reason is None


@pytest.mark.parametrize("before,expected", [("+1d", "in the future"), ("2999-01-01T00:00:00Z", "in the future"),
                                             ("next tuesday-ish", "--before"),
                                             ("9" * 40, "--before")])
def test_a_hostile_before_is_one_clear_line(tmp_path: Path, before: str, expected: str) -> None:
    ledger = Ledger(tmp_path / "data", None)
    try:
        result = _cli(ledger, "audit", "archive", "--before", before, "--segments", str(tmp_path / "s"))
        assert result.exit_code == 2, result.output
        lines = [line for line in result.output.splitlines() if line.strip()]
        assert len(lines) == 1 and expected in lines[0] and "Traceback" not in result.output, result.output
        assert not (tmp_path / "s").exists()
    finally:
        ledger.close()


def _copy(source: Path, target: Path) -> Path:
    shutil.copytree(source, target)
    return target


def _call(ledger: Ledger) -> Any:
    from tests.calls import api_call
    from tests.scale_support import ROOT, SCOPE

    return api_call("DescribeKey", ROOT, SCOPE, at=ledger.now())


def _operator() -> Any:
    from application.calls import Operator

    return Operator(user="test", host="test")


def _at(seconds: float) -> Any:
    from datetime import datetime, timezone

    return datetime.fromtimestamp(seconds, tz=timezone.utc)


def test_the_binding_across_the_boundary_the_incremental_state_and_a_hidden_archive(ledger: Ledger,
                                                                                    tmp_path: Path) -> None:
    key_id = ledger.create_key()
    grow_history(ledger, key_id, 120, "old one")
    grow_history(ledger, key_id, 80, "old two")
    state, segments = tmp_path / "verified.json", tmp_path / "segments"
    assert _cli(ledger, "audit", "verify", "--incremental", "--state", str(state)).exit_code == 0
    ledger.advance(2 * DAY)
    grow_history(ledger, key_id, 40, "new")
    archived = _cli(ledger, "audit", "archive", "--before", "1d ago", "--segments", str(segments))
    assert archived.exit_code == 0, archived.output
    last_position = read_manifest(segment_files(segments)[-1])[0]["last_position"]

    # The operator's state names a checkpoint whose records are archived now: said, never a silent full run.
    stale = _cli(ledger, "audit", "verify", "--incremental", "--state", str(state))
    assert stale.exit_code == 2 and "archived since" in stale.output, stale.output
    renewed = _cli(ledger, "audit", "verify", "--segments", str(segments), "--state", str(state))
    assert renewed.exit_code == 0, renewed.output
    assert _cli(ledger, "audit", "verify", "--incremental", "--state", str(state)).exit_code == 0

    # A key event stored among the archived records, changed: only the records in the segment can tell.
    engine = ledger.rt.ledger.recorder.datastore.engine  # type: ignore[attr-defined]
    events = ledger.rt.ledger.recorder.events_record_cls.__table__  # type: ignore[attr-defined]
    with engine.begin() as conn:
        position = _first_key_event(conn, events, last_position)
        state_bytes = conn.execute(sa.select(events.c.state).where(events.c.id == position)).scalar_one()
        conn.execute(events.update().where(events.c.id == position).values(state=stored(plain(state_bytes).replace(
            b"old two", b"old 2!!"))))
    caught = _cli(ledger, "audit", "verify", "--segments", str(segments))
    assert caught.exit_code == 1 and f"store position {position}" in caught.output, caught.output
    partial = _cli(ledger, "audit", "verify")
    assert partial.exit_code == 3 and "NOT verified" in partial.output, partial.output

    # The database's administrator changes the archive's row (a forged manifest): its signature fails.
    with engine.begin() as conn:
        row = conn.execute(sa.text("SELECT first_seq, manifest FROM audit_archive")).one()
        forged = {**json.loads(row[1]), "last_position": last_position + 1}
        conn.execute(sa.text("UPDATE audit_archive SET manifest = :m WHERE first_seq = :f"),
                     {"m": json.dumps(forged), "f": row[0]})
    forged_row = _cli(ledger, "audit", "verify")
    assert forged_row.exit_code == 1 and "signature" in forged_row.output, forged_row.output

    # The database's administrator hides the archive (its row): the records are simply missing, and that fails.
    with engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM audit_archive"))
    hidden = _cli(ledger, "audit", "verify")
    assert hidden.exit_code == 1 and "seq 1" in hidden.output, hidden.output


def _first_key_event(conn: Any, events: sa.Table, last_position: int) -> int:
    """The store position of the key's "old two" description change (archived with its record)."""
    rows = conn.execute(sa.select(events.c.id, events.c.state).where(
        events.c.id <= last_position, events.c.topic.like("%DescriptionUpdated%"))).all()
    return next(p for p, state in rows if b"old two" in plain(state))


def test_an_idle_log_archived_to_its_head_starts_after_a_crash_and_after_a_clean_stop(ledger: Ledger,
                                                                                      tmp_path: Path) -> None:
    """The newest checkpoint may cover the archived head itself (a crash before the command's closing checkpoint)
    or the archive's own record right after it: start-up proves its tail from the archive either way."""
    key_id = ledger.create_key()
    grow_history(ledger, key_id, 30, "old")
    ledger.advance(2 * DAY)
    services = ledger.rt.services
    result = services.archive.archive(_operator(), _at(ledger.now().timestamp() - DAY), tmp_path / "segments")
    assert result is not None and result.last_seq == services.checkpointer.newest().seq
    ledger.rt.audit.appended = False  # killed before its closing checkpoint
    ledger.restart(serve=True)
    assert ledger.rt.sealed_reason is None
    assert ledger.rt.services.checkpointer.newest().seq == result.last_seq + 1  # start-up signed the archive record
    ledger.restart(serve=True)  # now the newest checkpoint's record follows the archived head
    assert ledger.rt.sealed_reason is None
    # The web console's integrity check starts after the archive too (the page's own code, without HTTP).
    from api.console.pages import integrity_page
    from api.console.routes import Console

    console = Console(ledger.rt, None)  # type: ignore[arg-type]
    integrity_page(console, verify=True)(ledger.rt.services, _call(ledger), None)  # type: ignore[arg-type]
    assert console.verified["ok"] and console.verified["problem"] is None, console.verified
    assert _cli(ledger, "audit", "verify", "--segments", str(tmp_path / "segments")).exit_code == 0


def test_two_archive_runs_at_once_archive_the_records_once(ledger: Ledger, tmp_path: Path) -> None:
    """The second to commit finds the first's segment registered and refuses; both wrote the same bytes (nothing in a
    segment depends on when it was made), so the file the database registered is the one on disk."""
    from domain.errors import ValidationError

    _history(ledger)
    everything = _export(ledger)
    segments, archive = tmp_path / "segments", ledger.rt.services.archive
    before = _at(ledger.now().timestamp() - DAY)

    def other_run(path: Path) -> None:
        archive.before_remove = None
        archive.archive(_operator(), before, segments)

    archive.before_remove = other_run
    with pytest.raises(ValidationError, match="another archive ran"):
        archive.archive(_operator(), before, segments)
    assert len(segment_files(segments)) == 1
    assert _cli(ledger, "audit", "verify", "--segments", str(segments)).exit_code == 0
    after = _export(ledger, "--segments", str(segments))
    assert after[:len(everything)] == everything and [r["seq"] for r in after] == list(range(1, len(after) + 1))


def test_an_interrupted_segment_reaching_past_the_new_limit_is_set_aside_never_deleted(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "data", None)
    try:
        _history(ledger)
        segments, archive = tmp_path / "segments", ledger.rt.services.archive
        before = _at(ledger.now().timestamp() - DAY)

        def crash(path: Path) -> None:
            raise KeyboardInterrupt("killed after writing the segment")

        archive.before_remove = crash
        with pytest.raises(KeyboardInterrupt):
            archive.archive(_operator(), before, segments)
        [orphan] = segment_files(segments)
        archive.before_remove = None
        smaller = archive.archive(_operator(), before, segments, max_records=150)  # stops at an earlier checkpoint
        assert smaller is not None and smaller.last_seq < read_manifest(orphan.with_name(orphan.name + ".set-aside"))[
            0]["last_seq"]
        assert archive.archive(_operator(), before, segments) is not None
        assert len(segment_files(segments)) == 2
        assert _cli(ledger, "audit", "verify", "--segments", str(segments)).exit_code == 0
    finally:
        ledger.close()
