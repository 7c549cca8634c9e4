"""A long-running process's start-up heap, moved out of the cyclic garbage collector's reach once it is built
(decision 280).

A serving process imports and builds hundreds of thousands of objects that live as long as it does: modules,
functions, botocore's service model, SQLAlchemy's tables, caches. The collector's oldest generation holds them all,
and every full collection walks every one of them again, to find nothing: on the request path that walk was about
one instruction in twenty (callgrind, GenerateDataKey). ``gc.freeze()`` moves them to a generation the collector
never visits. They are still freed by reference counting if dropped; only a reference cycle among them that is
dropped later is not collected, so what is garbage already is collected first. Objects made afterwards, such as
each request's, are collected as before, by a youngest generation ten times the interpreter's default: a call makes a
few hundred container objects, and collecting every 700 walked each in-flight call's objects again and again, where
every 7,000 walks them less often for at most a few thousand more objects waiting (1.5 % of a GenerateDataKey's
instructions; the older generations keep their thresholds)."""
from __future__ import annotations

import gc

YOUNGEST_GENERATION_THRESHOLD = 7000  # container allocations between collections of the youngest generation


def freeze_start_up_heap() -> None:
    """Once the process has built what it serves with, before it serves."""
    gc.collect()
    gc.freeze()
    _, middle, oldest = gc.get_threshold()
    gc.set_threshold(YOUNGEST_GENERATION_THRESHOLD, middle, oldest)
