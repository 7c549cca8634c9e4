"""The append-only checkpoint file outside the database: one signed checkpoint per line.

Appending never reads the file, and the signer asks only for its last line (read backwards from the end),
so a checkpoint costs the same whether the file holds ten lines or a million (docs/audit.md)."""
from __future__ import annotations

import fcntl
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

_CHUNK = 4096


class CheckpointFile:
    def __init__(self, path: Path) -> None:
        self.path = path

    def append(self, line: str) -> None:
        self.append_all([line])

    def append_all(self, lines: list[str]) -> None:
        if not lines:
            return
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            os.write(fd, "".join(line + "\n" for line in lines).encode("utf-8"))
            os.fsync(fd)
        finally:
            os.close(fd)

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        """Held while the signer reads the last line and appends what follows it, so two processes repairing
        the file at once (a server's shutdown and an operator's `audit checkpoint`) never append a line twice."""
        fd = os.open(str(self.path) + ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing the descriptor releases the lock

    def last_line(self) -> str | None:
        """The last non-blank line, read from the end of the file (None when there is none)."""
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:
            return None
        try:
            end = os.lseek(fd, 0, os.SEEK_END)
            tail = b""
            position = end
            while position > 0:
                step = min(_CHUNK, position)
                position -= step
                tail = os.pread(fd, step, position) + tail
                stripped = tail.rstrip(b"\r\n\t ")
                cut = stripped.rfind(b"\n")
                if cut >= 0 or position == 0:
                    last = stripped[cut + 1:] if cut >= 0 else stripped
                    return last.decode("utf-8", errors="replace") if last.strip() else None
            return None
        finally:
            os.close(fd)

    def lines(self) -> list[str]:
        return [ln for ln in self.path.read_text(encoding="utf-8").splitlines() if ln.strip()] if self.path.exists() else []
