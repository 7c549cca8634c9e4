"""TtlCache: what bounds how long another process's change takes to show here, on a clock the test moves."""
from application.ttl_cache import TtlCache


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_an_entry_answers_until_its_ttl_then_is_read_again() -> None:
    clock, stored = Clock(), ["old"]
    cache: TtlCache[str] = TtlCache(1.0, clock)
    assert cache.get("k", lambda: stored[0]) == "old"
    stored[0] = "new"  # another process changed it
    clock.now += 0.999
    assert cache.get("k", lambda: stored[0]) == "old"
    clock.now += 0.002  # past the TTL: the change shows
    assert cache.get("k", lambda: stored[0]) == "new"


def test_a_local_change_drops_the_entry_at_once() -> None:
    clock, stored = Clock(), ["old"]
    cache: TtlCache[str] = TtlCache(1.0, clock)
    cache.get("k", lambda: stored[0])
    stored[0] = "new"
    cache.drop("k")
    assert cache.get("k", lambda: stored[0]) == "new"


def test_no_ttl_means_no_caching() -> None:
    stored = ["old"]
    cache: TtlCache[str] = TtlCache(0, Clock())
    cache.get("k", lambda: stored[0])
    stored[0] = "new"
    assert cache.get("k", lambda: stored[0]) == "new"
