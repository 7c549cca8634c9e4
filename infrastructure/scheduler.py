"""Background passes inside the server: maintenance (rotation, deletion, expiry) and audit checkpoints."""
from __future__ import annotations

import threading
from typing import Any, Callable


class Periodic:
    """Calls ``fn`` every ``interval`` seconds on a daemon thread until stopped."""

    def __init__(self, name: str, fn: Callable[[], Any], interval: float, on_error: Callable[[Exception], None]) -> None:
        self._fn, self._interval, self._on_error = fn, interval, on_error
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

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
                self._fn()
            except Exception as exc:  # one bad pass must not stop later ones
                self._on_error(exc)
