"""Request and event ids (application/audit/records.py: new_ids): random version 4 UUIDs, spelled as
str(uuid.uuid4()) spells them, never handed out twice, and never shared with a forked child."""
from __future__ import annotations

import os
import threading
import uuid

from hypothesis import given, settings
from hypothesis import strategies as st

from application.audit.records import new_ids


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=600), min_size=1, max_size=6))
def test_ids_are_version_4_uuids_spelled_as_uuid4_and_never_repeated(counts: list[int]) -> None:
    taken = [found for count in counts for found in new_ids(count)]
    assert len(taken) == sum(counts)
    assert len(set(taken)) == len(taken)
    for text in taken:
        parsed = uuid.UUID(text)
        assert str(parsed) == text
        assert parsed.version == 4 and parsed.variant == uuid.RFC_4122


def test_a_forked_child_does_not_hand_out_its_parents_ids() -> None:
    new_ids(1)  # the pool now holds ids made in this process
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the child
        os.close(read)
        os.write(write, "\n".join(new_ids(8)).encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        childs = set(pipe.read().split("\n"))
    os.waitpid(child, 0)
    assert not childs & set(new_ids(8))


def test_threads_taking_ids_at_once_never_get_the_same_one() -> None:
    results: list[list[str]] = [[] for _ in range(8)]
    start = threading.Barrier(8)

    def take(out: list[str]) -> None:
        start.wait()
        for _ in range(1500):
            out.extend(new_ids(2))

    threads = [threading.Thread(target=take, args=(out,)) for out in results]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    every = [found for out in results for found in out]
    assert len(every) == 24000 and len(set(every)) == 24000
