"""How many processes a command-line job that forks one per core may start (`audit verify --jobs`, `replay --jobs`)."""
from __future__ import annotations

import os

MAX_PROCESSES = 8  # past this, the database's page reads and the parent's joining, not the cores, set the pace


def usable_cores(at_most: int = MAX_PROCESSES) -> int:
    """The cores this process may run on (its CPU affinity), at most ``at_most``."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    return max(1, min(cores, at_most))
