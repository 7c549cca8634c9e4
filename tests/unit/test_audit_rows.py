"""The audit committer's rows (application/audit/rows.py) are byte for byte the rows the event library
would store for the same records: compared with the library's own mapping of AuditLog.RecordAppended
events for arbitrary JSON records, and through the database on SQLite and PostgreSQL."""
from __future__ import annotations

import json
import math
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Iterator

import pytest
from eventsourcing.persistence import IntegrityError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from application.audit.checkpoints import audit_records
from application.audit.group_commit import PendingRecord
from application.audit.rows import RecordRows
from application.audit.trail import AuditTrail
from domain.audit.chain import GENESIS, verify_log
from domain.audit.log import AUDIT_LOG_ID, AuditLog
from infrastructure.bootstrap import Runtime, build_ledger, build_runtime
from infrastructure.settings import Settings
from tests.conftest import require_postgres
from tests.servers import drop_postgres_schema, new_postgres_schema

AT = datetime(2026, 11, 25, 10, 30, 15, 123456, tzinfo=timezone.utc)


def library_rows(mapper: Any, records: list[dict], head: tuple[int, str], at: datetime) -> list[tuple]:
    """What the committer wrote before: one event per record on the log at ``head``, mapped by the library."""
    log = AuditLog.at_head(*head)
    for record in records:
        log.append(record, at)
    return [(e.originator_id, e.originator_version, e.topic, e.state)
            for e in map(mapper.to_stored_event, log.collect_events())]


def encrypt_record(i: int) -> dict[str, Any]:
    arn = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    return {
        "eventVersion": "1.08", "eventTime": "2026-11-25T10:30:15Z", "eventSource": "kms.amazonaws.com",
        "eventName": "Encrypt", "awsRegion": "us-east-1",
        "userIdentity": {"type": "IAMUser", "principalId": "111122223333:alice",
                         "arn": "arn:aws:iam::111122223333:user/alice", "accountId": "111122223333",
                         "accessKeyId": "AKIAIOSFODNN7EXAMPLE"},
        "sourceIPAddress": "127.0.0.1", "userAgent": "aws-cli/2 — ünïcode",
        "requestParameters": {"keyId": arn, "encryptionAlgorithm": "SYMMETRIC_DEFAULT",
                              "encryptionContext": {"tenant": f"t-{i}", "日本": "語\n\"q\""}},
        "responseElements": None, "errorCode": None, "errorMessage": None, "requestID": f"req-{i}",
        "eventID": f"evt-{i}", "readOnly": True, "resources": [{"accountId": "111122223333",
                                                                "type": "AWS::KMS::Key", "ARN": arn}],
        "eventType": "AwsApiCall", "managementEvent": True, "recipientAccountId": "111122223333",
        "eventCategory": "Management",
    }


# -- against the library's mapper ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def mapper(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    ledger = build_ledger(Settings.load(environ={}, data_dir=tmp_path_factory.mktemp("mapper")))
    yield ledger.mapper
    ledger.close()


text = st.text(st.characters(codec="utf-8"), max_size=12)  # every code point UTF-8 can carry: controls, U+2028, astral
scalars = st.none() | st.booleans() | st.integers(-2**70, 2**70) | text \
    | st.floats(allow_nan=False, allow_infinity=False)
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(text, inner, max_size=4), max_leaves=12)
records = st.dictionaries(text | st.sampled_from(["seq", "leaf", "chain", "eventName"]), json_values, max_size=8)
heads = st.tuples(st.integers(0, 2**40), st.binary(min_size=32, max_size=32).map(bytes.hex))
moments = st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(9999, 12, 30),
                       timezones=st.sampled_from([timezone.utc, timezone(timedelta(hours=5, minutes=30)),
                                                  timezone(timedelta(hours=-8))]))


def test_the_rows_are_exact_for_this_ledger(mapper: Any) -> None:
    assert RecordRows(mapper).exact


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batch=st.lists(records, min_size=1, max_size=5), head=heads, at=moments)
def test_rows_equal_the_library_mapping_of_the_events(mapper: Any, batch: list[dict], head: tuple[int, str],
                                                      at: datetime) -> None:
    rows, new_head = RecordRows(mapper).rows(batch, head, at)
    expected = library_rows(mapper, batch, head, at)
    assert rows == expected
    last = json.loads(mapper.compressor.decompress(rows[-1][3]))["record"]
    assert new_head == (head[0] + len(batch), last["chain"]) and last["seq"] == head[0] + len(batch)


@pytest.mark.parametrize("when", [[], {"a": 1}, 7, None, "not a time", "2026-12-07T14:00:00Z"])
def test_an_event_time_of_any_kind_is_stored_as_the_library_stores_it(mapper: Any, when: Any) -> None:
    """Found by the property above: an eventTime that is not text (a list cannot even be a dictionary key) is
    stored at the batch's time, as the library's mapping stores it."""
    batch = [{**encrypt_record(1), "eventTime": when}, {**encrypt_record(2), "eventTime": when}]
    assert RecordRows(mapper).rows(batch, (3, "ab" * 32), AT)[0] == library_rows(mapper, batch, (3, "ab" * 32), AT)


def test_realistic_records_and_an_empty_batch(mapper: Any) -> None:
    batch = [encrypt_record(i) for i in range(64)]
    head = (41, "ab" * 32)
    rows, new_head = RecordRows(mapper).rows(batch, head, AT)
    assert rows == library_rows(mapper, batch, head, AT)
    assert RecordRows(mapper).rows([], head, AT) == ([], head)
    assert batch[0] == encrypt_record(0)  # the caller's records are not changed


@pytest.mark.parametrize("bad", [{"x": math.nan}, {"x": datetime(2026, 1, 1)}, {"x": {1, 2}}])
def test_what_seal_refuses_is_refused_before_any_row(mapper: Any, bad: dict) -> None:
    with pytest.raises((TypeError, ValueError)):
        RecordRows(mapper).rows([encrypt_record(0), bad], (0, GENESIS.hex()), AT)


def test_rows_are_compressed_as_the_mapper_compresses_and_a_cipher_makes_them_inexact(tmp_path: Path) -> None:
    ledger = build_ledger(Settings.load(environ={}, data_dir=tmp_path))
    try:
        from eventsourcing.compressor import ZlibCompressor

        class Reversing:  # a stand-in cipher: the rows do not apply one
            def encrypt(self, data: bytes) -> bytes:
                return data[::-1]

            def decrypt(self, data: bytes) -> bytes:
                return data[::-1]

        ledger.mapper.compressor = ZlibCompressor()  # another compressor: the rows apply whichever the mapper has
        assert RecordRows(ledger.mapper).exact
        ledger.mapper.cipher = Reversing()
        assert not RecordRows(ledger.mapper).exact
        trail = AuditTrail(ledger, None, None)  # type: ignore[arg-type]
        assert trail._rows is None  # so the committer keeps to the library
    finally:
        ledger.close()


# -- through the database -----------------------------------------------------------------------------

class FixedClock:
    def now(self) -> datetime:
        return AT


@pytest.fixture
def runtime(backend: str, tmp_path: Path) -> Iterator[Runtime]:
    url = schema = None
    if backend == "postgres":
        base = require_postgres()
        url, schema = new_postgres_schema(base)
    rt = build_runtime(Settings.load(environ={}, data_dir=tmp_path, database_url=url))
    try:
        yield rt
    finally:
        rt.close()
        if schema is not None:
            drop_postgres_schema(base, schema)


def _written_in_a_rolled_back_transaction(rt: Runtime, batch: list[dict], use_rows: bool) -> tuple[list, list]:
    """The audit rows and notification ids one committer path writes for ``batch``, then rolled back."""
    trail = rt.audit
    saved = trail._rows
    trail._rows = saved if use_rows else None
    seen: list = []

    class Undo(Exception):
        pass

    try:
        with rt.uow.transaction() as tx:
            head = trail._begin_append(tx)
            before = rt.ledger.recorder.max_notification_id()
            trail._append(tx, head, batch)
            stored = rt.ledger.recorder.select_events(AUDIT_LOG_ID, gt=head[0] + 1)
            notes = rt.ledger.recorder.select_notifications(before + 1, 1000)
            # PostgreSQL does not give back sequence values on rollback: the ids are compared from the first
            assert notes and notes[0].id > before
            seen = [[(s.originator_id, s.originator_version, s.topic, s.state) for s in stored],
                    [(n.id - notes[0].id, n.originator_version) for n in notes]]
            raise Undo
    except Undo:
        pass
    finally:
        trail._rows = saved
        trail._head = None
    return seen[0], seen[1]


def test_both_paths_store_the_same_rows(runtime: Runtime) -> None:
    runtime.audit._clock = FixedClock()
    assert runtime.audit._rows is not None
    batch = [encrypt_record(i) for i in range(20)]
    direct = _written_in_a_rolled_back_transaction(runtime, batch, use_rows=True)
    library = _written_in_a_rolled_back_transaction(runtime, batch, use_rows=False)
    assert len(direct[0]) == 20
    assert direct == library  # the rows, and the notification ids (consecutive, after the last one)


def test_committed_batches_verify_and_the_head_follows(runtime: Runtime) -> None:
    trail = runtime.audit
    outcomes: list = []
    start = trail._load_head()[0]
    for size in (1, 7, 64):
        trail._commit([PendingRecord(encrypt_record(i), outcomes.append) for i in range(size)])
    assert outcomes == [None] * 72
    records = list(audit_records(runtime.ledger))
    assert verify_log(records).ok
    assert [r["seq"] for r in records][-72:] == list(range(start + 1, start + 73))
    trail._head = None  # what another process, or a restart, reads back
    assert trail._load_head() == (records[-1]["seq"], records[-1]["chain"])


def test_a_version_taken_meanwhile_is_an_integrity_error(runtime: Runtime) -> None:
    trail = runtime.audit
    head = trail._load_head()
    rows, _ = trail._rows.rows([encrypt_record(1)], head, AT)  # type: ignore[union-attr]
    with runtime.uow.transaction():
        runtime.ledger.recorder.insert_rows(rows)
    with pytest.raises(IntegrityError):  # as the library's insert raised it: the committer retries on it
        with runtime.uow.transaction():
            runtime.ledger.recorder.insert_rows(rows)
    outcome: list = []
    trail._commit([PendingRecord(encrypt_record(2), outcome.append)])  # stale head: reloaded, then appended
    assert outcome == [None]
    assert verify_log(list(audit_records(runtime.ledger))).ok
