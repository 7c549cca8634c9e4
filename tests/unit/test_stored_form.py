"""How states are stored since issue 13's storage work (docs/audit.md "Stored form", decisions 220-222): compressed
one by one with a preset dictionary (infrastructure/compression.py), states stored before that still read and
verify, and verify's orjson reading agrees with the standard library's wherever it is used."""
from __future__ import annotations

import json
import math
import zlib
from datetime import datetime, timezone
from typing import Any

import pytest
import sqlalchemy as sa
import zstandard
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from application.audit.checkpoints import audit_records, stored_checkpoints
from application.audit.ledger_rows import _fast_record, _orjson_record, _stdlib_record
from application.audit.ledger_verify import verify_ledger
from bench.scale import add_records
from domain.audit.log import AuditLog
from infrastructure import compression
from infrastructure.compression import (
    _LEVEL,
    _MEMLEVEL,
    _WBITS,
    _WRITE_WBITS,
    _ZSTD_FORMAT,
    DICTIONARY_V1,
    LedgerCompressor,
)
from infrastructure.event_rows import SqlEventRows
from tests.scale_support import Ledger, ledger_backend  # noqa: F401 (fixtures)
from tests.stored_states import plain, stored

COMPRESSOR = LedgerCompressor()
AT = datetime(2026, 12, 7, 1, 2, 3, tzinfo=timezone.utc)


# -- the compressor -----------------------------------------------------------------------------------------

def version_1(data: bytes) -> bytes:
    """A state as session 7 stored it: zlib with dictionary version 1 (read, no longer written)."""
    deflate = zlib.compressobj(_LEVEL, zlib.DEFLATED, _WRITE_WBITS, _MEMLEVEL, zlib.Z_DEFAULT_STRATEGY, DICTIONARY_V1)
    framed = b"\x01" + deflate.compress(data) + deflate.flush()
    return framed + zlib.crc32(framed).to_bytes(4, "big")


def _with_crc(framed: bytes) -> bytes:
    return framed + zlib.crc32(framed).to_bytes(4, "big")


def test_a_state_round_trips_and_states_stored_before_read_as_they_were() -> None:
    state = b'{"timestamp":{"_type_":"datetime_iso","_data_":"2026-12-07T01:02:03+00:00"},"description":"d"}'
    packed = COMPRESSOR.compress(state)
    assert packed[:1] == b"\x02" and COMPRESSOR.decompress(packed) == state
    assert COMPRESSOR.decompress(version_1(state)) == state  # session 7's form
    assert COMPRESSOR.decompress(state) == state  # JSON as stored before: no marker, read unchanged


@pytest.mark.parametrize("writer", ["version 2", "version 1"])
def test_every_single_bit_change_of_a_compressed_state_fails_to_decompress_or_changes_it(writer: str) -> None:
    """DEFLATE ignores the padding bits after its last block, a Zstandard header has fields the content does not
    depend on; the CRC makes those changes fail too."""
    state = json.dumps({"record": {"eventName": "Encrypt", "seq": 7, "x": "é" * 20}}).encode()
    packed = COMPRESSOR.compress(state) if writer == "version 2" else version_1(state)
    for index in range(len(packed)):
        for bit in range(8):
            changed = bytearray(packed)
            changed[index] ^= 1 << bit
            try:
                assert COMPRESSOR.decompress(bytes(changed)) != state, (index, bit)
            except (ValueError, zlib.error):
                pass


_FRAME = COMPRESSOR.compress(b'{"a":1}')[1:-4]


@pytest.mark.parametrize("forged", [
    b"\x02abc\x00\x00\x00\x00", b"\x01", b"", b"[1]", b"\x01\x00\x00\x00\x00\x00", b"\x03" + _FRAME + b"\x00" * 4,
    _with_crc(b"\x02" + b"\x00" * 12),  # the CRC matches, the frame is not one
    _with_crc(b"\x02" + _FRAME + b"\x00"),  # a valid frame with a byte after it
    _with_crc(b"\x02" + _FRAME[:-1]),  # a truncated frame
    _with_crc(b"\x02" + _FRAME + _FRAME),  # two frames
])
def test_what_is_not_a_stored_state_is_refused(forged: bytes) -> None:
    with pytest.raises((ValueError, zlib.error)):
        COMPRESSOR.decompress(forged)


def test_a_forged_state_cannot_expand_past_the_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    assert compression.MAX_STATE_BYTES == 64 * 1024 * 1024
    monkeypatch.setattr(compression, "MAX_STATE_BYTES", 1024 * 1024)  # the same check, on a smaller forged state
    deflate = zlib.compressobj(9, zlib.DEFLATED, _WBITS, 9, zlib.Z_DEFAULT_STRATEGY, DICTIONARY_V1)
    framed = b"\x01" + deflate.compress(b"{" + b" " * compression.MAX_STATE_BYTES) + deflate.flush()
    with pytest.raises(ValueError, match="too large"):
        COMPRESSOR.decompress(framed + zlib.crc32(framed).to_bytes(4, "big"))
    # Version 2: a frame whose header declares more than the bound is refused before anything is allocated ...
    params = zstandard.ZstdCompressionParameters.from_level(1, format=_ZSTD_FORMAT, write_content_size=True)
    big = zstandard.ZstdCompressor(compression_params=params).compress(b"{" + b" " * compression.MAX_STATE_BYTES)
    with pytest.raises(ValueError, match="too large"):
        COMPRESSOR.decompress(_with_crc(b"\x02" + big))
    # ... and a frame that declares no size is not one keyledger writes.
    params = zstandard.ZstdCompressionParameters.from_level(1, format=_ZSTD_FORMAT, write_content_size=False)
    unsized = zstandard.ZstdCompressor(compression_params=params).compress(b'{"a":1}')
    with pytest.raises(ValueError):
        COMPRESSOR.decompress(_with_crc(b"\x02" + unsized))


def test_the_dictionary_file_is_pinned(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Rows written with version 2 read back only with exactly its dictionary: another file stops the service."""
    changed = tmp_path / "state-dictionary-v2.zdict"
    changed.write_bytes(compression.DICTIONARY_V2_FILE.read_bytes()[:-1] + b"\x00")
    monkeypatch.setattr(compression, "DICTIONARY_V2_FILE", changed)
    compression.dictionary_v2.cache_clear()
    try:
        with pytest.raises(RuntimeError, match="reinstall keyledger"):
            LedgerCompressor()
    finally:
        monkeypatch.undo()
        compression.dictionary_v2.cache_clear()
    assert LedgerCompressor().decompress(COMPRESSOR.compress(b'{"a":1}')) == b'{"a":1}'


# -- a store written before compression ------------------------------------------------------------------------

def _verdicts(ledger: Ledger) -> list[tuple[Any, ...]]:
    checkpoints = stored_checkpoints(ledger.rt.ledger)
    key = ledger.rt.services.audit_public_key if ledger.rt.services else None
    return [(r.ok, r.first_bad_seq, r.problem, r.position)
            for r in (verify_ledger(ledger.rt.ledger, checkpoints, key),
                      verify_ledger(ledger.rt.ledger, checkpoints, key, rows=SqlEventRows(ledger.rt.uow)))]


def _states(ledger: Ledger) -> list[tuple[int, str, bytes]]:
    with ledger.rt.ledger.recorder.datastore.engine.connect() as conn:  # type: ignore[attr-defined]
        return [(i, t, bytes(s)) for i, t, s in conn.execute(sa.text(
            "SELECT id, topic, state FROM keyledger_events ORDER BY id"))]


def _set_state(ledger: Ledger, position: int, state: bytes) -> None:
    with ledger.rt.ledger.recorder.datastore.engine.begin() as conn:  # type: ignore[attr-defined]
        conn.execute(sa.text("UPDATE keyledger_events SET state = :s WHERE id = :i"), {"s": state, "i": position})


@pytest.mark.parametrize("before", ["before compression", "version 1"])
def test_a_store_written_before_keeps_working_beside_rows_written_now(
        ledger_backend: tuple[Any, Any], monkeypatch: pytest.MonkeyPatch, before: str) -> None:
    # The service as it was: states stored as JSON (before session 7), or compressed with zlib (session 7).
    monkeypatch.setattr(LedgerCompressor, "compress",
                        (lambda self, data: data) if before == "before compression" else (lambda self, data: version_1(data)))
    ledger = Ledger(*ledger_backend)
    try:
        _old_and_new_rows(ledger, monkeypatch, b"{" if before == "before compression" else b"\x01")
    finally:
        ledger.close()


def _old_and_new_rows(ledger: Ledger, before: pytest.MonkeyPatch, old_marker: bytes) -> None:
    old_key = ledger.create_key(description="written before")
    add_records(ledger.rt, 40, [old_key])
    ledger.do("keys.update_key_description", old_key, "still before")
    ledger.rt.services.checkpointer.checkpoint_if_due(force=True)
    old = _states(ledger)
    assert all(state[:1] == old_marker for _, _, state in old)

    before.undo()
    ledger.restart()  # the service as it is now: what it writes is compressed
    new_key = ledger.create_key(description="written after")
    add_records(ledger.rt, 40, [old_key, new_key])
    ledger.do("keys.update_key_description", old_key, "after")
    ledger.rt.services.checkpointer.checkpoint_if_due(force=True)
    new = _states(ledger)[len(old):]
    assert new and all(state[:1] == b"\x02" for _, _, state in new)
    records = [(s, plain(s)) for _, topic, s in new if topic.endswith("RecordAppended")]
    assert all(len(s) * 2 < len(p) for s, p in records)  # an Encrypt record takes less than half its JSON

    assert _verdicts(ledger) == [(True, None, None, None)] * 2
    assert len(list(audit_records(ledger.rt.ledger))) == 80 + 5  # records of both kinds read back
    assert ledger.do("keys.describe_key", old_key)["KeyMetadata"]["Description"] == "after"
    ledger.restart()  # loading the key replays old and new events
    assert ledger.do("keys.describe_key", old_key)["KeyMetadata"]["Description"] == "after"

    # One changed letter in an old row and in a new one, record and key event alike, is found by both readers.
    targets = [next(r for r in old if r[1].endswith(topic)) for topic in ("RecordAppended", "DescriptionUpdated")]
    targets += [next(r for r in new if r[1].endswith(topic)) for topic in ("RecordAppended", "DescriptionUpdated")]
    for position, topic, state in targets:
        json_text = plain(state)
        at = json_text.index(b'"description":"' if topic.endswith("Updated") else b'"eventName":"') + 15
        changed = bytearray(json_text)
        changed[at] ^= 1
        rewritten = {b"{": bytes, b"\x01": version_1}.get(state[:1], stored)(bytes(changed))
        _set_state(ledger, position, rewritten)
        verdicts = _verdicts(ledger)
        assert not verdicts[0][0] and verdicts[0] == verdicts[1], (topic, verdicts)
        _set_state(ledger, position, state)
    assert _verdicts(ledger) == [(True, None, None, None)] * 2


# -- verify's orjson reading ----------------------------------------------------------------------------------

text = st.text(st.characters(codec="utf-8"), max_size=8)
scalars = (st.none() | st.booleans() | st.integers(-2**70, 2**70) | text | st.floats(allow_nan=False, allow_infinity=False)
           | st.sampled_from([1e-5, 1.5e-7, 1e-9, 1e16, 1e22, 0.0001, -0.0, 2**64, -2**63 - 1, 2**63, 10**19]))
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=3),
                      max_leaves=10)
records = st.dictionaries(text | st.sampled_from(["seq", "leaf", "chain", "eventTime"]), values, max_size=6)


@pytest.fixture(scope="module")
def mapper(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from infrastructure.bootstrap import build_ledger
    from infrastructure.settings import Settings

    built = build_ledger(Settings.load(environ={}, data_dir=tmp_path_factory.mktemp("mapper")))
    yield built.mapper
    built.close()


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(record=records)
@example(record={"x": 1e-5})
@example(record={"x": [1e-7]})
@example(record={"x": 2**64})
@example(record={"x": {"y": -2**63 - 1}})
def test_orjson_reading_gives_what_the_standard_library_gives_or_steps_aside(mapper: Any, record: dict) -> None:
    log = AuditLog.at_head(0, "00" * 32)
    try:
        log.append(record, AT)
    except (TypeError, ValueError):  # no canonical form: nothing is stored
        return
    state = mapper.compressor.decompress(mapper.to_stored_event(log.collect_events()[0]).state)
    fast = _orjson_record(state)
    exact = _stdlib_record(state)
    assert exact is not None
    if fast is not None:
        assert fast[1:] == exact[1:] and fast[0] == exact[0]
        assert json.dumps(fast[0], sort_keys=True) == json.dumps(exact[0], sort_keys=True)
    whole = _fast_record(state)  # what verify calls: its checks on the state, then either reading
    if whole is not None:
        assert whole[1:] == exact[1:] and whole[0] == exact[0]
    floats = [v for v in json.loads(state)["record"].values() if isinstance(v, float) and not math.isnan(v)]
    if any(abs(v) and (abs(v) < 1e-4 or abs(v) >= 1e16) for v in floats):
        assert fast is None or fast[2] == exact[2]


_RECORD_STATE = (b'{"timestamp":{"_type_":"datetime_iso","_data_":"2026-12-07T01:02:03+00:00"},"record":{"seq":1,'
                 b'"x":%s}}')


@pytest.mark.parametrize("spelled", [b'"\\u005ftype_"', b'"_typ\\u0065_"', b'"\\u005f\\u0074ype_"'])
def test_an_escape_that_spells_a_typed_object_leaves_the_record_to_the_mapper(spelled: bytes) -> None:
    # The mapper's transcoder would turn {"_type_": "datetime_iso", "_data_": ...} into a datetime: plain JSON reading
    # would not, so the fast reading must step aside (None) however the key is spelled.
    state = _RECORD_STATE % (b"{" + spelled + b':"datetime_iso","_data_":"2026-12-07T01:02:03+00:00"}')
    assert json.loads(state)["record"]["x"]["_type_"] == "datetime_iso"
    assert _fast_record(state) is None


@pytest.mark.parametrize("value", [b'"a\\nb\\"c\\\\d\\/e"', b'["\\t", 1.5, {"k": "\\r"}]'])
def test_a_backslash_escape_other_than_u_is_read_as_the_standard_library_reads_it(value: bytes) -> None:
    state = _RECORD_STATE % value
    fast, exact = _fast_record(state), _stdlib_record(state)
    assert fast is not None and exact is not None
    assert fast[0] == exact[0] and fast[1:] == exact[1:]
