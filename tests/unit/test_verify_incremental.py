"""Incremental verify (issue 13, docs/audit.md "Incremental verify"): it starts from the checkpoint an earlier verify
proved, reads only the rows stored after the record that checkpoint covers (counted, not timed), finds tampering
there, and says what it does not cover: rows before the anchor, which the full verify still finds. Both backends,
a real SQLite file or a fresh PostgreSQL schema; the command on SQLite."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from api.cli import cli as app
from application.audit.checkpoints import stored_checkpoints
from application.audit.ledger_verify import LedgerVerifyResult, verify_ledger
from application.audit.verify_anchor import (
    VerifiedAnchor,
    checkpoints_after,
    proved_anchor,
    stored_newest_first,
    verify_incremental,
)
from infrastructure.event_rows import SqlEventRows
from tests.scale_support import Ledger, grow_history, ledger, ledger_backend  # noqa: F401 (fixtures)
from tests.stored_states import plain, stored

NOW = "2026-12-06T00:00:00Z"


def _full(ledger: Ledger) -> tuple[LedgerVerifyResult, VerifiedAnchor | None]:
    checkpoints = stored_checkpoints(ledger.rt.ledger)
    result = verify_ledger(ledger.rt.ledger, checkpoints, _key(ledger), rows=SqlEventRows(ledger.rt.uow))
    return result, proved_anchor(result, checkpoints, ledger.rt.uow.position_of, NOW)


def _incremental(ledger: Ledger, anchor: VerifiedAnchor) -> tuple[LedgerVerifyResult, int, VerifiedAnchor | None]:
    newer = checkpoints_after(stored_newest_first(ledger.rt.ledger), anchor.checkpoint)
    assert newer is not None
    rows = SqlEventRows(ledger.rt.uow)
    result = verify_incremental(ledger.rt.ledger, anchor, newer, _key(ledger), ledger.rt.uow.position_of, rows)
    return result, rows.read, proved_anchor(result, [anchor.checkpoint, *newer], ledger.rt.uow.position_of, NOW)


def _key(ledger: Ledger) -> bytes:
    services = ledger.rt.services
    assert services is not None
    return services.audit_public_key


def _rows_after(ledger: Ledger, position: int) -> int:
    with ledger.rt.ledger.recorder.datastore.engine.connect() as conn:  # type: ignore[attr-defined]
        return conn.execute(sa.text("SELECT count(*) FROM keyledger_events WHERE id > :p"), {"p": position}).scalar()


def test_incremental_verify_costs_the_rows_since_the_proved_checkpoint_whatever_came_before(ledger: Ledger) -> None:
    key_id = ledger.create_key()
    grow_history(ledger, key_id, 300, "first")
    result, anchor = _full(ledger)
    assert result.ok and anchor is not None, result.problem
    costs = []
    for history in (0, 1500):  # the same 40 new records after a short and after a long proved history
        if history:
            grow_history(ledger, key_id, history, "long history")
            result, _, anchor = _incremental(ledger, anchor)
            assert result.ok and anchor is not None, result.problem
        grow_history(ledger, key_id, 40, f"after {history}")
        expected = _rows_after(ledger, anchor.position)
        result, read, proved = _incremental(ledger, anchor)
        assert result.ok, result.problem
        assert result.records == 41 and result.events >= 1 and result.checkpoints_checked == 1
        assert read == expected, "an incremental verify reads exactly the rows after the anchor record"
        costs.append(read)
        assert proved is not None and proved.checkpoint.seq == anchor.checkpoint.seq + 41
        anchor = proved
    assert abs(costs[0] - costs[1]) <= 2 and max(costs) < 60, costs  # 1,800 records more before: no cost


def _flip(ledger: Ledger, position: int, after: bytes = b'"eventName":"') -> bytes:
    """Changes one letter of the state stored at ``position``: the first after ``after`` in its JSON (still valid
    JSON, stored compressed as the service stores it, so the record decodes and is judged by its hashes); returns
    the old state."""
    with ledger.rt.ledger.recorder.datastore.engine.begin() as conn:  # type: ignore[attr-defined]
        state = bytes(conn.execute(sa.text("SELECT state FROM keyledger_events WHERE id = :i"), {"i": position}).scalar())
        changed = bytearray(plain(state))
        changed[changed.index(after) + len(after)] ^= 1
        conn.execute(sa.text("UPDATE keyledger_events SET state = :s WHERE id = :i"),
                     {"s": stored(bytes(changed)), "i": position})
    return state


def _restore(ledger: Ledger, position: int, state: bytes) -> None:
    with ledger.rt.ledger.recorder.datastore.engine.begin() as conn:  # type: ignore[attr-defined]
        conn.execute(sa.text("UPDATE keyledger_events SET state = :s WHERE id = :i"), {"s": state, "i": position})


def _positions(ledger: Ledger, after: int, topic: str) -> list[int]:
    with ledger.rt.ledger.recorder.datastore.engine.connect() as conn:  # type: ignore[attr-defined]
        return list(conn.execute(sa.text("SELECT id FROM keyledger_events WHERE id > :p AND topic LIKE :t ORDER BY id"),
                                 {"p": after, "t": f"%{topic}"}).scalars())


def test_incremental_verify_finds_tampering_after_the_anchor_and_leaves_before_it_to_the_full_verify(
        ledger: Ledger) -> None:
    key_id = ledger.create_key()
    grow_history(ledger, key_id, 50, "before")
    _, anchor = _full(ledger)
    assert anchor is not None
    grow_history(ledger, key_id, 20, "after")
    assert _incremental(ledger, anchor)[0].ok

    record_after = _positions(ledger, anchor.position, "RecordAppended")[3]
    old = _flip(ledger, record_after)
    result = _incremental(ledger, anchor)[0]
    assert not result.ok and result.first_bad_seq == anchor.checkpoint.seq + 4, result.problem
    _restore(ledger, record_after, old)

    event_after = _positions(ledger, anchor.position, "DescriptionUpdated")[0]
    old = _flip(ledger, event_after, b'"description":"')
    result = _incremental(ledger, anchor)[0]
    assert not result.ok and result.position == event_after and "was modified" in (result.problem or ""), result
    _restore(ledger, event_after, old)

    # Before the anchor: not what an incremental verify reads (it says so); the full verify finds it.
    record_before = _positions(ledger, 0, "RecordAppended")[10]
    old = _flip(ledger, record_before)
    assert _incremental(ledger, anchor)[0].ok
    assert not _full(ledger)[0].ok
    _restore(ledger, record_before, old)

    # The anchor record itself is checked: changed, or the rows before it renumbered, fails.
    old = _flip(ledger, anchor.position)
    result = _incremental(ledger, anchor)[0]
    assert not result.ok and "does not match the checkpoint" in (result.problem or ""), result.problem
    _restore(ledger, anchor.position, old)
    moved = dataclasses.replace(anchor, position=anchor.position - 1)
    result = verify_incremental(ledger.rt.ledger, moved, [], _key(ledger), ledger.rt.uow.position_of)
    assert not result.ok and "no longer at store position" in (result.problem or "")

    # Checkpoints after the anchor: linked to it, signed, matched against the log.
    newer = checkpoints_after(stored_newest_first(ledger.rt.ledger), anchor.checkpoint)
    assert newer
    forged = [dataclasses.replace(newer[0], time="2030-01-01T00:00:00Z"), *newer[1:]]
    result = verify_incremental(ledger.rt.ledger, anchor, forged, _key(ledger), ledger.rt.uow.position_of)
    assert not result.ok and "forged" in (result.problem or ""), result.problem
    result = verify_incremental(ledger.rt.ledger, anchor, newer[1:], _key(ledger), ledger.rt.uow.position_of)
    assert not result.ok and "does not follow the checkpoint verified before" in (result.problem or "") or not newer[1:]
    other = dataclasses.replace(anchor.checkpoint, signature="00" * 64)
    assert checkpoints_after(stored_newest_first(ledger.rt.ledger), other) is None
    assert _incremental(ledger, anchor)[0].ok  # everything restored


def _verify(args: list[str], ledger: Ledger) -> Any:
    return CliRunner().invoke(app, ["audit", "verify", "--data-dir", str(ledger.data_dir), *args])


def test_the_command_remembers_what_it_proved_in_the_operators_state_file(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "data", None)
    try:
        key_id = ledger.create_key()
        grow_history(ledger, key_id, 30, "one")
        ledger.rt.close()
        state = tmp_path / "operator" / "verified.json"
        state.parent.mkdir()
        first = _verify(["--incremental", "--state", str(state)], ledger)
        assert first.exit_code == 0 and first.output.startswith("OK: "), first.output  # no state yet: the whole log
        remembered = VerifiedAnchor.from_json(state.read_text())
        ledger.rt = ledger._build()
        assert remembered.checkpoint == stored_checkpoints(ledger.rt.ledger)[-1]
        grow_history(ledger, key_id, 10, "two")
        ledger.rt.close()
        second = _verify(["--incremental", "--state", str(state)], ledger)
        assert second.exit_code == 0 and second.output.startswith("OK (incremental): 11 records after seq "), second.output
        assert "not read again" in second.output
        assert VerifiedAnchor.from_json(state.read_text()).checkpoint.seq == remembered.checkpoint.seq + 11

        # The default state sits beside the checkpoint file; a damaged state is an error, never a silent full run.
        default = _verify(["--incremental"], ledger)
        assert default.exit_code == 0 and (ledger.data_dir / "audit-checkpoints.jsonl.verified").is_file()
        state.write_text("{not json")
        damaged = _verify(["--incremental", "--state", str(state)], ledger)
        assert damaged.exit_code == 2 and "cannot be used" in damaged.output, damaged.output
        # A state whose checkpoint the file does not hold: another ledger's, or replaced checkpoints.
        foreign = dataclasses.replace(remembered, checkpoint=dataclasses.replace(remembered.checkpoint,
                                                                                 signature="ab" * 64))
        state.write_text(foreign.to_json())
        replaced = _verify(["--incremental", "--state", str(state)], ledger)
        assert replaced.exit_code == 1 and "is not in" in replaced.output, replaced.output
        assert json.loads(state.read_text())["checkpoint"]["signature"] == "ab" * 64  # a failure changes nothing
    finally:
        ledger.close()


def test_the_checkpoint_file_is_read_backwards_across_blocks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from api import cli_audit_verify
    from domain.audit.chain import checkpoint_to_json, make_checkpoint

    private, checkpoints, previous = bytes(range(32)), [], None
    for seq in range(40):
        previous = make_checkpoint(private, seq, f"{seq:064x}", f"2026-12-06T00:00:{seq % 60:02d}Z", previous)
        checkpoints.append(previous)
    path = tmp_path / "checkpoints.jsonl"
    path.write_text("".join(checkpoint_to_json(c) + "\n" + ("\n" if c.seq % 7 == 0 else "") for c in checkpoints))
    for block in (16, 97, 1 << 16):  # lines split across blocks, blank lines, the whole file in one block
        monkeypatch.setattr(cli_audit_verify, "_BLOCK", block)
        assert list(cli_audit_verify._file_newest_first(path)) == checkpoints[::-1]
        assert checkpoints_after(cli_audit_verify._file_newest_first(path), checkpoints[30]) == checkpoints[31:]
