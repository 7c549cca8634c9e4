"""Building the server process: the app with its background passes, in one process or in each of
``KEYLEDGER_WORKERS`` uvicorn worker processes sharing the listening socket and the database."""
from __future__ import annotations

import fcntl
import logging
import os
import socket
import threading
from pathlib import Path
from typing import Any, Callable

from api.http import KmsEndpoint, create_app
from infrastructure.bootstrap import Runtime, build_runtime, start_serving
from infrastructure.scheduler import Periodic
from infrastructure.settings import Settings

BACKGROUND_LOCK = "background.lock"


class BackgroundLock:
    """An exclusive lock on ``path`` that one process at a time holds: taken at the first ``held()`` that finds
    it free, kept for the life of the process, released by the OS when the process ends. Servers sharing a data
    directory, worker processes in particular, so run the background passes once, not once each; if the holder
    dies, another process takes over at its next pass. One instance per process: flock belongs to the open
    file, so a second open of the same file in the same process would be refused too."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._fd: int | None = None
        self._mutex = threading.Lock()

    def held(self) -> bool:
        with self._mutex:
            if self._fd is None:
                fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o600)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    os.close(fd)
                    return False
                self._fd = fd
                # Who holds it, for `keyledger status` (the lock itself is the flock, not this text).
                os.ftruncate(fd, 0)
                os.pwrite(fd, f"{os.getpid()} {socket.gethostname()}\n".encode(), 0)
            return True

    def only_holder(self, fn: Callable[[], Any]) -> Callable[[], Any]:
        return lambda: fn() if self.held() else None


def background_passes(runtime: Runtime) -> list[Periodic]:
    log = logging.getLogger("keyledger.background")
    # Every process aggregates its own failed-authentication records, sealed or not: each writes its summaries.
    summaries = Periodic("keyledger-unauthenticated-summaries", runtime.flush_unauthenticated,
                         min(1.0, runtime.settings.audit_unauthenticated_window_seconds),
                         lambda exc: log.exception("the failed-authentication summary could not be written",
                                                   exc_info=exc))
    if runtime.services is None:
        return [summaries]
    settings, services = runtime.settings, runtime.services
    lock = BackgroundLock(settings.data_dir / BACKGROUND_LOCK)
    return [
        summaries,
        Periodic("keyledger-maintenance", lock.only_holder(services.maintenance.run_once),
                 settings.maintenance_interval, lambda exc: log.exception("maintenance pass failed", exc_info=exc)),
        Periodic("keyledger-checkpoints", lock.only_holder(services.checkpointer.checkpoint_if_due),
                 min(1.0, settings.audit_checkpoint_seconds),
                 lambda exc: log.exception("audit checkpoint failed", exc_info=exc)),
        # GetKeyLastUsage catches the index up itself; this keeps what a call has to catch up small.
        *([Periodic("keyledger-key-usage", lock.only_holder(services.last_usage.catch_up), settings.maintenance_interval,
                    lambda exc: log.exception("key usage index pass failed", exc_info=exc))]
          if services.last_usage is not None else []),
    ]


def worker_app() -> KmsEndpoint:
    """uvicorn's app factory in each worker process (``KEYLEDGER_WORKERS`` > 1). Settings come from the
    environment, which `keyledger serve` completed with its flags before starting the workers; first-start
    work (root key, administrator key) was done once, by `keyledger serve`, before any worker started."""
    runtime = build_runtime(Settings.load())
    start_serving(runtime)
    return create_app(runtime, background_passes(runtime))
