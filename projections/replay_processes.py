"""A command-line replay in several processes (decision 261): this one and forked children, each replaying its share
of the aggregates into its own staging file (projections/replay_staging.py), the parent copying them all. Only a
command-line process forks, never a server's."""
from __future__ import annotations

import gc
import os
import pickle
import signal
from typing import Any, Callable

import sqlalchemy as sa

from projections.replay_staging import staging_database

# A smaller log replays in less time than forking and starting the other processes' reading takes.
PROCESSES_FROM_POSITIONS = 20_000


_SUMMED = ("events", "keys", "aliases", "principals", "decoded_fast")


def replay_in_processes(ledger: Any, directory: str, stats: Any, progress: Any, workers: int,
                        share: Callable[[sa.Engine, Any, Any, int], None],
                        fresh_stats: Callable[[], Any]) -> list[sa.Engine] | None:
    """Replays with ``workers`` processes: this one and ``workers - 1`` forked children, each the aggregates
    ``share`` replays for it (decision 261), each into its own staging file in ``directory``. A child hands back only
    its counts; its rows stay in its file, which the parent copies from (not a record at a time through a pipe:
    decision 242). Returns the staging databases, or None when any process failed: the caller then replays in
    this process alone, which raises the first error in store order exactly as before (a share may meet a later
    damaged row first).

    Fork is only for a command-line process: the event store's engine is disposed first, so no pooled connection
    is shared, and each child opens its own."""
    engine = ledger.recorder.datastore.engine
    engine.dispose()
    # Every object so far out of the collector's reach until the children are done: a collection would write into
    # each object's header and so copy every page the fork shares (about 7 % of each process's CPU, measured).
    gc.freeze()
    try:
        return _fork_and_replay(engine, directory, stats, progress, workers, share, fresh_stats)
    finally:
        gc.unfreeze()


def _fork_and_replay(engine: sa.Engine, directory: str, stats: Any, progress: Any, workers: int,
                     share: Callable[[sa.Engine, Any, Any, int], None],
                     fresh_stats: Callable[[], Any]) -> list[sa.Engine] | None:
    children: list[tuple[int, int]] = []
    for index in range(1, workers):
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: replay its share, say what it did, leave without running the parent's exits
            status = 1
            try:
                os.close(read_end)
                engine.dispose(close=False)  # nothing pooled should be here; if it is, it stays the parent's
                own = staging_database(os.path.join(directory, f"staging-{index}.db"))
                mine = fresh_stats()
                share(own, mine, None, index)
                own.dispose()
                with os.fdopen(write_end, "wb") as out:
                    out.write(pickle.dumps({name: getattr(mine, name) for name in _SUMMED}))
                status = 0
            finally:
                os._exit(status)
        os.close(write_end)
        children.append((pid, read_end))
    stagings = [staging_database(os.path.join(directory, "staging-0.db"))]
    failed = False
    try:
        share(stagings[0], stats, progress, 0)
    except Exception:
        failed = True
    except BaseException:  # interrupted: the children are stopped and reaped, not left running
        for pid, read_end in children:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            os.close(read_end)
        raise
    for index, (pid, read_end) in enumerate(children, start=1):
        with os.fdopen(read_end, "rb") as source:
            payload = source.read()
        _, status = os.waitpid(pid, 0)
        if status != 0 or not payload:
            failed = True
            continue
        for name, value in pickle.loads(payload).items():  # our own child's counts, through our own pipe
            setattr(stats, name, getattr(stats, name) + value)
        stagings.append(staging_database(os.path.join(directory, f"staging-{index}.db")))
    if failed:
        for staging in stagings:
            staging.dispose()
        return None
    return stagings
