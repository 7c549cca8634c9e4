"""A small cache whose entries expire: what bounds how long another process's change takes to show here.

A change made in this process drops the entries it touched after it commits (``drop``), so a process
always sees its own changes at once; a change made by another process shows within ``ttl`` seconds.
"""
from __future__ import annotations

import threading
import time
from typing import Callable, Generic, Hashable, TypeVar

V = TypeVar("V")
_MAX_ENTRIES = 100_000


class TtlCache(Generic[V]):
    def __init__(self, ttl: float, clock: Callable[[], float] = time.monotonic) -> None:
        """``clock``: seconds from a monotonic source (tests move their own)."""
        self._ttl = ttl
        self._clock = clock
        self._entries: dict[Hashable, tuple[float, V]] = {}
        self._lock = threading.Lock()
        self._drops = 0  # a load that raced with a drop must not store what it read before the change

    def get(self, key: Hashable, load: Callable[[], V]) -> V:
        if self._ttl <= 0:
            return load()
        hit = self._entries.get(key)
        if hit is not None and hit[0] > self._clock():
            return hit[1]
        drops = self._drops
        value = load()
        with self._lock:
            if drops != self._drops:
                return value
            if len(self._entries) >= _MAX_ENTRIES:  # bounded: many unknown keys must not grow it forever
                self._entries.clear()
            self._entries[key] = (self._clock() + self._ttl, value)
        return value

    def drop(self, key: Hashable) -> None:
        with self._lock:
            self._drops += 1
            self._entries.pop(key, None)
