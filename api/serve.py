"""Building the server process: the app with its background passes, in one process or in each of
``KEYLEDGER_WORKERS`` uvicorn worker processes sharing the listening socket and the database."""
from __future__ import annotations

import fcntl
import logging
import os
from pathlib import Path
from typing import Any, Callable

from api.http import KmsEndpoint, create_app
from infrastructure.bootstrap import Runtime, build_runtime
from infrastructure.scheduler import Periodic
from infrastructure.settings import Settings

BACKGROUND_LOCK = "background.lock"


class OneProcessAtATime:
    """Runs ``fn`` only in the process holding an exclusive lock on ``path`` (taken at the first call that
    finds it free, kept for the life of the process, released by the OS when the process ends). Servers
    sharing a data directory, worker processes in particular, so run the background passes once, not once
    each; if the holder dies, another process takes over at its next tick."""

    def __init__(self, path: Path, fn: Callable[[], Any]) -> None:
        self._path, self._fn = path, fn
        self._fd: int | None = None

    def __call__(self) -> Any:
        if self._fd is None:
            fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                return None
            self._fd = fd
        return self._fn()


def background_passes(runtime: Runtime) -> list[Periodic]:
    if runtime.services is None:
        return []
    settings, services = runtime.settings, runtime.services
    log = logging.getLogger("keyledger.background")
    lock = settings.data_dir / BACKGROUND_LOCK
    return [
        Periodic("keyledger-maintenance", OneProcessAtATime(lock, services.maintenance.run_once),
                 settings.maintenance_interval, lambda exc: log.exception("maintenance pass failed", exc_info=exc)),
        Periodic("keyledger-checkpoints", OneProcessAtATime(lock, services.checkpointer.checkpoint_if_due),
                 min(1.0, settings.audit_checkpoint_seconds),
                 lambda exc: log.exception("audit checkpoint failed", exc_info=exc)),
    ]


def worker_app() -> KmsEndpoint:
    """uvicorn's app factory in each worker process (``KEYLEDGER_WORKERS`` > 1). Settings come from the
    environment, which `keyledger serve` completed with its flags before starting the workers; first-start
    work (root key, administrator key) was done once, by `keyledger serve`, before any worker started."""
    runtime = build_runtime(Settings.load())
    return create_app(runtime, background_passes(runtime))
