"""The serving loop's busy polling (api/busy_poll.py, decision 283): it polls for its window after each touch and
then lets the loop sleep, on asyncio's loop and on uvloop's, and a touch while it polls only moves the window."""
from __future__ import annotations

import asyncio
import socket
import time

import pytest
import uvloop

from api.busy_poll import BusyPoll
from infrastructure.settings import Settings

LOOPS = [asyncio.new_event_loop, uvloop.new_event_loop]


@pytest.mark.parametrize("new_loop", LOOPS, ids=["asyncio", "uvloop"])
def test_it_polls_for_its_window_after_a_touch_and_then_lets_the_loop_sleep(new_loop) -> None:
    loop = new_loop()
    try:
        poll = BusyPoll(0.05)

        async def touched() -> None:
            poll.touch()

        loop.run_until_complete(touched())
        assert poll.polling
        loop.run_until_complete(asyncio.sleep(0.02))
        assert poll.polling  # within the window
        loop.run_until_complete(asyncio.sleep(0.1))
        assert not poll.polling  # past it: nothing keeps the loop from sleeping
        # The loop then sleeps through a wait: a sleep of 0.1 s takes a handful of turns, not thousands.
        started = time.process_time()
        loop.run_until_complete(asyncio.sleep(0.1))
        assert time.process_time() - started < 0.05
    finally:
        loop.close()


@pytest.mark.parametrize("new_loop", LOOPS, ids=["asyncio", "uvloop"])
def test_a_touch_while_it_polls_moves_the_window_and_never_arms_a_second_poll(new_loop) -> None:
    loop = new_loop()
    try:
        poll = BusyPoll(0.03)
        pending, most = 0, 0
        original_call_soon, original_poll = loop.call_soon, poll._poll

        def counting_call_soon(callback, *args, **kwargs):
            nonlocal pending, most
            if callback == original_poll:
                pending += 1
                most = max(most, pending)
                callback = counted_poll
            return original_call_soon(callback, *args, **kwargs)

        def counted_poll() -> None:
            nonlocal pending
            pending -= 1
            original_poll()

        loop.call_soon = counting_call_soon  # type: ignore[method-assign]

        async def touch_often() -> None:
            for _ in range(5):
                poll.touch()
                await asyncio.sleep(0.01)

        loop.run_until_complete(touch_often())
        assert poll.polling  # 0.05 s after the first touch: the last one moved the window
        loop.run_until_complete(asyncio.sleep(0.06))
        assert not poll.polling and pending == 0
        assert most == 1  # one poll armed at a time, however many touches
    finally:
        loop.close()


@pytest.mark.parametrize("new_loop", LOOPS, ids=["asyncio", "uvloop"])
def test_a_loop_that_polls_still_runs_its_timers_and_sockets_on_time(new_loop) -> None:
    """Polling is one turn at a time: a timer due in 10 ms and bytes arriving on a socket are handled when they are
    due, not when the window ends (a poll that waited out its window in one callback would hold them 0.2 s)."""
    loop = new_loop()
    reader, writer = socket.socketpair()
    try:
        poll = BusyPoll(0.2)
        seen: dict[str, float] = {}

        def readable() -> None:
            reader.recv(16)
            seen["socket"] = time.monotonic()

        async def run() -> None:
            started = time.monotonic()
            poll.touch()
            loop.add_reader(reader.fileno(), readable)
            loop.call_later(0.01, lambda: seen.setdefault("timer", time.monotonic()))
            loop.call_later(0.02, writer.send, b"x")
            await asyncio.sleep(0.05)
            assert poll.polling  # still within the window
            seen["started"] = started

        loop.run_until_complete(run())
        assert seen["timer"] - seen["started"] < 0.04 and seen["socket"] - seen["started"] < 0.05, seen
    finally:
        reader.close()
        writer.close()
        loop.close()


@pytest.mark.parametrize("value, accepted", [("0", True), ("1000", True), ("100000", True), ("-1", False),
                                             ("100001", False)])
def test_the_window_is_bounded(value: str, accepted: bool) -> None:
    environ = {"KEYLEDGER_BUSY_POLL_MICROSECONDS": value}
    if accepted:
        assert Settings.load(environ, data_dir=None).busy_poll_microseconds == int(value)
    else:
        with pytest.raises(SystemExit, match="KEYLEDGER_BUSY_POLL_MICROSECONDS"):
            Settings.load(environ, data_dir=None)
