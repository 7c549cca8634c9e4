"""Decision 280: a serving process freezes the heap it started with out of the garbage collector's walks; an app
built by a test or a tool does not. Run through the app's real lifespan (ASGI), on a real runtime (SQLite file)."""
from __future__ import annotations

import asyncio
import gc
from pathlib import Path

import pytest

from api.http import create_app
from infrastructure.bootstrap import build_runtime
from infrastructure.settings import Settings


async def _started_and_stopped(app, while_started) -> None:
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
    gc.unfreeze()
    seen: list[int] = []
    try:
        runtime = build_runtime(Settings.load(data_dir=tmp_path / "data"))
        app = create_app(runtime, whole_process=whole_process)
        made_before_start: list[int] = [1]  # tracked by the collector until the heap is frozen
        walked: list[bool] = []

        def look() -> None:
            seen.append(gc.get_freeze_count())
            walked.append(any(found is made_before_start for found in gc.get_objects()))

        asyncio.run(_started_and_stopped(app, look))
        if whole_process:
            assert seen[0] > 10_000  # the modules, the service model, the runtime: everything start-up made
            assert walked == [False]  # out of every generation the collector walks
        else:
            assert seen == [0] and walked == [True]
    finally:
        gc.unfreeze()


def test_objects_made_after_the_freeze_are_still_collected(tmp_path: Path) -> None:
    """A reference cycle made while serving (a request's) is still found by the collector."""
    gc.unfreeze()
    try:
        runtime = build_runtime(Settings.load(data_dir=tmp_path / "data"))
        app = create_app(runtime, whole_process=True)
        found: list[int] = []

        def a_request_makes_a_cycle() -> None:
            cycle: list = []
            cycle.append(cycle)
            del cycle
            found.append(gc.collect())

        asyncio.run(_started_and_stopped(app, a_request_makes_a_cycle))
        assert found[0] >= 1
    finally:
        gc.unfreeze()
