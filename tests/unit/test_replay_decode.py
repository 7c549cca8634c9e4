"""Replay's decoder (projections/replay_decode.py, decision 245) gives exactly the mapper's event for every stored
event of a random history (same class, same attributes), decodes most of them without the mapper, and for a row
it cannot decode exactly (a typed value besides the timestamp, an escape, a damaged or forged row) gives what the
mapper gives: the same event or the same error."""
from __future__ import annotations

import tempfile
import uuid
from datetime import datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from domain.audit.seals import split_tagged, tag_state
from projections.ledger_events import ledger_events_page
from projections.replay_decode import ReplayDecoder
from tests.unit.test_ledger_property import OPERATIONS, _apply
from tests.unit.test_point_in_time import World


def _outcome(decode, notification):
    try:
        event = decode(notification)
    except Exception as error:  # the same refusal: type and message
        return type(error), str(error)
    return type(event), event.__dict__


@settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(operations=st.lists(st.sampled_from(OPERATIONS), min_size=1, max_size=12),
       description=st.text(max_size=8))
def test_the_decoder_gives_the_mappers_event(operations: list[str], description: str) -> None:
    with tempfile.TemporaryDirectory() as directory, World(Path(directory)) as w:
        keys = [w.create_key(), w.create_key()]
        w.do("keys.update_key_description", keys[0], description)  # any text, escapes included
        for n, operation in enumerate(operations):
            try:
                _apply(w, keys[n % 2], operation, n)
            except Exception:  # a refused change is still a history
                pass
        mapper = w.rt.ledger.mapper
        decoder = ReplayDecoder(mapper)
        page = ledger_events_page(w.rt.ledger, 1, 10_000)
        for notification in page:
            assert _outcome(decoder.event, notification) == _outcome(mapper.to_domain_event, notification)
        assert decoder.fast >= len(page) // 2  # the fast path is the one taken, not an unused branch


def _stored(w: World, key_id: str):
    return [n for n in ledger_events_page(w.rt.ledger, 1, 10_000) if n.originator_id == uuid.UUID(key_id)]


def _with_state(n, state: bytes):
    return type(n)(id=n.id, originator_id=n.originator_id, originator_version=n.originator_version, topic=n.topic,
                   state=state)


def test_rows_it_cannot_decode_exactly_go_to_the_mapper(tmp_path: Path) -> None:
    with World(tmp_path) as w:
        key_id = w.create_key()
        w.do("keys.update_key_description", key_id, "plain")
        mapper = w.rt.ledger.mapper
        last = _stored(w, key_id)[-1]
        payload, _ = split_tagged(last.state)
        plain = mapper.compressor.decompress(payload)
        variants = {
            "second typed value": plain.replace(b'"description":"plain"',
                                                b'"description":{"_type_":"datetime_iso","_data_":"2026-01-01T00:00:00+00:00"}'),
            "escaped _type_": plain.replace(b'"description":"plain"', b'"description":{"\\u005ftype_":"x","_data_":"y"}'),
            "class_version": plain.replace(b'"description":"plain"', b'"description":"plain","class_version":1'),
            "no timestamp": plain.replace(b'"timestamp"', b'"timestamq"'),
            "not JSON": plain[:-3],
        }
        for name, changed in variants.items():
            state = tag_state(mapper.row_key, last.originator_id, last.originator_version, last.topic,
                              mapper.compressor.compress(changed))
            forged = _with_state(last, state)
            decoder = ReplayDecoder(mapper)
            assert _outcome(decoder.event, forged) == _outcome(mapper.to_domain_event, forged), name
            assert decoder.fast == 0, name


@pytest.mark.parametrize("damage", ["flip a state bit", "drop the tag", "another version"])
def test_a_damaged_or_forged_row_fails_as_it_did(tmp_path: Path, damage: str) -> None:
    with World(tmp_path) as w:
        key_id = w.create_key()
        w.do("keys.update_key_description", key_id, "plain")
        mapper = w.rt.ledger.mapper
        last = _stored(w, key_id)[-1]
        if damage == "flip a state bit":
            forged = _with_state(last, last.state[:3] + bytes([last.state[3] ^ 1]) + last.state[4:])
        elif damage == "drop the tag":
            forged = _with_state(last, split_tagged(last.state)[0])
        else:
            forged = type(last)(id=last.id, originator_id=last.originator_id, topic=last.topic, state=last.state,
                                originator_version=last.originator_version + 1)
        decoder = ReplayDecoder(mapper)
        outcome = _outcome(decoder.event, forged)
        assert outcome == _outcome(mapper.to_domain_event, forged)
        assert isinstance(outcome[0], type) and issubclass(outcome[0], Exception) and decoder.fast == 0


def test_rows_go_to_the_driver_as_tuples_only_for_plain_tables(tmp_path: Path) -> None:
    import sqlalchemy as sa

    from projections.row_inserts import insert_rows, plain
    from projections.tables import key_event_index

    engine = sa.create_engine(f"sqlite:///{tmp_path / 'rows.db'}")
    md = sa.MetaData()
    flags = sa.Table("flags", md, sa.Column("name", sa.String(8), primary_key=True), sa.Column("on", sa.Boolean),
                     sa.Column("at", sa.DateTime))
    md.create_all(engine)
    assert plain(key_event_index) and not plain(flags)
    moment = datetime(2026, 1, 2, 3, 4, 5)
    with engine.begin() as conn:
        insert_rows(conn, flags, [{"name": "a", "on": True, "at": moment}, {"name": "b", "on": False, "at": None}])
        with pytest.raises(ValueError):
            insert_rows(conn, flags, [{"name": "c", "nope": 1}])
    with engine.connect() as conn:
        assert [tuple(r) for r in conn.execute(sa.select(flags).order_by(flags.c.name))] == [
            ("a", True, moment), ("b", False, None)]
    engine.dispose()
