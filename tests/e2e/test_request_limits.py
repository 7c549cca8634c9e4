"""Limits before work, against a real server on SQLite and PostgreSQL: issue #11's measurements 1, 3 and 4
as regression tests. Headers over KEYLEDGER_MAX_HEADER_BYTES answer 431 and bodies over their operation's
limit 413, before a signature is checked or the body read; what was measured on the old main is in each
test's name. Memory bounds are generous; nothing here is timed."""
from __future__ import annotations

import json
import threading
from typing import Any

import httpx
import pytest
from botocore.exceptions import ClientError

from api.body_limits import derived_body_limits
from api.wire_model import WireModel
from application.audit.bounds import MAX_RECORD_BYTES, MAX_UNAUTHENTICATED_RECORD_BYTES, TRUNCATED_MARK
from tests.e2e.helpers import code, status, unvalidated_client
from tests.e2e.limits_support import (
    MiB,
    audit_states,
    error_of,
    forged_headers,
    memory_kib,
    post,
    records,
    signed_headers,
    status_of,
    stream_until_answered,
)
from tests.servers import Server

LIMITS = derived_body_limits(WireModel().service_model)
ROW_OVERHEAD = 512  # the stored event around a record: its timestamp, seq, leaf and chain


def new_states(before: dict[int, bytes], after: dict[int, bytes]) -> list[bytes]:
    return [state for seq, state in after.items() if seq not in before]


# -- measurement 1: a 4 MB User-Agent and a 1 MB X-Amz-Target without credentials --------------------------

def test_a_4_mb_user_agent_with_a_made_up_key_answers_431_and_no_longer_writes_4_mb_records(
        shared_server: Server) -> None:
    before = audit_states(shared_server)
    for _ in range(25):
        status_code, kind, message = error_of(post(shared_server, b"{}", forged_headers(**{"User-Agent": "x" * 4_000_000})))
        assert (status_code, kind) == (431, "RequestHeaderFieldsTooLargeException")
        assert "headers" in message and len(message) < 300
    grown = new_states(before, audit_states(shared_server))
    # Refused while the head was still arriving: counted for the window's summary, no record of their own.
    assert sum(map(len, grown)) < 25 * 1024, [len(s) for s in grown]
    assert shared_server.process is not None and shared_server.process.poll() is None


def test_headers_just_over_the_limit_are_refused_with_a_bounded_record_then_only_counted(
        shared_server: Server) -> None:
    before = audit_states(shared_server)
    for _ in range(30):  # 20 KB: over KEYLEDGER_MAX_HEADER_BYTES (16384), under the connection guard's bound
        status_code, kind, _ = error_of(post(shared_server, b"{}", forged_headers(**{"User-Agent": "y" * 20_000})))
        assert (status_code, kind) == (431, "RequestHeaderFieldsTooLargeException")
    first = new_states(before, audit_states(shared_server))
    assert len(first) <= 10  # KEYLEDGER_AUDIT_UNAUTHENTICATED_PER_SOURCE: the rest wait for the summary
    assert all(len(state) <= MAX_UNAUTHENTICATED_RECORD_BYTES + ROW_OVERHEAD for state in first)
    for state in first:
        record = json.loads(state)["record"]
        assert record["errorCode"] == "RequestHeaderFieldsTooLargeException"
        assert record["userAgent"].endswith(TRUNCATED_MARK) and len(record["userAgent"]) < 1100
        assert "userAgent" in record["additionalEventData"]["truncatedFields"]
    middle = audit_states(shared_server)
    for _ in range(10):
        assert post(shared_server, b"{}", forged_headers(**{"User-Agent": "y" * 20_000})).status_code == 431
    assert new_states(middle, audit_states(shared_server)) == []  # once aggregated, storage does not grow


def test_a_1_mb_target_answers_431(shared_server: Server) -> None:
    before = audit_states(shared_server)
    response = post(shared_server, b"{}", forged_headers(target="TrentService." + "A" * 1_000_000))
    assert error_of(response)[:2] == (431, "RequestHeaderFieldsTooLargeException")
    assert sum(map(len, new_states(before, audit_states(shared_server)))) < 4096


def test_a_long_unknown_target_is_recorded_with_a_short_event_name(shared_server: Server) -> None:
    target = "TrentService." + "Z" * 10_000  # under the header limit: it reaches authentication and the record
    response = post(shared_server, b"{}", signed_headers(shared_server, "Z" * 10_000, b"{}"))
    status_code, kind, message = error_of(response)
    assert (status_code, kind) == (400, "UnknownOperationException")
    assert len(message) < 300 and "Z" * 200 not in message
    record = next(r for r in reversed(records(shared_server))
                  if r["requestID"] == response.headers["x-amzn-RequestId"])
    assert record["eventName"] == target[len("TrentService."):][:128] + TRUNCATED_MARK
    assert "eventName" in record["additionalEventData"]["truncatedFields"]


# -- measurement 3: a 200 MiB body, and a 10 MB whitespace-padded ListKeys ----------------------------------

def test_a_200_mib_body_without_credentials_is_refused_413_before_it_is_read(shared_server: Server) -> None:
    before = memory_kib(shared_server)
    answer, sent = stream_until_answered(shared_server, forged_headers(), declared=200 * MiB)
    assert status_of(answer) == 413, answer[:300]
    assert b"RequestEntityTooLargeException" in answer and b"connection: close" in answer.lower()
    assert sent < 32 * MiB  # answered from Content-Length, while the client was still sending
    assert memory_kib(shared_server)["VmHWM"] < before["VmRSS"] + 64 * 1024
    assert httpx.get(shared_server.endpoint + "/healthz").status_code == 200  # and the server goes on


def test_a_chunked_body_is_refused_413_once_it_passes_the_limit(shared_server: Server) -> None:
    answer, sent = stream_until_answered(shared_server, forged_headers(), declared=None)
    assert status_of(answer) == 413, answer[:300]
    assert sent < 32 * MiB  # reading stopped at ListKeys' limit; the rest was never read


def test_four_200_mib_bodies_at_once_leave_memory_bounded(shared_server: Server) -> None:
    before = memory_kib(shared_server)
    answers: list[tuple[bytes, int]] = []

    def upload(declared: int | None) -> None:
        answers.append(stream_until_answered(shared_server, forged_headers(), declared=declared))

    threads = [threading.Thread(target=upload, args=(size,)) for size in (200 * MiB, None, 200 * MiB, None)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert sorted(status_of(answer) for answer, _ in answers) == [413] * 4
    # The old main buffered each: 1.8 GiB for four. Now a connection holds at most its operation's limit.
    assert memory_kib(shared_server)["VmHWM"] < before["VmRSS"] + 96 * 1024


def test_a_10_mb_whitespace_padded_list_keys_is_refused_413(shared_server: Server) -> None:
    body = b"{" + b" " * 10_000_000 + b"}"
    status_code, kind, message = error_of(post(shared_server, body, signed_headers(shared_server, "ListKeys", body)))
    assert (status_code, kind) == (413, "RequestEntityTooLargeException")
    assert str(LIMITS["ListKeys"]) in message and "10000002" in message


def test_whitespace_within_the_operation_limit_is_accepted(shared_server: Server) -> None:
    body = b"{" + b" \n" * 2000 + b'"Limit": 5}'
    assert len(body) < LIMITS["ListKeys"]
    response = post(shared_server, body, signed_headers(shared_server, "ListKeys", body))
    assert response.status_code == 200, response.text


def test_nesting_past_the_json_depth_bound_is_refused(shared_server: Server) -> None:
    body = b'{"Unknown": ' + b"[" * 40 + b"]" * 40 + b"}"
    status_code, kind, message = error_of(post(shared_server, body, signed_headers(shared_server, "ListKeys", body)))
    assert (status_code, kind) == (400, "SerializationException") and "32" in message


# -- measurement 4: a 10,000,000-character Description ------------------------------------------------------

def test_a_10_000_000_character_description_is_refused_413_without_echo(shared_server: Server) -> None:
    kms = unvalidated_client(shared_server)
    with pytest.raises(ClientError) as refused:
        kms.create_key(Description="d" * 10_000_000)
    assert (code(refused.value), status(refused.value)) == ("RequestEntityTooLargeException", 413)
    assert len(refused.value.response["Error"]["Message"]) < 300


def test_a_100_000_character_description_gets_a_short_validation_message_and_a_bounded_record(
        shared_server: Server) -> None:
    kms = unvalidated_client(shared_server)
    with pytest.raises(ClientError) as refused:
        kms.create_key(Description="d" * 100_000)
    message = refused.value.response["Error"]["Message"]
    assert code(refused.value) == "ValidationException"
    assert "less than or equal to 8192" in message and len(message) < 400 and "d" * 200 not in message
    request_id = refused.value.response["ResponseMetadata"]["RequestId"]
    record, state = next((json.loads(s)["record"], s) for s in audit_states(shared_server).values()
                         if json.loads(s)["record"]["requestID"] == request_id)
    assert len(state) <= MAX_RECORD_BYTES + 512 and record["errorMessage"] == message


def test_operation_limits_fit_their_largest_request_and_refuse_more(shared_server: Server) -> None:
    """A valid DescribeKey at the model's maxima (10 grant tokens of 8192 characters, escaped) fits its limit;
    one byte past the limit does not."""
    tokens = ["\\u0041" * 8192] * 10
    body = ('{"KeyId": "' + "k" * 2048 + '", "GrantTokens": [' + ", ".join(f'"{t}"' for t in tokens) + "]}").encode()
    assert len(body) < LIMITS["DescribeKey"]
    response = post(shared_server, body, signed_headers(shared_server, "DescribeKey", body))
    assert error_of(response)[1] == "NotFoundException"  # validated and run: the key does not exist
    padded = body[:-1] + b" " * (LIMITS["DescribeKey"] - len(body) + 1) + b"}"
    assert error_of(post(shared_server, padded, signed_headers(shared_server, "DescribeKey", padded)))[0] == 413


# -- the other paths ------------------------------------------------------------------------------------

@pytest.mark.parametrize("path", ["/v1/keys", "/healthz", "/metrics"])
def test_other_paths_bound_headers_and_bodies(shared_server: Server, path: str) -> None:
    big = httpx.get(shared_server.endpoint + path, headers={"X-Filler": "f" * 20_000})
    assert error_of(big)[:2] == (431, "RequestHeaderFieldsTooLargeException")
    with httpx.Client() as client:
        bodied = client.request("GET", shared_server.endpoint + path, content=b"b" * 100_000)
    assert error_of(bodied)[:2] == (413, "RequestEntityTooLargeException")
    assert httpx.get(shared_server.endpoint + "/healthz").status_code == 200


def test_boto3_calls_are_untouched_by_the_limits(shared_server: Server) -> None:
    kms: Any = shared_server.client()
    key = kms.create_key(Description="x" * 8192, Tags=[{"TagKey": f"k{i}", "TagValue": "v" * 256} for i in range(50)])
    blob = kms.encrypt(KeyId=key["KeyMetadata"]["KeyId"], Plaintext=b"p" * 4096,
                       EncryptionContext={f"c{i}": "v" * 100 for i in range(60)})["CiphertextBlob"]
    assert kms.decrypt(CiphertextBlob=blob, EncryptionContext={f"c{i}": "v" * 100 for i in range(60)})["Plaintext"] \
        == b"p" * 4096
