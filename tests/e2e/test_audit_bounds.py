"""Bounded audit records and aggregated failed authentication, against a real server on SQLite and
PostgreSQL: a record stays within its bound whatever the request held, and a flood of failures from one
source adds at most the documented records per window plus one summary, written by the server's timer
or at graceful shutdown."""
from __future__ import annotations

import json
from typing import Any

import httpx

from application.audit.bounds import MAX_RECORD_BYTES, MAX_UNAUTHENTICATED_RECORD_BYTES, TRUNCATED_MARK
from application.audit.unauthenticated import SUMMARY_EVENT
from tests.e2e.limits_support import audit_states, error_of, forged_headers, post, records, wait_for
from tests.e2e.test_audit_support import verify
from tests.servers import Server

ROW_OVERHEAD = 512  # the stored event around a record: its timestamp, seq, leaf and chain


def summaries(server: Server) -> list[dict[str, Any]]:
    return [r for r in records(server) if r["eventName"] == SUMMARY_EVENT]


def test_a_record_of_the_largest_valid_create_key_is_bounded_and_marked(servers) -> None:
    server = servers.start()
    kms = server.client()
    statement = {"Sid": "s" * 100, "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::111122223333:root"},
                 "Action": "kms:*", "Resource": "*"}
    policy = json.dumps({"Version": "2012-10-17", "Statement": [dict(statement, Sid=f"s{i}" + "x" * 90)
                                                                for i in range(140)]})  # 30 KB of the 32 KB AWS allows
    key = kms.create_key(Description="d" * 8192, Policy=policy,
                         Tags=[{"TagKey": f"k{i}" + "k" * 120, "TagValue": "é" * 256} for i in range(50)])
    request_id = key["ResponseMetadata"]["RequestId"]
    state = next(s for s in audit_states(server).values() if json.loads(s)["record"]["requestID"] == request_id)
    record = json.loads(state)["record"]
    assert len(state) <= MAX_RECORD_BYTES + ROW_OVERHEAD
    extra = record["additionalEventData"]
    assert "requestParameters.description" in extra["truncatedFields"]
    assert extra["truncatedFieldCount"] >= 2
    parameters = record["requestParameters"]
    assert parameters.get("omitted") or parameters["description"].endswith(TRUNCATED_MARK)
    assert verify(server).ok  # the chain covers the bounded record: what is stored is what is hashed


def test_a_failed_authentication_flood_adds_at_most_the_bound_then_one_summary(servers) -> None:
    server = servers.start(KEYLEDGER_AUDIT_UNAUTHENTICATED_PER_SOURCE="3", KEYLEDGER_AUDIT_UNAUTHENTICATED_TOTAL="5",
                           KEYLEDGER_AUDIT_UNAUTHENTICATED_WINDOW_SECONDS="10")
    server.client().list_keys()  # the log exists, and one authenticated record is in it
    before = audit_states(server)
    for _ in range(40):
        status_code, kind, _ = error_of(post(server, b"{}", forged_headers(**{"User-Agent": "u" * 10_000})))
        assert (status_code, kind) == (400, "UnrecognizedClientException")
    wait_for(lambda: summaries(server), "the window's summary record", attempts=600)
    stored = [state for seq, state in audit_states(server).items() if seq not in before]
    grown = [json.loads(state)["record"] for state in stored]
    own = [r for r in grown if r["eventName"] != SUMMARY_EVENT]
    written = [r for r in grown if r["eventName"] == SUMMARY_EVENT]
    # The 40 requests normally fall in one window: 3 records and a summary counting 37. However slow the
    # machine, each window adds at most 3 records and one summary, and every request is accounted for.
    assert len(own) <= 3 * len(written) and all(r["errorCode"] == "UnrecognizedClientException" for r in own)
    assert len(own) + sum(r["additionalEventData"]["aggregatedCount"] for r in written) == 40
    assert all(len(state) <= MAX_UNAUTHENTICATED_RECORD_BYTES + ROW_OVERHEAD
               for state, record in zip(stored, grown) if record in own)
    assert sum(map(len, stored)) <= len(written) * (3 * (MAX_UNAUTHENTICATED_RECORD_BYTES + ROW_OVERHEAD)
                                                    + MAX_RECORD_BYTES + ROW_OVERHEAD)
    data = written[0]["additionalEventData"]
    assert data["recordedIndividually"] == 3 and data["sources"] == {"127.0.0.1": data["aggregatedCount"]}
    assert list(data["errorCodes"]) == ["UnrecognizedClientException"] and list(data["operations"]) == ["ListKeys"]
    assert written[0]["eventType"] == "AwsServiceEvent" and written[0]["readOnly"] is True
    for record in own:
        assert record["userAgent"].endswith(TRUNCATED_MARK)
    assert verify(server).ok


def test_the_window_under_way_is_summarized_at_graceful_shutdown(servers) -> None:
    server = servers.start(KEYLEDGER_AUDIT_UNAUTHENTICATED_PER_SOURCE="2",
                           KEYLEDGER_AUDIT_UNAUTHENTICATED_WINDOW_SECONDS="3600")
    server.client().list_keys()
    for _ in range(12):
        assert post(server, b"{}", forged_headers(target="TrentService.NoSuchThing")).status_code == 400
    assert summaries(server) == []  # the window is an hour long
    server.stop()  # SIGTERM: uvicorn's graceful shutdown
    (summary,) = summaries(server)
    assert summary["additionalEventData"]["aggregatedCount"] == 10
    assert summary["additionalEventData"]["operations"] == {"(unknown)": 10}  # a made-up name is not kept


def test_past_its_rate_a_source_s_failures_answer_throttling_and_are_only_counted(servers) -> None:
    server = servers.start(KEYLEDGER_QUOTA_UNAUTHENTICATED_PER_SECOND="0.001")
    kms = server.client()
    kms.list_keys()
    before = audit_states(server)
    assert error_of(post(server, b"{}", forged_headers()))[1] == "UnrecognizedClientException"
    for _ in range(5):
        assert error_of(post(server, b"{}", forged_headers())) == (400, "ThrottlingException", "Rate exceeded")
    kms.list_keys()  # the same address, authenticated: never held back by someone else's failures
    grown = [json.loads(s)["record"] for seq, s in audit_states(server).items() if seq not in before]
    assert [r["errorCode"] for r in grown] == ["UnrecognizedClientException", None]


def test_failed_authentication_on_v1_is_aggregated_too(servers) -> None:
    server = servers.start(KEYLEDGER_AUDIT_UNAUTHENTICATED_PER_SOURCE="2",
                           KEYLEDGER_AUDIT_UNAUTHENTICATED_WINDOW_SECONDS="3600")
    server.client().list_keys()
    before = audit_states(server)
    for _ in range(10):
        response = httpx.get(server.endpoint + "/v1/keys", headers=forged_headers())
        assert response.json()["__type"] == "UnrecognizedClientException"
    grown = [json.loads(s)["record"] for seq, s in audit_states(server).items() if seq not in before]
    assert [r["eventName"] for r in grown] == ["ListKeysAt", "ListKeysAt"]
