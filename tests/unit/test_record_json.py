"""The committer's record JSON (application/audit/record_json.py, decision 254) is byte for byte the standard
library's, or fails as it fails, for any value: what the leaf hashes and what is stored cannot drift."""
from __future__ import annotations

import enum
import json
import uuid
from datetime import datetime, timezone
from typing import Any, Callable

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from application.audit.record_json import canonical_json, plain, stored_json
from domain.audit.chain import canonical

_STORED = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, check_circular=False)


class Level(enum.IntEnum):
    ONE = 1


class Name(str, enum.Enum):
    A = "a"


# Every character, lone surrogates and control characters included; keys of every JSON-ish type.
text = st.text(st.characters(codec=None, categories=None), max_size=6) | st.sampled_from(
    ["", "\x00", "\x1f", "\x7f", "\u2028", "\ud800", "é", "日本", '"\\', "\U0001f600", "a\nb\tc\r\x08\x0c"])
scalars = (st.none() | st.booleans() | st.integers(-2**70, 2**70) | text
           | st.floats(allow_nan=True, allow_infinity=True)
           | st.sampled_from([2**63, 2**64 - 1, 2**64, -2**63, -2**63 - 1, 1e-5, 1e16, 0.1, -0.0,
                              Level.ONE, Name.A, datetime(2026, 1, 1, tzinfo=timezone.utc), uuid.UUID(int=7)]))
keys = text | st.integers(-5, 5) | st.sampled_from([None, True, 1.5])
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3) | st.tuples(inner, inner)
                      | st.dictionaries(keys, inner, max_size=3), max_leaves=12)
records = st.dictionaries(text, values, max_size=6)


def outcome(encode: Callable[[Any], bytes], value: Any) -> tuple[str, Any]:
    try:
        return "bytes", encode(value)
    except Exception as error:  # the kind of refusal is part of the contract
        return "refused", type(error)


@settings(max_examples=600, deadline=None)
@given(record=records)
@example(record={"a": [1, {"b": None}], "seq": 3})
@example(record={"x": 2**64})
@example(record={"x": "\ud800"})
@example(record={"x": float("nan")})
@example(record={"x": datetime(2026, 1, 1)})
@example(record={1: "int key"})
def test_the_fast_spellings_are_the_standard_librarys(record: dict) -> None:
    assert outcome(canonical_json, record) == outcome(canonical, record)
    assert outcome(stored_json, record) == outcome(lambda r: _STORED.encode(r).encode("utf-8"), record)


def test_a_cycle_or_a_deep_nesting_is_refused_as_the_standard_library_refuses_it() -> None:
    cycle: dict[str, Any] = {"a": []}
    cycle["a"].append(cycle)
    assert outcome(canonical_json, cycle) == outcome(canonical, cycle) == ("refused", ValueError)
    deep: Any = "x"
    for _ in range(5000):
        deep = [deep]
    assert outcome(canonical_json, {"d": deep}) == outcome(canonical, {"d": deep})


def test_a_usual_record_takes_the_fast_path() -> None:
    record = {"eventName": "Encrypt", "seq": 4, "readOnly": True, "errorCode": None,
              "requestParameters": {"encryptionContext": {"é": "日本"}}, "resources": [{"ARN": "arn:aws:kms:x"}]}
    assert plain(record) and not plain({**record, "f": 1.5}) and not plain({**record, "t": (1, 2)})


@pytest.fixture(scope="module")
def mapper(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from infrastructure.bootstrap import build_ledger
    from infrastructure.settings import Settings

    built = build_ledger(Settings.load(environ={}, data_dir=tmp_path_factory.mktemp("mapper")))
    yield built.mapper
    built.close()


json_records = st.dictionaries(text, st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | text | st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=3), max_leaves=10), max_size=6)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batch=st.lists(json_records, min_size=1, max_size=4))
def test_the_committers_rows_are_the_event_librarys_rows(mapper: Any, batch: list[dict]) -> None:
    """Byte for byte what saving the records' events through the library stores (application/audit/rows.py), for
    batches mixing records the fast spellings take and records they leave to the standard library."""
    from application.audit.rows import RecordRows
    from domain.audit.log import AuditLog

    at = datetime(2026, 12, 7, 4, 40, tzinfo=timezone.utc)
    log = AuditLog.at_head(9, "cd" * 32)
    try:
        for record in batch:
            log.append(record, at)
    except (TypeError, ValueError, UnicodeEncodeError):  # no canonical form: the committer refuses it too
        with pytest.raises((TypeError, ValueError, UnicodeEncodeError)):
            RecordRows(mapper).rows(batch, (9, "cd" * 32), at)
        return
    library = [(e.originator_id, e.originator_version, e.topic, e.state)
               for e in map(mapper.to_stored_event, log.collect_events())]
    assert RecordRows(mapper).rows(batch, (9, "cd" * 32), at)[0] == library
