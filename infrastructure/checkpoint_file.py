"""The append-only checkpoint file outside the database: one signed checkpoint per line."""
from __future__ import annotations

import os
from pathlib import Path


class CheckpointFile:
    def __init__(self, path: Path) -> None:
        self.path = path

    def append(self, line: str) -> None:
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            os.write(fd, (line + "\n").encode("utf-8"))
            os.fsync(fd)
        finally:
            os.close(fd)

    def lines(self) -> list[str]:
        return [ln for ln in self.path.read_text(encoding="utf-8").splitlines() if ln.strip()] if self.path.exists() else []
