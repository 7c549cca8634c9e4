"""Checkpoints cost the same however many exist (issue 13): the file sink is appended to after reading only its
last line, a crash between saving a checkpoint and appending it is repaired at start and never duplicated, and an
idle server signs only a heartbeat. Both backends, the real file and the real database."""
from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from api.cli import cli as app
from application.audit.checkpoints import Checkpointer, stored_checkpoints
from application.audit.records import cloudtrail_record
from domain.audit.chain import checkpoint_from_json
from infrastructure.bootstrap import start_serving
from infrastructure.checkpoint_file import CheckpointFile
from tests.calls import api_call
from tests.scale_support import ROOT, SCOPE, Ledger, ledger, ledger_backend  # noqa: F401 (fixtures)


class WatchedFile(CheckpointFile):
    """The real checkpoint file, counting whole-file reads; ``crash`` makes the next append fail, as a process
    killed between saving a checkpoint in the database and appending it to the file would."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.whole_reads = 0
        self.crash = False

    def lines(self) -> list[str]:
        self.whole_reads += 1
        return super().lines()

    def append_all(self, lines: list[str]) -> None:
        if self.crash and lines:
            self.crash = False
            raise OSError("killed before the append")
        super().append_all(lines)


def _checkpointer(ledger: Ledger, sink: CheckpointFile, every: float = 60, heartbeat: float = 3600) -> Checkpointer:
    services = ledger.rt.services
    assert services is not None
    return Checkpointer(ledger.rt.ledger, ledger.rt.clock, services.checkpointer._signing_key, sink, 1000, every,
                        heartbeat)


def _record(ledger: Ledger) -> None:
    ledger.rt.audit.record(cloudtrail_record(api_call("DescribeKey", ROOT, SCOPE, at=ledger.now())))


def _file_signatures(path: Path) -> list[str]:
    return [checkpoint_from_json(line).signature for line in path.read_text().splitlines() if line.strip()]


def _stored_signatures(ledger: Ledger) -> list[str]:
    return [checkpoint.signature for checkpoint in stored_checkpoints(ledger.rt.ledger)]


def test_a_crash_between_signing_and_appending_is_repaired_at_start_never_duplicated(ledger: Ledger) -> None:
    start_serving(ledger.rt)
    ledger.create_key()
    path = ledger.rt.settings.checkpoint_file
    sink = WatchedFile(path)
    sink.crash = True
    with pytest.raises(OSError):
        _checkpointer(ledger, sink).checkpoint_if_due(force=True)
    lost = _stored_signatures(ledger)[-1]
    assert lost not in _file_signatures(path), "the crash left the newest checkpoint out of the file"

    ledger.restart(serve=True)  # the start repairs the file before it signs anything
    assert _file_signatures(path) == _stored_signatures(ledger)
    assert _file_signatures(path).count(lost) == 1
    services = ledger.rt.services
    assert services is not None
    assert services.checkpointer.sync_file() == 0, "a second repair appended again"
    ledger.restart(serve=True)
    assert _file_signatures(path) == _stored_signatures(ledger), "a restart duplicated a checkpoint"
    result = CliRunner().invoke(app, ["audit", "verify", "--checkpoints", str(path), *_where(ledger)])
    assert result.exit_code == 0, result.output


def test_signing_appends_after_reading_only_the_last_line(ledger: Ledger) -> None:
    path = ledger.rt.settings.checkpoint_file
    sink = WatchedFile(path)
    checkpointer = _checkpointer(ledger, sink)
    for _ in range(5):
        _record(ledger)
        assert checkpointer.checkpoint_if_due(force=True) is not None
    assert sink.whole_reads == 0
    assert _file_signatures(path) == _stored_signatures(ledger)


def test_a_damaged_last_line_is_compared_once_then_signing_is_cheap_again(ledger: Ledger) -> None:
    path = ledger.rt.settings.checkpoint_file
    sink = WatchedFile(path)
    checkpointer = _checkpointer(ledger, sink)
    _record(ledger)
    checkpointer.checkpoint_if_due(force=True)
    with path.open("a") as f:
        f.write("not a checkpoint\n")
    _record(ledger)
    checkpointer.checkpoint_if_due(force=True)
    assert sink.whole_reads == 1
    _record(ledger)
    checkpointer.checkpoint_if_due(force=True)
    assert sink.whole_reads == 1
    assert [s for s in _file_signatures_lenient(path)] == _stored_signatures(ledger)


def _file_signatures_lenient(path: Path) -> list[str]:
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(checkpoint_from_json(line).signature)
        except ValueError:
            continue
    return out


def test_an_idle_server_signs_only_a_heartbeat(ledger: Ledger) -> None:
    checkpointer = _checkpointer(ledger, CheckpointFile(ledger.rt.settings.checkpoint_file), every=60, heartbeat=3600)
    _record(ledger)
    assert checkpointer.checkpoint_if_due() is not None  # the first one
    for _ in range(10):  # ten idle intervals: nothing new to cover
        ledger.advance(61)
        assert checkpointer.checkpoint_if_due() is None
    _record(ledger)
    assert checkpointer.checkpoint_if_due() is not None, "a record after an idle spell waits for no heartbeat"
    ledger.advance(30)
    _record(ledger)
    assert checkpointer.checkpoint_if_due() is None  # within the interval
    ledger.advance(31)
    assert checkpointer.checkpoint_if_due() is not None
    ledger.advance(3600)
    heartbeat = checkpointer.checkpoint_if_due()
    assert heartbeat is not None and heartbeat.seq == stored_checkpoints(ledger.rt.ledger)[-2].seq


def _where(ledger: Ledger) -> list[str]:
    out = ["--data-dir", str(ledger.data_dir)]
    return out + (["--database-url", ledger.database_url] if ledger.database_url else [])


def test_verify_judges_the_uncovered_tail_by_its_first_record_not_the_checkpoint_age(ledger: Ledger) -> None:
    """Consistent with the idle policy: an old heartbeat with nothing after it is fine; records after it that a
    running server would have covered by now are not."""
    services = ledger.rt.services
    assert services is not None
    _record(ledger)
    services.checkpointer.checkpoint_if_due(force=True)
    ledger.advance(3000)  # idle for fifty minutes: no checkpoint is due, none is missing
    ledger.rt.close()
    runner = CliRunner()
    result = runner.invoke(app, ["audit", "verify", *_where(ledger)])
    assert result.exit_code == 0, result.output
    ledger.rt = ledger._build()
    _record(ledger)  # a record just now, after a checkpoint fifty minutes old: a server is about to cover it
    ledger.rt.audit.stop()
    result = runner.invoke(app, ["audit", "verify", *_where(ledger)])
    assert result.exit_code == 0, result.output
    ledger.advance(121)  # and now it is older than twice the interval, still uncovered
    result = runner.invoke(app, ["audit", "verify", *_where(ledger)])
    assert result.exit_code == 1 and "covered by no checkpoint" in result.output, result.output
