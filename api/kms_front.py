"""The KMS protocol's front in the request pipeline (api/pipeline.py): AWS KMS JSON 1.1, one operation per
``X-Amz-Target: TrentService.<Operation>``, parsed and validated against botocore's model (api/wire_model.py),
run by the handlers of api/operations.py."""
from __future__ import annotations

from datetime import datetime
from typing import Any

from starlette.concurrency import run_in_threadpool

from api.audit_fields import audit_view
from api.errors import CONTENT_TYPE
from api.members import refuse_unhonoured
from api.operations import HANDLERS
from api.pipeline import HttpRequest
from api.wire_model import WireModel
from application.calls import Call
from application.keystores.ports import MustRunInThread
from domain.errors import UnknownOperationError, ValidationError, shown
from domain.keys.managed import valid_service_name
from infrastructure.runtime import Runtime

TARGET_PREFIX = "TrentService."
# The AWS service a caller acts through, which keyledger cannot observe: the caller declares it (decision 91).
VIA_SERVICE_HEADER = b"x-keyledger-via-service"

# Symmetric crypto runs on the event loop: it is microseconds of work on a cached key row and backing
# key (a miss is one indexed read), and the thread hop would cost more than the work (docs/performance.md).
INLINE_OPERATIONS = frozenset({"Encrypt", "Decrypt", "ReEncrypt", "GenerateDataKey",
                               "GenerateDataKeyWithoutPlaintext", "GenerateRandom"})

# Like CloudTrail, responses of crypto operations are not echoed; lifecycle responses are (minus blobs).
# Their records commit with the key change, before the response exists, so they are rendered from the key.
_ECHO_FROM_KEY: dict[str, Any] = {
    "CreateKey": lambda key: {"KeyMetadata": key.metadata()},
    "ScheduleKeyDeletion": lambda key: {"KeyId": key.arn, "DeletionDate": key.deletion_date, "KeyState": key.state,
                                        "PendingWindowInDays": key.pending_window_days},
    "CancelKeyDeletion": lambda key: {"KeyId": key.arn},
    # The replica is the last key its change names (application/keys/multi_region_service.py)
    "ReplicateKey": lambda key: {"ReplicaKeyMetadata": key.metadata(),
                                 "ReplicaTags": [{"TagKey": k, "TagValue": v} for k, v in sorted(key.tags.items())]},
    "CreateGrant": lambda key: {"GrantId": key.pending_grant_id()},  # never the token
}


class KmsFront:
    content_type = CONTENT_TYPE.encode("latin-1")

    def __init__(self, runtime: Runtime, wire: WireModel) -> None:
        self.runtime = runtime
        self.wire = wire

    def open(self, request: HttpRequest, at: datetime, request_id: str, event_id: str) -> tuple[Call, str | None]:
        """The call is named by X-Amz-Target (eventName: the target without its prefix, or as sent when it has
        none); the operation is None when the target does not name one."""
        target = user_agent = via_service = None
        for name, value in request.raw_headers:  # the first of a repeated header wins
            name = name.lower()
            if name == b"x-amz-target" and target is None:
                target = value
            elif name == b"user-agent" and user_agent is None:
                user_agent = value
            elif name == VIA_SERVICE_HEADER and via_service is None:
                via_service = value
        text = target.decode("latin-1") if target else ""
        prefixed = text.startswith(TARGET_PREFIX)
        call = Call.api(text[len(TARGET_PREFIX):] if prefixed else text, at=at, request_id=request_id,
                        event_id=event_id, source_ip=request.client,
                        user_agent=user_agent.decode("latin-1") if user_agent is not None else None,
                        secure_transport=request.secure)
        if via_service is not None:
            call.via_service = via_service.decode("latin-1")
        return call, call.operation if prefixed else None

    def prepare(self, call: Call, operation: str | None, body: bytes) -> None:
        if operation is None or operation not in HANDLERS or not self.wire.has_operation(operation):
            target = call.operation if operation is None else TARGET_PREFIX + operation
            raise UnknownOperationError(
                f"Operation '{shown(target) or '(no X-Amz-Target header)'}' is not supported by keyledger.")
        if call.via_service is not None:
            if not valid_service_name(call.via_service):
                raise ValidationError(f"The {VIA_SERVICE_HEADER.decode()} header names an AWS service by its endpoint "
                                      "prefix (s3, ebs, rds, ...): 1 to 64 lower-case letters, digits or '-'.")
            call.additional_event_data = {**(call.additional_event_data or {}), "viaService": call.via_service}
        params = self.wire.parse_request(operation, body)
        refuse_unhonoured(operation, params)  # before authorization: nothing is done for a refused member
        call.parameters = params
        call.request_parameters = audit_view(self.wire, operation, "in", params)
        echo = _ECHO_FROM_KEY.get(operation)
        if echo is not None:
            call.respond_from = lambda key, echo=echo, op=operation: audit_view(self.wire, op, "out", echo(key))

    def authorize(self, call: Call, operation: str | None) -> None:
        services = self.runtime.services
        assert services is not None  # authentication refuses a sealed runtime
        services.authorizer.authorize_call(call)

    async def run(self, call: Call, operation: str | None) -> bytes:
        services = self.runtime.services
        assert operation is not None and services is not None  # prepare refused the rest; authentication, a seal
        handler = HANDLERS[operation]
        if operation in INLINE_OPERATIONS:
            try:
                output = handler(services, call, call.parameters)
            except MustRunInThread:  # a key in an external key store: its XKS proxy is called, off the event loop
                output = await run_in_threadpool(handler, services, call, call.parameters)
        else:
            output = await run_in_threadpool(handler, services, call, call.parameters)
        return self.wire.response_body(operation, output or {})
