"""Point-in-time key state and projection replay on a real SQLite file built by build_runtime: services
driven directly with the authenticated Call the request pipeline would make, the service clock moved with
the clock service; answers checked against a brute-force fold of the stored events."""
from __future__ import annotations

import tempfile
import uuid
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Iterator

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from application.history.point_in_time import PointInTime
from application.writer import LedgerWriter
from domain.errors import InternalError, KmsError, NotFoundError, ValidationError
from domain.identifiers import Scope, alias_aggregate_id
from infrastructure.bootstrap import Runtime, build_runtime
from infrastructure.settings import Settings
from projections import replay
from projections.key_event_index import SqlKeyEventIndex
from projections.key_state_view import SqlKeyStateView
from tests.calls import api_call

SCOPE = Scope("111122223333", "us-east-1")
OTHER = Scope("111122223333", "eu-west-1")
ALICE = "arn:aws:iam::111122223333:root"  # the default key policy allows its account's root
DAY = 86400.0
ALIAS_NAMES = ("alias/a0", "alias/a1")  # the names the property test uses


class World:  # one data directory: its runtime, audited calls, a movable clock
    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.rt: Runtime = build_runtime(Settings.load(environ={}, data_dir=data_dir))
        self.engine: sa.Engine = self.rt.ledger.recorder.datastore.engine

    def restart(self) -> None:
        self.rt.close()
        self.__init__(self.data_dir)  # type: ignore[misc]

    @property
    def history(self) -> PointInTime:
        return PointInTime(self.rt.ledger, SqlKeyEventIndex(self.rt.uow), self.rt.clock)

    def now(self) -> datetime:
        return self.rt.now()

    def advance(self, seconds: float) -> None:
        self.rt.clock_service.advance(seconds)

    def mark(self, then_advance: float) -> datetime:  # now, to ask about later; then the clock moves on
        moment = self.now()
        self.advance(then_advance)
        return moment

    def maintain(self) -> Any:
        return self.rt.services.maintenance.run_once()

    def do(self, method: str, *args: Any, scope: Scope = SCOPE, **kwargs: Any) -> Any:
        service, operation = method.split(".")
        fn = getattr(getattr(self.rt.services, service), operation)
        call = api_call("".join(p.title() for p in operation.split("_")), f"arn:aws:iam::{scope.account_id}:root",
                        scope, at=self.now())
        return fn(call, *args, **kwargs)

    def create_key(self, scope: Scope = SCOPE, **kwargs: Any) -> str:
        return self.do("keys.create_key", scope=scope, **kwargs)["KeyMetadata"]["KeyId"]

    def __enter__(self) -> World:
        return self

    def __exit__(self, *exc: object) -> None:
        self.rt.close()


@pytest.fixture
def w(tmp_path: Path) -> Iterator[World]:
    with World(tmp_path) as instance:
        yield instance


def fold(w: World, aggregate_id: uuid.UUID, at: datetime) -> Any:
    aggregate = None
    for event in w.rt.ledger.events.get(aggregate_id):
        if event.timestamp > at:
            break
        aggregate = event.mutate(aggregate)
    return aggregate


def assert_matches_brute_force(w: World, key_id: str, at: datetime) -> None:
    key = fold(w, uuid.UUID(key_id), at)
    if key is None:
        with pytest.raises(NotFoundError, match="did not exist at"):
            w.history.key_at(SCOPE, key_id, at)
        return
    aliases = [a.alias_name for a in (fold(w, alias_aggregate_id(SCOPE, n), at) for n in ALIAS_NAMES)
               if a is not None and not a.deleted and a.target_key_id == key_id]
    expected = {"KeyMetadata": key.metadata(), "Aliases": aliases, "Policy": key.policy, "Grants": key.grant_entries(),
                "Tags": [{"TagKey": k, "TagValue": v} for k, v in sorted(key.tags.items())],
                "KeyRotationEnabled": key.rotation_enabled, "Version": key.version,
                "NextRotationDate": key.next_rotation_date if key.rotation_enabled else None}
    answer = w.history.key_at(SCOPE, key_id, at)
    assert {k: answer[k] for k in expected} == expected, f"key {key_id} at {at}"


def assert_replay_equal(w: World) -> None:
    assert replay.rebuild(w.rt.ledger, w.engine, "replay_").events > 0
    assert replay.compare(w.engine, "", "replay_") == []


def past_differences(w: World, rebuilt_at: datetime, answers_at: datetime) -> list[str]:
    """The world rebuilt as of ``rebuilt_at`` against the point-in-time answers for ``answers_at``."""
    target = f"sqlite:///{w.data_dir / 'past.db'}"
    assert replay.rebuild_until(w.rt.ledger, rebuilt_at, target).as_of == rebuilt_at
    engine = sa.create_engine(target)
    try:
        return replay.differences_from_answers(engine, w.history.keys_at(answers_at))
    finally:
        engine.dispose()


def test_key_at_answers_what_describe_key_answered_then(w: World) -> None:
    key_id = w.create_key(description="first", tags={"team": "a"})
    described_then = w.do("keys.describe_key", key_id)["KeyMetadata"]
    t_created = w.mark(60)
    w.do("keys.tag_resource", key_id, {"env": "prod"})
    w.do("rotation.enable_key_rotation", key_id, 90)
    w.do("keys.disable_key", key_id)
    w.do("aliases.create_alias", "alias/payments", key_id)
    t_configured = w.mark(60)
    w.do("keys.schedule_key_deletion", key_id, 7)
    t_pending = w.mark(8 * DAY)
    assert w.maintain().deleted == [key_id]
    then = w.history.key_at(SCOPE, key_id, t_created)
    assert then["KeyMetadata"] == described_then
    assert (then["Tags"], then["Aliases"], then["KeyRotationEnabled"]) == ([{"TagKey": "team", "TagValue": "a"}], [], False)
    configured = w.history.key_at(SCOPE, key_id, t_configured)
    assert (configured["KeyMetadata"]["KeyState"], configured["Aliases"], configured["KeyRotationEnabled"],
            configured["RotationPeriodInDays"]) == ("Disabled", ["alias/payments"], True, 90)
    assert configured["NextRotationDate"] is not None and {t["TagKey"] for t in configured["Tags"]} == {"team", "env"}
    assert configured["CurrentKeyMaterialId"] == described_then["CurrentKeyMaterialId"]
    assert w.history.key_at(SCOPE, key_id, t_pending)["KeyMetadata"]["KeyState"] == "PendingDeletion"
    gone = w.history.key_at(SCOPE, key_id, w.now())
    assert gone["KeyMetadata"]["KeyState"] == "Deleted" and gone["Aliases"] == []  # deleted with the key
    assert w.history.key_at(SCOPE, "alias/payments", t_configured)["KeyMetadata"]["KeyId"] == key_id
    assert_replay_equal(w)


def test_refusals_before_creation_in_the_future_and_out_of_scope(w: World) -> None:
    before = w.mark(5)
    key_id = w.create_key()
    arn, later = SCOPE.key_arn(key_id), w.now() + timedelta(minutes=1)
    for scope, ref, at, error, message in [
            (SCOPE, key_id, before, NotFoundError, f"Key {arn} did not exist at "),
            (SCOPE, key_id, later, ValidationError, "is in the future"),
            (OTHER, key_id, w.now(), NotFoundError, "does not exist"),
            (SCOPE, str(uuid.uuid4()), w.now(), NotFoundError, "does not exist"),
            (SCOPE, "alias/never", w.now(), NotFoundError, "alias/never did not exist")]:
        with pytest.raises(error, match=message):
            w.history.key_at(scope, ref, at)
    with pytest.raises(ValidationError):
        w.history.keys_at(later)
    assert w.history.key_at(("111122223333", "us-east-1"), arn, w.now())["KeyMetadata"]["Arn"] == arn
    assert w.history.key_at(None, arn, w.now())["KeyMetadata"]["KeyId"] == key_id


def test_keys_at_filters_and_an_alias_follows_its_target_through_time(w: World) -> None:
    t0 = w.now()
    first, second, other = w.create_key(), w.create_key(), w.create_key(OTHER)
    hmac = w.create_key(key_spec="HMAC_256", key_usage="GENERATE_VERIFY_MAC")
    ids = lambda answers: sorted(x["KeyMetadata"]["KeyId"] for x in answers)  # noqa: E731
    assert w.history.keys_at(t0) == [] and ids(w.history.keys_at(w.now())) == sorted([first, second, other, hmac])
    assert ids(w.history.keys_at(w.now(), region="eu-west-1")) == [other]
    assert ids(w.history.keys_at(w.now(), account_id="999999999999", region="us-east-1")) == []
    assert ids(w.history.keys_at(w.now(), key_spec="HMAC_256")) == [hmac]
    w.do("aliases.create_alias", "alias/moving", first)
    t_first = w.mark(10)
    w.do("aliases.update_alias", "alias/moving", second)
    t_second = w.mark(10)
    w.do("aliases.delete_alias", "alias/moving")
    t_gone = w.mark(10)
    w.do("aliases.create_alias", "alias/moving", first)  # the same name again: Recreated
    assert w.history.key_at(SCOPE, "alias/moving", t_first)["KeyMetadata"]["KeyId"] == first
    assert w.history.key_at(SCOPE, "alias/moving", t_second)["KeyMetadata"]["KeyId"] == second
    with pytest.raises(NotFoundError):
        w.history.key_at(SCOPE, "alias/moving", t_gone)
    assert w.history.key_at(SCOPE, "alias/moving", w.now())["KeyMetadata"]["KeyId"] == first
    assert [a["KeyMetadata"]["KeyId"] for a in w.history.keys_at(t_second, alias="alias/moving")] == [second]
    assert w.history.keys_at(t_gone, alias="alias/moving") == []
    w.do("keys.disable_key", first)
    assert ids(w.history.keys_at(t_gone, state="Disabled")) == []
    assert ids(w.history.keys_at(w.now(), state="Disabled")) == [first]
    assert_replay_equal(w)


def change_outside_any_call(w: World, key_id: str) -> None:
    """A change with no Call is refused: every event is named by the record of the call that made it."""
    datastore = w.rt.ledger.recorder.datastore  # type: ignore[attr-defined]
    writer = LedgerWriter(w.rt.ledger, w.rt.uow, SqlKeyStateView(datastore, 0), w.rt.audit)
    key = w.rt.ledger.repository.get(uuid.UUID(key_id))
    key.update_description("outside any call", w.now())
    with pytest.raises(InternalError):
        writer.commit(None, [key])  # type: ignore[arg-type]


def test_timeline_names_who_made_each_change(w: World) -> None:
    key_id = w.create_key()
    w.do("aliases.create_alias", "alias/t", key_id)
    w.do("keys.tag_resource", key_id, {"a": "1"})
    change_outside_any_call(w, key_id)
    w.do("keys.schedule_key_deletion", key_id, 7)
    w.advance(8 * DAY)
    w.maintain()
    events = w.history.timeline(key_id)
    assert [(e["Version"], e["EventType"]) for e in events] == list(enumerate(
        ["Created", "Tagged", "DeletionScheduled", "Deleted"], start=1))
    assert [e["EventName"] for e in events] == ["CreateKey", "TagResource", "ScheduleKeyDeletion", "DeleteKey"]
    assert [e["Actor"] for e in events] == [ALICE, ALICE, ALICE, "kms.amazonaws.com"]
    assert all(e["RequestId"] for e in events)
    assert events[1]["Details"] == {"tags": {"a": "1"}}
    assert events == sorted(events, key=lambda e: e["Time"])
    assert w.history.timeline(SCOPE.key_arn(key_id)) == events


def test_answers_survive_snapshots_and_a_restart(w: World) -> None:
    key_id = w.create_key()
    moments = [w.now()]
    for i in range(60):  # past the snapshot interval of 50
        w.advance(1)
        w.do("keys.tag_resource", key_id, {f"t{i % 7}": str(i)})
        moments.append(w.now())
    with w.engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM keyledger_snapshots")).scalar() >= 1
    before = [w.history.key_at(SCOPE, key_id, at) for at in moments]
    for at in moments[::7] + moments[48:53]:
        assert_matches_brute_force(w, key_id, at)
    timeline = w.history.timeline(key_id)
    w.restart()
    assert [w.history.key_at(SCOPE, key_id, at) for at in moments] == before
    assert w.history.timeline(key_id) == timeline
    assert [a["Version"] for a in before] == list(range(1, 62))
    assert_replay_equal(w)
    w.do("keys.disable_key", key_id)  # the world rebuilt as of a moment agrees with that moment's answers only
    assert past_differences(w, moments[55], moments[55]) == []
    assert past_differences(w, moments[55], w.now()) == [f"key_state[{key_id}] metadata differs from the point-in-time answer"]


OPERATIONS = ["create", "keys.enable_key", "keys.disable_key", "keys.tag_resource", "keys.untag_resource",
              "keys.update_key_description", "rotation.enable_key_rotation", "rotation.disable_key_rotation",
              "rotation.rotate_key_on_demand", "keys.schedule_key_deletion", "keys.cancel_key_deletion",
              "maintenance"] + ["aliases.create_alias", "aliases.update_alias", "aliases.delete_alias"] * 3 + [
              "grants.create_grant", "grants.create_grant", "grants.retire_grant", "grants.revoke_grant"]
ADVANCES = [0, 0.001, 1, 3600, DAY, 8 * DAY, 100 * DAY]


def apply(w: World, keys: list[str], op: str, pick: int, value: int) -> None:
    if not keys and op not in ("create", "maintenance"):
        return
    key, alias = (keys[pick % len(keys)] if keys else ""), ALIAS_NAMES[value % 2]
    args = {"tag_resource": (key, {f"k{value % 4}": str(value)}), "untag_resource": (key, [f"k{value % 4}"]),
            "update_key_description": (key, f"d{value}"), "enable_key_rotation": (key, 90 + value),
            "schedule_key_deletion": (key, 7), "create_alias": (alias, key), "update_alias": (alias, key),
            "delete_alias": (alias,)}
    try:
        if op == "create":
            keys.append(w.create_key(description=f"k{value}"))
        elif op == "maintenance":
            w.maintain()
        elif op == "grants.create_grant":
            w.do(op, key, operations=["Encrypt"], grantee_principal=ALICE, name=f"g{value % 3}")
        elif op in ("grants.retire_grant", "grants.revoke_grant"):
            listed = w.do("grants.list_grants", key)["Grants"]
            if listed:
                grant_id = listed[value % len(listed)]["GrantId"]
                if op == "grants.retire_grant":
                    w.do(op, key_ref=key, grant_id=grant_id)  # the account that created the grant may retire it
                else:
                    w.do(op, key, grant_id)
        else:
            name = op.split(".")[1]
            w.do(op, *args.get(name, (key,)))
    except KmsError:
        pass  # refused in this state: no event, which is part of what is being tested


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=st.lists(st.tuples(st.sampled_from(OPERATIONS), st.integers(0, 9), st.integers(0, 99),
                                st.sampled_from(ADVANCES)), min_size=8, max_size=40))
def test_key_at_equals_brute_force_replay(steps: list[tuple[str, int, int, float]]) -> None:
    """Random lifecycles with random clock moves: asked at every step and at each event's own instant
    (and just before it), key_at equals a fold of the key's events; the replay equals the live rows."""
    with tempfile.TemporaryDirectory() as tmp, World(Path(tmp)) as w:
        keys: list[str] = []
        moments = [w.now()]
        for op, pick, value, advance in [("create", 0, 0, 1.0), *steps]:
            apply(w, keys, op, pick, value)
            moments.append(w.now())
            if advance:
                w.advance(advance)
                w.maintain()  # as the server's periodic pass would, once time has moved
        for key_id in keys:
            moments += [e.timestamp + d for e in w.rt.ledger.events.get(uuid.UUID(key_id))
                        for d in (timedelta(0), timedelta(microseconds=-1))]
        for at in moments:
            for key_id in keys:
                assert_matches_brute_force(w, key_id, at)
        assert_replay_equal(w)
        mid = moments[len(moments) // 2]
        assert past_differences(w, mid, mid) == []
