"""Decision 280: a serving process freezes the heap it started with out of the garbage collector's walks and collects
its youngest generation less often; an app built by a test or a tool does neither. Run through the app's real
lifespan (ASGI), on a real runtime (SQLite file)."""
from __future__ import annotations

import asyncio
import gc
from pathlib import Path
from typing import Callable

import pytest

from api.http import create_app
from infrastructure.bootstrap import build_runtime
from infrastructure.long_lived_heap import YOUNGEST_GENERATION_THRESHOLD
from infrastructure.settings import Settings


@pytest.fixture(autouse=True)
def _collector_as_it_was():
    """The collector is the process's: this module leaves it as it found it, for the tests that follow."""
    thresholds = gc.get_threshold()
    gc.unfreeze()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


async def _started_and_stopped(app, while_started: Callable[[], None]) -> None:
    inbox: asyncio.Queue = asyncio.Queue()
    outbox: asyncio.Queue = asyncio.Queue()
    await inbox.put({"type": "lifespan.startup"})

    async def send(message) -> None:
        await outbox.put(message)

    lifespan = asyncio.create_task(app({"type": "lifespan", "asgi": {"version": "3.0"}}, inbox.get, send))
    assert (await outbox.get())["type"] == "lifespan.startup.complete"
    while_started()
    await inbox.put({"type": "lifespan.shutdown"})
    assert (await outbox.get())["type"] == "lifespan.shutdown.complete"
    await lifespan


@pytest.mark.parametrize("whole_process", [True, False], ids=["serving-process", "test-or-tool"])
def test_only_a_serving_process_freezes_its_start_up_heap(tmp_path: Path, whole_process: bool) -> None:
    runtime = build_runtime(Settings.load(data_dir=tmp_path / "data"))
    app = create_app(runtime, whole_process=whole_process)
    made_before_start: list[int] = [1]  # tracked by the collector until the heap is frozen
    before = gc.get_threshold()
    seen: list[tuple[int, bool, tuple[int, int, int]]] = []

    def look() -> None:
        seen.append((gc.get_freeze_count(), any(found is made_before_start for found in gc.get_objects()),
                     gc.get_threshold()))

    asyncio.run(_started_and_stopped(app, look))
    frozen, walked, thresholds = seen[0]
    if whole_process:
        assert frozen > 10_000  # the modules, the service model, the runtime: everything start-up made
        assert not walked  # out of every generation the collector walks
        assert thresholds == (YOUNGEST_GENERATION_THRESHOLD, *before[1:])
    else:
        assert (frozen, walked, thresholds) == (0, True, before)


def test_objects_made_after_the_freeze_are_still_collected(tmp_path: Path) -> None:
    """A reference cycle made while serving (a request's) is still found by the collector."""
    app = create_app(build_runtime(Settings.load(data_dir=tmp_path / "data")), whole_process=True)
    found: list[int] = []

    def a_request_makes_a_cycle() -> None:
        cycle: list = []
        cycle.append(cycle)
        del cycle
        found.append(gc.collect())

    asyncio.run(_started_and_stopped(app, a_request_makes_a_cycle))
    assert found[0] >= 1
