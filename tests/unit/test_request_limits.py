"""Limits before work (api/limits.py) and short error echoes (domain.errors.shown, api/errors.py): refusals
come before a byte of the body is read, reading stops at the limit, and no message carries more than a short
prefix of what the caller sent."""
from __future__ import annotations

import asyncio
import json
from datetime import datetime, timezone
from typing import Any

import pytest

from api.errors import MAX_MESSAGE_CHARS, error_body
from api.limits import MAX_JSON_DEPTH, RequestLimits, replay
from api.sigv4 import verify_sigv4
from api.wire_model import WireModel
from domain.errors import (
    SHOWN_CHARS,
    IncompleteSignatureError,
    KmsError,
    MalformedPolicyDocumentError,
    NotFoundError,
    SerializationError,
    ValidationError,
    shown,
)
from domain.identifiers import Scope, parse_key_reference, validate_alias_name
from domain.policy.document import parse_policy

WIRE = WireModel()
LIMITS = RequestLimits(WIRE.service_model, 16384, None)
HUGE = "h" * 1_000_000


def headers(**values: str) -> list[tuple[bytes, bytes]]:
    return [(k.replace("_", "-").encode(), v.encode()) for k, v in values.items()]


def test_header_bytes_are_names_and_values_together() -> None:
    refusal, _ = LIMITS.check_kms(headers(x_amz_target="TrentService.ListKeys", user_agent="u" * 16400))
    assert refusal is not None and (refusal.code, refusal.status) == ("RequestHeaderFieldsTooLargeException", 431)
    assert "16443" in refusal.message and "16384" in refusal.message
    assert LIMITS.check_kms(headers(x_amz_target="TrentService.ListKeys", user_agent="u" * 15000))[0] is None


def test_the_declared_length_is_refused_before_reading() -> None:
    refusal, limit = LIMITS.check_kms(headers(x_amz_target="TrentService.ListKeys", content_length="10000002"))
    assert refusal is not None and (refusal.code, refusal.status) == ("RequestEntityTooLargeException", 413)
    assert limit == LIMITS.body_limit("ListKeys") and str(limit) in refusal.message and "10000002" in refusal.message
    assert LIMITS.check_kms(headers(x_amz_target="TrentService.Encrypt", content_length="10000"))[0] is None


def test_an_unknown_target_gets_the_small_limit() -> None:
    assert LIMITS.check_kms(headers(x_amz_target="TrentService.Nope"))[1] == 16384
    assert LIMITS.check_kms(headers())[1] == 16384
    assert LIMITS.check_other(headers(content_length="16385"))[0] is not None


def run(coroutine: Any) -> Any:
    return asyncio.new_event_loop().run_until_complete(coroutine)


def test_reading_stops_at_the_limit_and_leaves_the_rest_unread() -> None:
    handed: list[int] = []

    async def receive() -> dict[str, Any]:
        handed.append(1)
        return {"type": "http.request", "body": b" " * 65536, "more_body": True}  # a body that never ends

    body, refusal = run(LIMITS.read_limited(receive, 100_000))
    assert body is None and refusal is not None and refusal.status == 413 and "more than 100000" in refusal.message
    assert len(handed) == 2  # 131072 bytes read: the first chunk past the limit, and nothing after it


def test_a_body_within_the_limit_is_joined_and_a_disconnect_is_nothing() -> None:
    chunks = iter([{"type": "http.request", "body": b"ab", "more_body": True},
                   {"type": "http.request", "body": b"cd", "more_body": False}])

    async def receive() -> dict[str, Any]:
        return next(chunks)

    assert run(LIMITS.read_limited(receive, 4)) == (b"abcd", None)

    async def gone() -> dict[str, Any]:
        return {"type": "http.disconnect"}

    assert run(LIMITS.read_limited(gone, 4)) == (None, None)


def test_replay_hands_the_body_over_once_then_waits_on_the_server() -> None:
    async def server() -> dict[str, Any]:
        return {"type": "http.disconnect"}

    async def both() -> list[dict[str, Any]]:
        again = replay(b"xyz", server)
        return [await again(), await again()]

    first, second = run(both())
    assert first == {"type": "http.request", "body": b"xyz", "more_body": False}
    assert second == {"type": "http.disconnect"}


def test_json_nested_past_the_bound_is_refused_and_a_body_of_brackets_in_strings_is_not() -> None:
    deep = b'{"Limit": 5, "X": ' + b"[" * (MAX_JSON_DEPTH + 1) + b"]" * (MAX_JSON_DEPTH + 1) + b"}"
    with pytest.raises(SerializationError, match="more than 32 deep"):
        WIRE.parse_request("ListKeys", deep)
    very_deep = b'{"X": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    with pytest.raises(SerializationError, match="more than 32 deep"):
        WIRE.parse_request("ListKeys", very_deep)
    brackets = json.dumps({"Marker": "[{" * 100}).encode()
    assert WIRE.parse_request("ListKeys", brackets) == {"Marker": "[{" * 100}


# -- short echoes -------------------------------------------------------------------------------------------

def test_shown_keeps_a_short_prefix() -> None:
    assert shown("short") == "short"
    assert shown(HUGE) == "h" * SHOWN_CHARS + "…"
    assert shown(HUGE, 10) == "h" * 10 + "…"


def test_a_validation_error_shows_a_prefix_of_a_10_mb_value() -> None:
    with pytest.raises(ValidationError) as refused:
        WIRE.parse_request("CreateKey", json.dumps({"Description": "d" * 10_000_000}).encode())
    message = refused.value.message
    assert "less than or equal to 8192" in message and len(message) < 300 and "d" * (SHOWN_CHARS + 1) not in message


def test_a_validation_error_on_a_long_list_or_map_key_shows_a_prefix() -> None:
    with pytest.raises(ValidationError) as refused:
        WIRE.parse_request("UntagResource", json.dumps({"KeyId": "k", "TagKeys": ["t" * 1000] * 1000}).encode())
    message = refused.value.message  # 1000 violations: the first few, each value shown short, then a count
    assert message.startswith("1000 validation errors detected") and message.endswith("; and 992 more")
    assert len(message) < 2500
    with pytest.raises(SerializationError) as wrong:
        WIRE.parse_request("Encrypt", json.dumps({"KeyId": "k", "Plaintext": "AA==",
                                                  "EncryptionContext": {"c" * 100_000: 1}}).encode())
    assert len(wrong.value.message) < 200


def test_key_alias_and_policy_errors_show_prefixes() -> None:
    scope = Scope("111122223333", "us-east-1")
    for bad in ("arn:" + HUGE, HUGE):
        with pytest.raises(NotFoundError) as refused:
            parse_key_reference(bad, scope)
        assert len(refused.value.message) < 300
    with pytest.raises(ValidationError) as alias:
        validate_alias_name("alias/" + "!" * 100_000, for_create=True)
    assert len(alias.value.message) < 300
    policy = json.dumps({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": "*", "Action": "kms:" + "Q" * 20_000, "Resource": "*"}]})
    with pytest.raises(MalformedPolicyDocumentError) as malformed:
        parse_policy(policy)
    assert len(malformed.value.message) < 400


def test_sigv4_errors_show_prefixes_of_what_the_client_sent() -> None:
    now = datetime(2026, 11, 1, tzinfo=timezone.utc)
    for authorization in (f"AWS4-HMAC-SHA256 Credential={HUGE}, SignedHeaders=host, Signature=00",
                          f"AWS4-HMAC-SHA256 Credential=A/20261101/us-east-1/kms/aws4_request, SignedHeaders={HUGE}, "
                          "Signature=00", f"AWS4-HMAC-SHA256 {HUGE}", f"{HUGE} Credential=x"):
        with pytest.raises(KmsError) as refused:
            verify_sigv4(method="POST", path="/", query_string="", body=b"", now=now,
                         headers=[("authorization", authorization), ("host", "h"), ("x-amz-date", "20261101T000000Z")],
                         lookup_secret=lambda key: "secret")
        assert len(refused.value.message) < 700, type(refused.value)


def test_the_error_body_caps_any_message() -> None:
    body = json.loads(error_body(IncompleteSignatureError("x" * 50_000)))
    assert body["__type"] == "IncompleteSignatureException"
    assert len(body["message"]) == MAX_MESSAGE_CHARS + 1 and body["message"].endswith("…")
