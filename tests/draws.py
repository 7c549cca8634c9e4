"""Taking values from a per-process pool (random bytes, ids) the ways that could hand one out twice: from several
threads at once, and in a forked child beside its parent."""
from __future__ import annotations

import os
import pickle
import threading
from typing import Any, Callable


def taken_at_once(take: Callable[[], list[Any]], threads: int = 8, rounds: int = 1500) -> list[Any]:
    """Everything ``take`` returned, called ``rounds`` times in each of ``threads`` threads started together."""
    results: list[list[Any]] = [[] for _ in range(threads)]
    start = threading.Barrier(threads)

    def run(out: list[Any]) -> None:
        start.wait()
        for _ in range(rounds):
            out.extend(take())

    started = [threading.Thread(target=run, args=(out,)) for out in results]
    for thread in started:
        thread.start()
    for thread in started:
        thread.join()
    return [value for out in results for value in out]


def taken_in_a_child(take: Callable[[], list[Any]]) -> list[Any]:
    """What ``take`` returns in a child forked from this process now (its values sent back through a pipe)."""
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the child
        os.close(read)
        os.write(write, pickle.dumps(take()))
        os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        data = pipe.read()
    os.waitpid(child, 0)
    return pickle.loads(data)
