"""The background passes (maintenance, checkpoint signing) run in one process per data directory."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from api.serve import BackgroundLock

ROOT = Path(__file__).resolve().parents[2]


def _held_by_another_process(path: Path) -> bool:
    code = ("import sys; sys.path.insert(0, sys.argv[1]); from pathlib import Path; "
            "from api.serve import BackgroundLock; print(BackgroundLock(Path(sys.argv[2])).held())")
    out = subprocess.run([sys.executable, "-c", code, str(ROOT), str(path)], capture_output=True, text=True,
                         check=True)
    return out.stdout.strip() == "False"


def test_every_pass_of_the_holding_process_runs(tmp_path: Path) -> None:
    lock = BackgroundLock(tmp_path / "background.lock")
    ran: list[str] = []
    maintenance = lock.only_holder(lambda: ran.append("maintenance"))
    checkpoints = lock.only_holder(lambda: ran.append("checkpoints"))
    maintenance()
    checkpoints()
    maintenance()
    assert ran == ["maintenance", "checkpoints", "maintenance"]


def test_another_process_waits_until_the_holder_is_gone(tmp_path: Path) -> None:
    path = tmp_path / "background.lock"
    assert not _held_by_another_process(path)  # free: the other process takes it (and exits, releasing it)
    lock = BackgroundLock(path)
    assert lock.held()
    assert _held_by_another_process(path)
