"""Busy polling (decision 283): after each KMS call starts and after it is answered, the serving process's event
loop keeps polling its sockets for a short window instead of sleeping in ``epoll_wait``.

Why: a call's life is a chain of short waits, each on another process (the audit committer's durable commit, the
client's next request). A loop that sleeps through each of them gives its core away, and the kernel must then wake
it and find it a core again: on two cores shared with the committer and the load, that was 2,100-2,400 wake-ups a
second at 16 connections, each about 60 us before the loop ran again, and 13-15 % of the loop's time spent
runnable but not running (docs/performance.md, sessions 13 and 15). Polling keeps the core: the next socket event
is handled the moment it lands. Linux's own ``SO_BUSY_POLL`` and Go's spinning scheduler threads do the same for
the same reason.

Each poll first offers the core to any other process waiting for it (``sched_yield``): the processes a call waits on
(the committer; on PostgreSQL the database's own, on the same machine) must not wait behind the loop that waits for
them. Without the yield, polling paid on SQLite and lost at 16 connections on PostgreSQL (decision 283).

What it costs: CPU while calls keep coming, none when they stop. The window runs from the latest call's start or
answer, so a server that nobody calls sleeps as before, one that is called now and then polls for a window after
each call, and a loaded one (whose loop is busy nearly all the time anyway) never sleeps. Polling is one loop
turn with a zero timeout and one callback of a few attributes; the loop's other work (connections, timers, the
committer's answers) runs between polls as it would after a wake-up. Threads of the process (background passes,
FastAPI's thread pool) still get the GIL: uvloop releases it for every turn.

``KEYLEDGER_BUSY_POLL_MICROSECONDS`` sets the window; 0 turns polling off (a process that must not hold a core
between calls, such as one with a tight CPU quota).
"""
from __future__ import annotations

import asyncio
import os
from time import monotonic

sched_yield = getattr(os, "sched_yield", lambda: None)  # Unix; elsewhere a poll only polls


class BusyPoll:
    """Keeps the running event loop from sleeping until ``window_seconds`` after the latest ``touch``."""

    __slots__ = ("_window", "_until", "_loop", "polling")

    def __init__(self, window_seconds: float) -> None:
        self._window = window_seconds
        self._until = 0.0
        self._loop: asyncio.AbstractEventLoop | None = None
        self.polling = False

    def touch(self) -> None:
        """A call started or was answered: poll until a window from now. Called on the loop's thread."""
        self._until = monotonic() + self._window
        if not self.polling:
            self.polling = True
            if self._loop is None:
                self._loop = asyncio.get_running_loop()
            self._loop.call_soon(self._poll)

    def _poll(self) -> None:
        # A callback ready to run makes the loop's next turn poll with a zero timeout instead of waiting; this one
        # puts itself back until the window ends, and then lets the loop sleep.
        if monotonic() < self._until:
            sched_yield()  # a process that can run on this core now runs first; none: back at once
            self._loop.call_soon(self._poll)  # type: ignore[union-attr]
        else:
            self.polling = False
