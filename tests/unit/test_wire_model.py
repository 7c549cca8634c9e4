"""WireModel against botocore's KMS model: AWS's exact ValidationException wording, type errors as
SerializationException, no secret ever echoed, and lossless blob/timestamp round trips."""
from __future__ import annotations

import base64
import json
import sys
from datetime import datetime, timezone
from enum import Enum
from pathlib import Path

import botocore.session
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

# Run from any directory, before a conftest/pyproject puts the repo root on sys.path.
_ROOT = str(Path(__file__).resolve().parents[2])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from api.wire_model import WireModel  # noqa: E402
from domain.errors import SerializationError, UnknownOperationError, ValidationError  # noqa: E402

KEY_ID = "1234abcd-12ab-34cd-56ef-1234567890ab"


@pytest.fixture(scope="module")
def wm() -> WireModel:
    return WireModel()


def body(**members) -> bytes:
    return json.dumps(members).encode()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


# -- parse_request: constraints ------------------------------------------------------------------


def test_plaintext_too_long_is_named_but_never_echoed(wm):
    secret = b"TOPSECRET-" * 410  # 4100 bytes
    with pytest.raises(ValidationError) as exc:
        wm.parse_request("Encrypt", body(KeyId=KEY_ID, Plaintext=b64(secret[:4097])))
    msg = exc.value.message
    assert msg == ("1 validation error detected: Value at 'plaintext' failed to satisfy constraint: "
                   "Member must have length less than or equal to 4096")
    assert "TOPSECRET" not in msg and b64(secret[:4097])[:16] not in msg
    assert exc.value.code == "ValidationException"


def test_empty_plaintext_violates_min_length(wm):
    with pytest.raises(ValidationError) as exc:
        wm.parse_request("Encrypt", body(KeyId=KEY_ID, Plaintext=""))
    assert exc.value.message == ("1 validation error detected: Value at 'plaintext' failed to satisfy constraint: "
                                 "Member must have length greater than or equal to 1")


@pytest.mark.parametrize("n, rule", [
    (0, "Member must have value greater than or equal to 1"),
    (1025, "Member must have value less than or equal to 1024"),
])
def test_number_of_bytes_range_uses_aws_wording(wm, n, rule):
    with pytest.raises(ValidationError) as exc:
        wm.parse_request("GenerateRandom", body(NumberOfBytes=n))
    assert exc.value.message == (f"1 validation error detected: Value '{n}' at 'numberOfBytes' "
                                 f"failed to satisfy constraint: {rule}")


@pytest.mark.parametrize("value, got", [("12", "string"), (True, "boolean"), (12.5, "number"), ([1], "array")])
def test_wrong_json_type_is_a_serialization_error_naming_the_member(wm, value, got):
    with pytest.raises(SerializationError) as exc:
        wm.parse_request("GenerateRandom", body(NumberOfBytes=value))
    assert exc.value.message == f"Member 'NumberOfBytes' must be an integer, got {got}"
    assert exc.value.code == "SerializationException"


def test_integer_beyond_java_int_is_a_serialization_error(wm):
    with pytest.raises(SerializationError, match="out of range"):
        wm.parse_request("GenerateRandom", body(NumberOfBytes=2**31))


def test_enum_violation_lists_the_model_values_in_model_order(wm):
    values = botocore.session.get_session().get_service_model("kms").shape_for("KeySpec").enum
    with pytest.raises(ValidationError) as exc:
        wm.parse_request("CreateKey", body(KeySpec="NOPE"))
    assert exc.value.message == ("1 validation error detected: Value 'NOPE' at 'keySpec' failed to satisfy "
                                 f"constraint: Member must satisfy enum value set: [{', '.join(values)}]")
    assert "SYMMETRIC_DEFAULT" in exc.value.message


@pytest.mark.parametrize("raw", [b"{}", b'{"KeyId": null}'])
def test_missing_required_member(wm, raw):
    with pytest.raises(ValidationError) as exc:
        wm.parse_request("DescribeKey", raw)
    assert exc.value.message == ("1 validation error detected: Value null at 'keyId' failed to satisfy "
                                 "constraint: Member must not be null")


def test_several_violations_are_reported_together_in_model_order(wm):
    with pytest.raises(ValidationError) as exc:
        wm.parse_request("Encrypt", body(Plaintext=b64(b"x" * 5000)))
    assert exc.value.message == (
        "2 validation errors detected: "
        "Value null at 'keyId' failed to satisfy constraint: Member must not be null; "
        "Value at 'plaintext' failed to satisfy constraint: Member must have length less than or equal to 4096")


def test_alias_name_pattern(wm):
    with pytest.raises(ValidationError) as exc:
        wm.parse_request("CreateAlias", body(AliasName="alias/has space", TargetKeyId=KEY_ID))
    assert exc.value.message == (
        "1 validation error detected: Value 'alias/has space' at 'aliasName' failed to satisfy constraint: "
        "Member must satisfy regular expression pattern: ^[a-zA-Z0-9:/_-]+$")


def test_pattern_must_match_the_whole_value_even_when_unanchored(wm):
    # PolicyNameType is '[\w]+' with no anchors; Java's matches() requires a full match.
    with pytest.raises(ValidationError, match="regular expression pattern"):
        wm.parse_request("GetKeyPolicy", body(KeyId=KEY_ID, PolicyName="default policy"))
    assert wm.parse_request("GetKeyPolicy", body(KeyId=KEY_ID, PolicyName="default"))["PolicyName"] == "default"


def test_nested_list_member_path_is_one_based(wm):
    tags = [{"TagKey": "ok", "TagValue": "v"}, {"TagKey": "", "TagValue": "v"}]
    with pytest.raises(ValidationError) as exc:
        wm.parse_request("CreateKey", body(Tags=tags))
    assert exc.value.message == ("1 validation error detected: Value '' at 'tags.2.member.tagKey' failed to "
                                 "satisfy constraint: Member must have length greater than or equal to 1")


def test_nested_type_error_names_the_path(wm):
    with pytest.raises(SerializationError) as exc:
        wm.parse_request("CreateKey", body(Tags=[{"TagKey": 7, "TagValue": "v"}]))
    assert exc.value.message == "Member 'Tags[0].TagKey' must be a string, got number"


def test_list_length_is_checked_and_echoed_java_style(wm):
    with pytest.raises(ValidationError) as exc:
        wm.parse_request("Encrypt", body(KeyId=KEY_ID, Plaintext=b64(b"x"), GrantTokens=[f"t{i}" for i in range(11)]))
    assert "Value '[t0, t1," in exc.value.message
    assert exc.value.message.endswith("at 'grantTokens' failed to satisfy constraint: "
                                      "Member must have length less than or equal to 10")


def test_sensitive_string_is_never_echoed(wm):
    with pytest.raises(ValidationError) as exc:
        wm.parse_request("CreateCustomKeyStore", body(CustomKeyStoreName="ks", KeyStorePassword="hunter"))
    assert "hunter" not in exc.value.message
    assert "Value at 'keyStorePassword'" in exc.value.message


def test_string_length_counts_utf16_units_like_java(wm):
    # TagKeyType max is 128: 64 astral characters are 128 UTF-16 units (ok), 65 are 130 (too long).
    assert wm.parse_request("CreateKey", body(Tags=[{"TagKey": "\U0001F600" * 64, "TagValue": ""}]))
    with pytest.raises(ValidationError, match="less than or equal to 128"):
        wm.parse_request("CreateKey", body(Tags=[{"TagKey": "\U0001F600" * 65, "TagValue": ""}]))


def test_unpaired_surrogate_is_a_serialization_error(wm):
    with pytest.raises(SerializationError, match="surrogate"):
        wm.parse_request("Encrypt", b'{"KeyId": "k", "Plaintext": "eA==", "EncryptionContext": {"a": "\\ud800"}}')


# -- parse_request: body and types ---------------------------------------------------------------


@pytest.mark.parametrize("raw", [b"{not json", b"[1, 2]", b'"str"', b"42", b"\xff\xfe{", b'{"NumberOfBytes": NaN}'])
def test_body_that_is_not_a_json_object(wm, raw):
    with pytest.raises(SerializationError):
        wm.parse_request("GenerateRandom", raw)


@pytest.mark.parametrize("raw", [b"", b"  \n\t", b"{}"])
def test_empty_body_is_an_empty_request(wm, raw):
    assert wm.parse_request("GenerateRandom", raw) == {}


@pytest.mark.parametrize("bad", ["not base64!", "YWJj=", "YWJj====", "Y===", "YWJ", "\u00e9A==", "YW\nJj"])
def test_bad_base64_is_a_serialization_error_without_echo(wm, bad):
    with pytest.raises(SerializationError) as exc:
        wm.parse_request("Decrypt", body(CiphertextBlob=bad))
    assert exc.value.message == "Member 'CiphertextBlob' is not valid base64"


def test_unknown_members_are_ignored_and_dropped(wm):
    parsed = wm.parse_request("GenerateRandom", body(NumberOfBytes=32, Bogus={"x": 1}))
    assert parsed == {"NumberOfBytes": 32}


def test_full_request_parses_to_model_names_and_python_types(wm):
    parsed = wm.parse_request("Encrypt", body(
        KeyId=KEY_ID, Plaintext=b64(b"\x00hello"), EncryptionContext={"purpose": "test"},
        GrantTokens=["tok"], EncryptionAlgorithm="SYMMETRIC_DEFAULT", DryRun=False))
    assert parsed == {"KeyId": KEY_ID, "Plaintext": b"\x00hello", "EncryptionContext": {"purpose": "test"},
                      "GrantTokens": ["tok"], "EncryptionAlgorithm": "SYMMETRIC_DEFAULT", "DryRun": False}


def test_map_value_of_wrong_type(wm):
    with pytest.raises(SerializationError) as exc:
        wm.parse_request("Encrypt", body(KeyId=KEY_ID, Plaintext="eA==", EncryptionContext={"a": 1}))
    assert exc.value.message == "Member 'EncryptionContext['a']' must be a string, got number"


def test_unknown_operation(wm):
    assert wm.has_operation("Encrypt") and not wm.has_operation("Explode")
    with pytest.raises(UnknownOperationError):
        wm.parse_request("Explode", b"{}")


@pytest.mark.parametrize("value, expected", [
    (1700000000, datetime(2023, 11, 14, 22, 13, 20, tzinfo=timezone.utc)),
    (1700000000.5, datetime(2023, 11, 14, 22, 13, 20, 500000, tzinfo=timezone.utc)),
    ("2023-11-14T22:13:20Z", datetime(2023, 11, 14, 22, 13, 20, tzinfo=timezone.utc)),
    ("2023-11-15T00:13:20+02:00", datetime(2023, 11, 14, 22, 13, 20, tzinfo=timezone.utc)),
])
def test_timestamp_parsing(wm, value, expected):
    # No KMS input member is a timestamp today, so exercise the compiled DateType parser directly.
    parse = wm._compiled("in", wm._model.shape_for("DateType"))
    parsed = parse(value, (None, "CreationDate"), [])
    assert parsed == expected and parsed.tzinfo == timezone.utc


def test_bad_timestamp(wm):
    parse = wm._compiled("in", wm._model.shape_for("DateType"))
    for bad in ("yesterday", True, None, 1e300):
        with pytest.raises(SerializationError, match="CreationDate"):
            parse(bad, (None, "CreationDate"), [])


# -- responses -----------------------------------------------------------------------------------


def served(wm: WireModel, operation: str, output: dict) -> dict:
    """The response as a client reads it."""
    return json.loads(wm.response_body(operation, output))


def test_blob_round_trip(wm):
    blob = bytes(range(256))
    parsed = wm.parse_request("Decrypt", body(CiphertextBlob=b64(blob)))
    assert parsed["CiphertextBlob"] == blob
    out = served(wm, "Encrypt", {"CiphertextBlob": blob, "KeyId": KEY_ID, "EncryptionAlgorithm": "SYMMETRIC_DEFAULT"})
    assert out == {"CiphertextBlob": b64(blob), "KeyId": KEY_ID, "EncryptionAlgorithm": "SYMMETRIC_DEFAULT"}
    json.dumps(out)


class _State(str, Enum):
    ENABLED = "Enabled"


def test_nested_datetime_enum_and_none(wm):
    created = datetime(2024, 1, 2, 3, 4, 5, 250000, tzinfo=timezone.utc)
    out = served(wm, "DescribeKey", {"KeyMetadata": {
        "KeyId": KEY_ID, "CreationDate": created, "Enabled": True, "KeyState": _State.ENABLED,
        "DeletionDate": None, "EncryptionAlgorithms": ["SYMMETRIC_DEFAULT"]}})
    meta = out["KeyMetadata"]
    assert meta["CreationDate"] == pytest.approx(created.timestamp()) and isinstance(meta["CreationDate"], float)
    assert meta["KeyState"] == "Enabled" and type(meta["KeyState"]) is str
    assert "DeletionDate" not in meta
    assert json.loads(json.dumps(out)) == out


def test_naive_datetime_is_taken_as_utc(wm):
    out = served(wm, "DescribeKey", {"KeyMetadata": {"KeyId": KEY_ID, "CreationDate": datetime(1970, 1, 1, 0, 0, 10)}})
    assert out["KeyMetadata"]["CreationDate"] == 10.0


def test_list_of_structures_and_map(wm):
    out = served(wm, "ListResourceTags", {"Tags": [{"TagKey": "k", "TagValue": "v"}], "Truncated": False})
    assert out == {"Tags": [{"TagKey": "k", "TagValue": "v"}], "Truncated": False}


@pytest.mark.parametrize("output", [
    {"Plaintext": b"x", "Bogus": 1},
    {"KeyMetadata": {"KeyId": KEY_ID, "Bogus": 1}},
])
def test_unknown_output_member_is_a_programming_error(wm, output):
    op = "GenerateRandom" if "Plaintext" in output else "DescribeKey"
    with pytest.raises(AssertionError, match="Bogus"):
        served(wm, op, output)


def test_wrong_output_type_is_a_programming_error(wm):
    with pytest.raises(AssertionError):
        served(wm, "DescribeKey", {"KeyMetadata": {"KeyId": 42}})


def test_operation_without_output(wm):
    assert served(wm, "CreateAlias", {}) == {}
    with pytest.raises(AssertionError):
        served(wm, "CreateAlias", {"KeyId": KEY_ID})


def test_walkers_are_compiled_once(wm):
    wm.parse_request("GenerateRandom", body(NumberOfBytes=1))
    first = wm._op_cache[("in", "GenerateRandom")]
    wm.parse_request("GenerateRandom", body(NumberOfBytes=2))
    assert wm._op_cache[("in", "GenerateRandom")] is first


# -- properties ----------------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=1, max_size=4096))
def test_plaintext_base64_round_trip(wm, data):
    parsed = wm.parse_request("Encrypt", body(KeyId=KEY_ID, Plaintext=b64(data)))
    assert parsed["Plaintext"] == data
    assert served(wm, "GenerateRandom", {"Plaintext": parsed["Plaintext"]}) == {"Plaintext": b64(data)}


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.integers(min_value=-(2**31), max_value=2**31 - 1), st.integers(min_value=-5, max_value=1030)))
def test_number_of_bytes_accepts_exactly_1_to_1024(wm, n):
    if 1 <= n <= 1024:
        assert wm.parse_request("GenerateRandom", body(NumberOfBytes=n)) == {"NumberOfBytes": n}
    else:
        with pytest.raises(ValidationError, match=f"Value '{n}' at 'numberOfBytes'"):
            wm.parse_request("GenerateRandom", body(NumberOfBytes=n))


# -- response_body: json.dumps's own spelling, without scanning blobs ------------------------------------------

def _values(shape, depth: int = 0):
    """Any value the handlers could return for ``shape``: text with quotes, escapes and non-ASCII included."""
    t = shape.type_name
    if t == "structure":
        members = {name: _values(member, depth + 1) for name, member in shape.members.items()} if depth < 4 else {}
        return st.fixed_dictionaries({}, optional=members)
    if t == "list":
        return st.lists(_values(shape.member, depth + 1), max_size=3)
    if t == "map":
        return st.dictionaries(st.text(max_size=8), _values(shape.value, depth + 1), max_size=3)
    if t == "blob":
        return st.binary(max_size=5000)
    if t == "timestamp":
        return st.datetimes(timezones=st.just(timezone.utc))
    if t == "boolean":
        return st.booleans()
    if t in ("integer", "long"):
        return st.integers(min_value=-(2**63), max_value=2**63 - 1)
    if t in ("float", "double"):
        return st.floats(allow_nan=False, allow_infinity=False)
    return st.text(max_size=20)


_OUTPUTS = [(name, botocore.session.get_session().get_service_model("kms").operation_model(name).output_shape)
            for name in botocore.session.get_session().get_service_model("kms").operation_names]


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_response_body_is_json_dumps_of_the_serialized_response(wm, data) -> None:
    name, shape = data.draw(st.sampled_from([(n, s) for n, s in _OUTPUTS if s is not None]))
    output = data.draw(_values(shape))
    written = wm.response_body(name, output)
    assert written == json.dumps(json.loads(written)).encode("utf-8")


def test_response_body_of_a_blob_is_its_base64(wm) -> None:
    blob = bytes(range(256)) * 17
    out = wm.response_body("Encrypt", {"CiphertextBlob": blob, "KeyId": KEY_ID})
    assert json.loads(out) == {"CiphertextBlob": b64(blob), "KeyId": KEY_ID}


# -- blobs: read exactly as the strict standard decoder reads them, written as standard base64 ----------------------

def _strict_binascii(text: str) -> bytes | None:
    """What the parser accepted before decision 253: the two shape checks, then a2b_base64 in strict mode."""
    import binascii

    try:
        if len(text) % 4 or text.find("=", 0, len(text) - 2) != -1:
            return None
        return binascii.a2b_base64(text, strict_mode=True)
    except (binascii.Error, ValueError):
        return None


_BASE64_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/="


@settings(max_examples=400, deadline=None)
@given(text=st.one_of(st.text(alphabet=_BASE64_CHARS, max_size=24),
                      st.text(alphabet=_BASE64_CHARS + " \n\r\t-_.:é\x00\u2028", max_size=12),
                      st.binary(max_size=40).map(lambda b: base64.b64encode(b).decode())))
def test_a_blob_is_read_exactly_as_the_strict_standard_decoder_reads_it(wm, text):
    expected = _strict_binascii(text)
    raw = json.dumps({"CiphertextBlob": text}).encode()
    if expected is None or not expected:  # refused, or empty (the shape's minimum length refuses it)
        with pytest.raises((SerializationError, ValidationError)):
            wm.parse_request("Decrypt", raw)
    else:
        assert wm.parse_request("Decrypt", raw)["CiphertextBlob"] == expected


@settings(max_examples=100, deadline=None)
@given(data=st.binary(min_size=1, max_size=5000))
def test_a_blob_in_a_response_is_the_standard_base64(wm, data):
    assert json.loads(wm.response_body("GenerateRandom", {"Plaintext": data})) == {"Plaintext": b64(data)}


# -- parse_request reads with orjson, and answers exactly as the standard library's reading (decision 273) --------

def _outcome(parse, operation: str, raw: bytes):
    try:
        return "ok", parse(operation, raw)
    except Exception as exc:  # noqa: BLE001 - the outcome compared is the exception's type and message
        return type(exc).__name__, str(exc)


_JSON_TEXT = st.one_of(st.text(max_size=12), st.sampled_from(["\ud800", "\udfff", "a\ud83d", "_type_", "_data_"]))
_NUMBERS = st.one_of(st.integers(), st.integers(min_value=2**63 - 3, max_value=2**64 + 3),
                     st.integers(min_value=-(2**63) - 3, max_value=-(2**63) + 3), st.floats(allow_nan=True),
                     st.sampled_from([10**30, -(10**30), 2**64, 2**63, -(2**63) - 1]))
_JSON_VALUES = st.recursive(st.one_of(st.none(), st.booleans(), _NUMBERS, _JSON_TEXT),
                            lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                    st.dictionaries(_JSON_TEXT, inner, max_size=3)), max_leaves=12)
_MEMBERS = ["KeyId", "Plaintext", "CiphertextBlob", "EncryptionContext", "GrantTokens", "NumberOfBytes", "KeySpec",
            "EncryptionAlgorithm", "DryRun", "ValidTo", "Limit", "Marker", "Policy", "Tags", "ImportToken",
            "EncryptedKeyMaterial", "ExpirationModel"]


@st.composite
def _bodies(draw) -> bytes:
    members = draw(st.dictionaries(st.sampled_from(_MEMBERS) | _JSON_TEXT, _JSON_VALUES, max_size=5))
    if draw(st.booleans()):
        members["KeyId"] = KEY_ID
        members["Plaintext"] = b64(draw(st.binary(min_size=0, max_size=64)))
    raw = json.dumps(members, allow_nan=True).encode("utf-8", "surrogatepass")
    shape = draw(st.sampled_from(["as is", "bom", "utf-16", "cut", "nested", "byte"]))
    if shape == "bom":
        raw = b"\xef\xbb\xbf" + raw
    elif shape == "utf-16":
        raw = raw.decode("utf-8", "surrogatepass").encode("utf-16-le", "surrogatepass")
    elif shape == "cut":
        raw = raw[:draw(st.integers(min_value=0, max_value=len(raw)))]
    elif shape == "nested":
        depth = draw(st.integers(min_value=1, max_value=40))
        raw = raw[:-1] + b', "x": ' + b"[" * depth + b"]" * depth + b"}"
    elif shape == "byte":
        at = draw(st.integers(min_value=0, max_value=len(raw)))
        raw = raw[:at] + draw(st.binary(min_size=1, max_size=2)) + raw[at:]
    return raw


@settings(max_examples=600, deadline=None)
@given(operation=st.sampled_from(["Encrypt", "GenerateRandom", "CreateGrant", "ListKeys", "ScheduleKeyDeletion",
                                  "TagResource", "PutKeyPolicy", "ImportKeyMaterial"]), raw=_bodies())
def test_every_body_is_answered_as_the_standard_library_reading_answers_it(wm, operation, raw):
    assert _outcome(wm.parse_request, operation, raw) == _outcome(wm.parse_request_exactly, operation, raw)


@pytest.mark.parametrize("raw", [
    b'{"NumberOfBytes": 18446744073709551616}', b'{"NumberOfBytes": 123456789012345678901234567890}',
    b'{"NumberOfBytes": -9223372036854775809}', b'{"NumberOfBytes": 1e400}', b'{"NumberOfBytes": NaN}',
    b'{"NumberOfBytes": 32, "x": 1e999}', b'{"NumberOfBytes": 32, "x": 99999999999999999999999}',
    b'\xef\xbb\xbf{"NumberOfBytes": 32}', '{"NumberOfBytes": 32}'.encode("utf-16"), b'{"x": "\\ud800"}',
    b'{"NumberOfBytes": 32, "x": "\xed\xa0\x80"}', b"[" * 2000 + b"]" * 2000,
], ids=["u64+1", "huge", "i64-1", "inf", "nan", "inf-unknown", "huge-unknown", "bom", "utf-16", "surrogate",
        "cesu", "deep"])
def test_what_orjson_reads_otherwise_is_answered_as_the_standard_library_answers(wm, raw):
    assert _outcome(wm.parse_request, "GenerateRandom", raw) == _outcome(wm.parse_request_exactly, "GenerateRandom", raw)
