"""Index-backed history answers equal the unindexed answers (issue 13), as a Hypothesis property over random
histories built through the services, on a real SQLite file and a real PostgreSQL schema: what an alias named at T
(by name, by key, every alias), and a key's timeline read in pages of any size against every event folded from the
event store with its actor found by reading the whole audit log."""
from __future__ import annotations

import uuid
from datetime import datetime
from pathlib import Path
from typing import Any, Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from application.audit.checkpoints import audit_records
from domain.audit.log import LEDGER_EVENTS
from domain.errors import KmsError, ValidationError
from domain.identifiers import alias_aggregate_id
from projections import replay
from tests.scale_support import ROOT, SCOPE, Ledger, ledger_backend  # noqa: F401 (a fixture)

NAMES = ("alias/a", "alias/b", "alias/c")
STEPS = st.lists(st.tuples(st.sampled_from(["create", "retarget", "delete", "tag", "disable", "enable", "key"]),
                           st.integers(0, 2), st.integers(0, 5), st.sampled_from([0, 0, 1, 30])),
                 min_size=1, max_size=8)


@pytest.fixture
def ledger(ledger_backend: tuple[Path, str | None]) -> Iterator[Ledger]:  # noqa: F811
    data_dir, url = ledger_backend
    instance = Ledger(data_dir, url)
    instance.keys = [instance.create_key() for _ in range(2)]  # type: ignore[attr-defined]
    instance.moments = [instance.now()]  # type: ignore[attr-defined]
    try:
        yield instance
    finally:
        instance.close()


def _step(ledger: Any, action: str, name: int, key: int, wait: int) -> None:
    keys, alias = ledger.keys, NAMES[name]
    target = keys[key % len(keys)]
    try:
        if action == "create":
            ledger.do("aliases.create_alias", alias, target)
        elif action == "retarget":
            ledger.do("aliases.update_alias", alias, target)
        elif action == "delete":
            ledger.do("aliases.delete_alias", alias)
        elif action == "tag":
            ledger.do("keys.tag_resource", target, {f"t{name}": str(wait)})
        elif action == "disable":
            ledger.do("keys.disable_key", target)
        elif action == "enable":
            ledger.do("keys.enable_key", target)
        elif action == "key":
            keys.append(ledger.create_key())
    except KmsError:
        pass  # a refused change (an alias that exists already, one that does not): still a history
    if wait:
        ledger.advance(wait)
    ledger.moments.append(ledger.now())


def _fold(ledger: Ledger, aggregate_id: uuid.UUID, at: datetime) -> Any:
    aggregate = None
    for event in ledger.rt.ledger.events.get(aggregate_id):
        if event.timestamp > at:
            break
        aggregate = event.mutate(aggregate)
    return aggregate


def _brute_aliases(ledger: Ledger, at: datetime) -> dict[tuple[str, str, str], str]:
    out = {}
    for name in NAMES:
        alias = _fold(ledger, alias_aggregate_id(SCOPE, name), at)
        if alias is not None and not alias.deleted:
            out[(SCOPE.account_id, SCOPE.region, name)] = alias.target_key_id
    return out


def _brute_timeline(ledger: Ledger, key_id: str) -> list[tuple[int, str, str | None, int | None]]:
    named = {}
    for record in audit_records(ledger.rt.ledger):
        for claim in record.get(LEDGER_EVENTS) or []:
            named[(claim["aggregate"], claim["version"])] = record
    out = []
    for event in ledger.rt.ledger.events.get(uuid.UUID(key_id)):
        record = named.get((key_id, event.originator_version), {})
        out.append((event.originator_version, type(event).__name__, (record.get("userIdentity") or {}).get("arn"),
                    record.get("seq")))
    return out


@settings(max_examples=8, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(steps=STEPS, page=st.integers(1, 7), probe=st.integers(0, 10**6))
def test_index_backed_answers_equal_brute_force(ledger: Any, steps: list[tuple[str, int, int, int]], page: int,
                                               probe: int) -> None:
    for step in steps:
        _step(ledger, *step)
    index = ledger.rt.history._index
    moments = ledger.moments
    for at in {moments[probe % len(moments)], moments[-1], moments[0]}:
        expected = _brute_aliases(ledger, at)
        assert index.alias_targets_at(at) == expected
        for name in NAMES:
            assert index.alias_target_at((SCOPE.account_id, SCOPE.region, name), at) == \
                expected.get((SCOPE.account_id, SCOPE.region, name))
        for key_id in ledger.keys:
            assert sorted(index.aliases_of_key_at(key_id, at)) == sorted(a for a, k in expected.items() if k == key_id)
            answer = ledger.rt.history.key_at(SCOPE, key_id, at) if _fold(ledger, uuid.UUID(key_id), at) else None
            if answer is not None:
                assert answer["Aliases"] == sorted(a[2] for a, k in expected.items() if k == key_id)
    for key_id in ledger.keys:
        pages, marker = [], None
        while True:
            got = ledger.rt.history.timeline_page(key_id, SCOPE, page, marker)
            assert len(got["Events"]) <= page
            pages.extend(got["Events"])
            if not got["Truncated"]:
                break
            marker = got["NextMarker"]
        assert [(e["Version"], e["EventType"], e["Actor"], e["AuditSeq"]) for e in pages] == \
            _brute_timeline(ledger, key_id)
        assert ledger.rt.history.timeline(key_id, SCOPE) == pages


def test_the_index_survives_a_rebuild_and_a_bad_marker_is_refused(ledger: Any) -> None:
    key_id = ledger.keys[0]
    ledger.do("aliases.create_alias", "alias/r", key_id)
    for n in range(5):
        ledger.do("keys.tag_resource", key_id, {"n": str(n)})
    before = ledger.rt.history.timeline(key_id, SCOPE)
    assert all(e["Actor"] == ROOT for e in before)
    engine = ledger.rt.ledger.recorder.datastore.engine
    replay.rebuild(ledger.rt.ledger, engine, "replay_")
    assert replay.compare(engine, "", "replay_") == []
    replay.drop_tables(engine, "replay_")
    with pytest.raises(ValidationError):
        ledger.rt.history.timeline_page(key_id, SCOPE, 10, "not-a-marker")
    with pytest.raises(ValidationError):
        ledger.rt.history.timeline_page(key_id, SCOPE, 0)


def test_a_database_from_before_the_indexes_is_rebuilt_at_start(ledger: Any) -> None:
    key_id = ledger.keys[0]
    ledger.do("aliases.create_alias", "alias/old", key_id)
    ledger.do("keys.tag_resource", key_id, {"a": "b"})
    at = ledger.now()
    before = ledger.rt.history.timeline(key_id, SCOPE)
    engine = ledger.rt.ledger.recorder.datastore.engine
    import sqlalchemy as sa

    with engine.begin() as conn:  # what an older release left: no alias index, no record seq in the key index
        conn.execute(sa.text("DROP TABLE alias_event_index"))
        conn.execute(sa.text("ALTER TABLE key_event_index DROP COLUMN audit_seq"))
    ledger.restart()
    assert ledger.rt.history.timeline(key_id, SCOPE) == before
    assert ledger.rt.history.key_at(SCOPE, "alias/old", at)["KeyMetadata"]["KeyId"] == key_id


def test_a_change_split_across_replay_pages_keeps_its_record(ledger: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from bench.scale import grow_key

    key_id = ledger.keys[0]
    grow_key(ledger.rt, key_id, 7)  # one change of seven events, one record naming them
    ledger.do("keys.tag_resource", key_id, {"after": "x"})
    from projections import replay_reading

    monkeypatch.setattr(replay_reading, "PAGE", 3)  # the change's events span three pages of the replay
    engine = ledger.rt.ledger.recorder.datastore.engine
    replay.rebuild(ledger.rt.ledger, engine, "replay_")
    assert replay.compare(engine, "", "replay_") == []
    replay.drop_tables(engine, "replay_")
