"""Runs the maintenance pass (rotation, deletion, expiry) in the server on an interval."""
from __future__ import annotations

import logging
import threading

from application.maintenance import Maintenance

log = logging.getLogger("keyledger.maintenance")


class MaintenanceScheduler:
    def __init__(self, maintenance: Maintenance, interval_seconds: float) -> None:
        self._maintenance = maintenance
        self._interval = interval_seconds
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="keyledger-maintenance", daemon=True)

    def start(self) -> None:
        if self._interval > 0:
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                report = self._maintenance.run_once()
                if report.rotated or report.deleted or report.expired:
                    log.info("maintenance: rotated %d, deleted %d, expired %d keys",
                             len(report.rotated), len(report.deleted), len(report.expired))
            except Exception:
                # One bad pass must not stop future ones; the next pass retries what is still due.
                log.exception("maintenance pass failed")
