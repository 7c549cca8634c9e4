"""A caller's map whose keys are exactly '_type_' and '_data_' would be read back by the event store's transcoder as
a typed value, or fail to decode at all, breaking `audit verify` and every reader of the log (decision 184): refused
at the wire, with the two tag keys that a key's tags could combine into that form."""
from __future__ import annotations

import json

import pytest

from api.wire_model import WireModel
from domain.errors import ValidationError

KEY = "1234abcd-12ab-34cd-56ef-1234567890ab"
RESERVED = {"_type_": "datetime_iso", "_data_": "2026-01-01T00:00:00+00:00"}


@pytest.fixture(scope="module")
def wire() -> WireModel:
    return WireModel()


@pytest.mark.parametrize("operation, body", [
    ("Encrypt", {"KeyId": KEY, "Plaintext": "aGk=", "EncryptionContext": RESERVED}),
    ("Encrypt", {"KeyId": KEY, "Plaintext": "aGk=", "EncryptionContext": {"_type_": "nope", "_data_": "x"}}),
    ("Decrypt", {"CiphertextBlob": "aGk=", "EncryptionContext": RESERVED}),
    ("CreateGrant", {"KeyId": KEY, "GranteePrincipal": "arn:aws:iam::111122223333:user/a", "Operations": ["Decrypt"],
                     "Constraints": {"EncryptionContextSubset": RESERVED}}),
    ("CreateKey", {"Tags": [{"TagKey": "_type_", "TagValue": "datetime_iso"}]}),
    ("TagResource", {"KeyId": KEY, "Tags": [{"TagKey": "_data_", "TagValue": "2026-01-01"}]}),
    ("UntagResource", {"KeyId": KEY, "TagKeys": ["_type_"]}),
])
def test_the_reserved_form_is_refused(wire: WireModel, operation: str, body: dict) -> None:
    with pytest.raises(ValidationError, match="_type_"):
        wire.parse_request(operation, json.dumps(body).encode())


def test_escaped_spellings_are_refused_too(wire: WireModel) -> None:
    body = b'{"KeyId": "%s", "Plaintext": "aGk=", "EncryptionContext": {"\\u005ftype_": "x", "\\u005fdata_": "y"}}' % \
        KEY.encode()
    with pytest.raises(ValidationError, match="_type_"):
        wire.parse_request("Encrypt", body)


def test_near_forms_pass(wire: WireModel) -> None:
    for context in ({"_type_": "x"}, {"_type_": "x", "_data_": "y", "more": "z"}, {"type": "a", "data": "b"}):
        parsed = wire.parse_request("Encrypt", json.dumps({"KeyId": KEY, "Plaintext": "aGk=",
                                                           "EncryptionContext": context}).encode())
        assert parsed["EncryptionContext"] == context


def test_xks_request_metadata_of_the_reserved_form_is_refused() -> None:
    from api import xks_wire

    body = json.dumps({"requestMetadata": RESERVED}).encode()
    with pytest.raises(ValidationError, match="_type_"):
        xks_wire.parse("XksGetHealthStatus", body)


def test_why_the_event_store_transcoder_reads_that_form_as_another_value(tmp_path) -> None:
    """The premise of decision 184, on the ledger's own mapper: the map does not come back as it went in."""
    from infrastructure.bootstrap import build_ledger
    from infrastructure.settings import Settings

    ledger = build_ledger(Settings.load(environ={}, data_dir=tmp_path))
    try:
        transcoder = ledger.mapper.transcoder
        assert transcoder.decode(transcoder.encode({"context": RESERVED}))["context"] != RESERVED
        with pytest.raises(Exception, match="not deserializable"):
            transcoder.decode(transcoder.encode({"context": {"_type_": "nope", "_data_": "x"}}))
    finally:
        ledger.close()
