"""Busy polling on a real `keyledger serve` (api/busy_poll.py, decision 283): the serving loop polls while calls come
and sleeps when they stop, and a server with polling off answers the same."""
from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tests.servers import Server

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User and system CPU time the process has used (its threads together), from /proc."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def burst(server: Server, calls: int) -> None:
    kms = server.client()
    key = kms.create_key()["KeyMetadata"]["KeyId"]

    def call(_: int) -> None:
        blob = kms.encrypt(KeyId=key, Plaintext=b"busy")["CiphertextBlob"]
        assert kms.decrypt(CiphertextBlob=blob)["Plaintext"] == b"busy"

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(call, range(calls)))


def test_the_serving_loop_sleeps_once_calls_stop(tmp_path: Path) -> None:
    server = Server(data_dir=tmp_path / "data").start()
    try:
        burst(server, 200)
        time.sleep(0.2)  # the window (a millisecond by default) is long over
        before = cpu_seconds(server.process.pid)
        time.sleep(2.0)
        idle = cpu_seconds(server.process.pid) - before
        # A loop that kept polling would take the two seconds whole; a sleeping one a few ticks (timers, the
        # background passes' threads).
        assert idle < 0.5, f"the serving process used {idle:.2f} s of CPU in 2 s without a call"
    finally:
        server.stop()


def test_a_server_with_polling_off_answers_the_same(tmp_path: Path) -> None:
    server = Server(data_dir=tmp_path / "data", env={"KEYLEDGER_BUSY_POLL_MICROSECONDS": "0"}).start()
    try:
        burst(server, 50)
    finally:
        server.stop()


def test_calls_now_and_then_keep_the_loop_polling_for_its_window(tmp_path: Path) -> None:
    """With a window of a tenth of a second, calls 50 ms apart keep the loop polling from the first to the last
    answer (a second of wall time, up to a second of CPU); with polling off the same calls take a few ticks."""
    used = {}
    for window in ("100000", "0"):
        server = Server(data_dir=tmp_path / window, env={"KEYLEDGER_BUSY_POLL_MICROSECONDS": window}).start()
        try:
            kms = server.client()
            key = kms.create_key()["KeyMetadata"]["KeyId"]
            time.sleep(0.3)
            before = cpu_seconds(server.process.pid)
            for _ in range(20):
                kms.encrypt(KeyId=key, Plaintext=b"now and then")
                time.sleep(0.05)
            used[window] = cpu_seconds(server.process.pid) - before
        finally:
            server.stop()
    # About a second against a few ticks on an idle machine; a third of a second with two other processes busy on
    # its two cores (a yielding poll gives them the core): a ratio, not a time, so a loaded machine does not fail it.
    assert used["100000"] > max(0.1, 4 * used["0"]), used
