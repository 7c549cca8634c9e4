"""Calls for tests that drive application services directly: the authenticated API Call the request
pipeline (api/pipeline.py) would have made for the same request."""
from __future__ import annotations

import uuid
from datetime import datetime, timezone
from typing import Any

from application.calls import Call, Caller
from domain.identifiers import Scope


def api_call(operation: str, principal_arn: str, scope: Scope, *, at: datetime | None = None,
             parameters: dict[str, Any] | None = None, access_key_id: str = "AKIATEST",
             source_ip: str = "192.0.2.1") -> Call:
    """``operation`` made by ``principal_arn`` (of the ARN's account) in ``scope`` (as authentication sets it:
    the credential's account, the signature's region)."""
    call = Call.api(operation, at=at or datetime.now(timezone.utc), request_id=f"req-{uuid.uuid4()}",
                    event_id=str(uuid.uuid4()), source_ip=source_ip, user_agent="tests")
    call.authenticate(Caller(principal_arn, principal_arn.split(":")[4], access_key_id), scope)
    call.parameters = parameters or {}
    return call
