"""Request and event ids (application/audit/records.py: new_ids): random version 4 UUIDs, spelled as
str(uuid.uuid4()) spells them, never handed out twice, and never shared with a forked child."""
from __future__ import annotations

import uuid

from hypothesis import given, settings
from hypothesis import strategies as st

from application.audit.records import new_ids
from tests.draws import taken_at_once, taken_in_a_child


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
    childs = set(taken_in_a_child(lambda: new_ids(8)))
    assert len(childs) == 8
    assert not childs & set(new_ids(8))


def test_threads_taking_ids_at_once_never_get_the_same_one() -> None:
    every = taken_at_once(lambda: new_ids(2))
    assert len(every) == 24000 and len(set(every)) == 24000
