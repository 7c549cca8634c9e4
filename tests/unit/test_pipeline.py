"""The request pipeline (api/pipeline.py) in process, on a real runtime (SQLite file, build_runtime) and real
SigV4-signed requests: the order of its stages, the limits stage's three hook points, the safety net that
refuses a call no check authorized, and one audit record and one metric per call, refused ones included."""
from __future__ import annotations

import asyncio
import json
from datetime import datetime
from pathlib import Path
from typing import Any, Iterator, Sequence

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from api.limits import Receive, RequestLimits
from api.metrics import Metrics
from api.pipeline import HttpRequest, RequestPipeline
from api.wire_model import WireModel
from application.audit.checkpoints import audit_records
from application.calls import Call
from infrastructure.bootstrap import Runtime, build_runtime
from infrastructure.settings import Settings
from tests.servers import ADMIN_KEY_ID, ADMIN_SECRET


@pytest.fixture
def runtime(tmp_path: Path) -> Iterator[Runtime]:
    rt = build_runtime(Settings.load(environ={"KEYLEDGER_ADMIN_ACCESS_KEY_ID": ADMIN_KEY_ID,
                                              "KEYLEDGER_ADMIN_SECRET_ACCESS_KEY": ADMIN_SECRET}, data_dir=tmp_path))
    try:
        yield rt
    finally:
        rt.close()


def signed(body: bytes = b"{}", secret: str = ADMIN_SECRET, user_agent: str = "pipeline-tests") -> HttpRequest:
    request = AWSRequest(method="POST", url="http://127.0.0.1/", data=body,
                         headers={"Content-Type": "application/x-amz-json-1.1", "User-Agent": user_agent})
    SigV4Auth(Credentials(ADMIN_KEY_ID, secret), "kms", "us-east-1").add_auth(request)
    headers = [(b"host", b"127.0.0.1"),  # signed, as the HTTP client would send it
               *((k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in request.headers.items())]
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return HttpRequest("POST", b"/", b"", headers, "192.0.2.7", False, receive)


class Probe:
    """A front that says what it saw; ``authorizes``: whether its authorize stage asks the authorizer."""

    content_type = b"application/json"

    def __init__(self, runtime: Runtime, stages: list[str], authorizes: bool = True) -> None:
        self.runtime, self.stages, self.authorizes = runtime, stages, authorizes

    def open(self, request: HttpRequest, at: datetime, request_id: str, event_id: str) -> tuple[Call, str | None]:
        self.stages.append("open")
        return Call.api("ListKeys", at=at, request_id=request_id, event_id=event_id, source_ip=request.client,
                        user_agent="pipeline-tests"), "ListKeys"

    def prepare(self, call: Call, operation: str | None, body: bytes) -> None:
        assert call.caller is not None and call.caller.principal_arn.endswith(":root")
        self.stages.append("prepare")

    def authorize(self, call: Call, operation: str | None) -> None:
        self.stages.append("authorize")
        if self.authorizes:
            assert self.runtime.services is not None
            self.runtime.services.authorizer.authorize_call(call)

    async def run(self, call: Call, operation: str | None) -> bytes:
        self.stages.append("run")
        return b'{"ran": true}'


WIRE = WireModel()


class Recording(RequestLimits):
    """The limits stage's hook points, in the order the pipeline calls them, with whether the caller was
    known by then."""

    def __init__(self, stages: list[str]) -> None:
        super().__init__(WIRE.service_model, 16384, None)
        self.stages = stages

    def check_headers(self, call: Call, raw_headers: Sequence[tuple[bytes, bytes]], fixed: int | None = None) -> int:
        assert any(name == b"authorization" for name, _ in raw_headers)
        self.stages.append(f"check_headers caller={call.caller is not None}")
        return super().check_headers(call, raw_headers, fixed)

    async def read_body(self, call: Call, receive: Receive, limit: int) -> bytes | None:
        self.stages.append(f"read_body caller={call.caller is not None}")
        return await super().read_body(call, receive, limit)

    def admit(self, call: Call) -> None:
        self.stages.append(f"admit caller={call.caller is not None}")


def serve(runtime: Runtime, front: Any, request: HttpRequest, limits: RequestLimits | None = None,
          metrics: Metrics | None = None) -> tuple[int, dict[bytes, bytes], bytes]:
    pipeline = RequestPipeline(runtime, metrics or Metrics(runtime, ["ListKeys"]), limits or RequestLimits(WIRE.service_model, 16384, None))
    runtime.audit.start()
    answer = asyncio.run(pipeline.serve(front, request))
    assert answer is not None
    status, headers, body = answer
    return status, dict(headers), body


def last_record(runtime: Runtime) -> dict[str, Any]:
    return list(audit_records(runtime.ledger))[-1]


def test_the_stages_run_in_order_and_the_limits_hooks_where_documented(runtime: Runtime) -> None:
    stages: list[str] = []
    status, headers, body = serve(runtime, Probe(runtime, stages), signed(), Recording(stages))
    assert (status, body) == (200, b'{"ran": true}')
    assert stages == ["open", "check_headers caller=False", "read_body caller=False", "admit caller=True",
                      "prepare", "authorize", "run"]
    record = last_record(runtime)
    assert record["requestID"] == headers[b"x-amzn-requestid"].decode()
    assert (record["eventName"], record["errorCode"], record["sourceIPAddress"]) == ("ListKeys", None, "192.0.2.7")
    assert record["userIdentity"]["accessKeyId"] == ADMIN_KEY_ID


def test_a_successful_call_no_check_authorized_answers_internal_error(runtime: Runtime) -> None:
    metrics = Metrics(runtime, ["ListKeys"])
    stages: list[str] = []
    status, headers, body = serve(runtime, Probe(runtime, stages, authorizes=False), signed(), metrics=metrics)
    assert status == 500 and json.loads(body)["__type"] == "KMSInternalException"
    assert stages[-1] == "run"  # it ran, and its answer was withheld
    assert last_record(runtime)["errorCode"] == "KMSInternalException"
    assert b'keyledger_requests_total{error_code="KMSInternalException",operation="ListKeys"} 1.0' in \
        metrics.exposition()


def test_a_refused_signature_stops_before_the_front_and_is_recorded_with_its_claim(runtime: Runtime) -> None:
    stages: list[str] = []
    status, _, body = serve(runtime, Probe(runtime, stages), signed(secret=ADMIN_SECRET[::-1]))
    assert status == 400 and json.loads(body)["__type"] == "InvalidSignatureException"
    assert stages == ["open"]
    record = last_record(runtime)
    assert record["userIdentity"] == {"type": "Unknown", "accessKeyId": ADMIN_KEY_ID}
    assert record["awsRegion"] == "us-east-1" and "recipientAccountId" not in record


def test_a_client_gone_before_its_body_gets_no_answer_and_no_record(runtime: Runtime) -> None:
    request = signed()

    async def gone() -> dict[str, Any]:
        return {"type": "http.disconnect"}

    request.receive = gone
    before = len(list(audit_records(runtime.ledger)))
    pipeline = RequestPipeline(runtime, Metrics(runtime, ["ListKeys"]), RequestLimits(WIRE.service_model, 16384, None))
    assert asyncio.run(pipeline.serve(Probe(runtime, []), request)) is None
    assert len(list(audit_records(runtime.ledger))) == before
