"""Operator calls for the principal and access-key commands, recorded as CloudTrail records IAM calls
(eventSource iam.amazonaws.com, IAM's event names and request parameter spelling). IAM is a global service;
CloudTrail records its calls in us-east-1, and so do we.

The operator is not an AWS identity: they act through direct database access (the ``keyledger`` command
line), so userIdentity says who ran it on which host, with type ``Operator``. No secret is ever recorded:
CreateAccessKey's response element names the key id and status only, as CloudTrail does.
"""
from __future__ import annotations

from datetime import datetime
from typing import Any

from application.audit.records import new_ids
from application.calls import Call, Operator

IAM_SOURCE = "iam.amazonaws.com"
IAM_REGION = "us-east-1"


def operator_call(*, event_name: str, at: datetime, operator: Operator, account_id: str | None,
                  request_parameters: dict[str, Any]) -> Call:
    request_id, event_id = new_ids(2)
    return Call.operator_call(event_name, operator=operator, at=at, request_id=request_id, event_id=event_id,
                              source=IAM_SOURCE, region=IAM_REGION, account_id=account_id,
                              request_parameters=request_parameters)


__all__ = ["Operator", "operator_call", "IAM_SOURCE", "IAM_REGION"]
