"""Audit records of the operator's principal and access-key changes, shaped as CloudTrail records IAM calls
(eventSource iam.amazonaws.com, IAM's event names and request parameter spelling). IAM is a global service;
CloudTrail records its calls in us-east-1, and so do we.

The operator is not an AWS identity: they act through direct database access (the ``keyledger`` command
line), so userIdentity says who ran it on which host, with type ``Operator``. No secret is ever recorded:
CreateAccessKey's response element names the key id and status only, as CloudTrail does.
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from application.audit.records import EVENT_VERSION, CallContext, iso

IAM_SOURCE = "iam.amazonaws.com"
IAM_REGION = "us-east-1"


@dataclass(frozen=True)
class Operator:
    """Who runs a command with direct database access: the OS user, the host, and the tool."""

    user: str
    host: str
    invoked_by: str = "keyledger-cli"


def operator_call(*, event_name: str, at: datetime, operator: Operator, account_id: str | None,
                  request_parameters: dict[str, Any]) -> CallContext:
    return CallContext({
        "eventVersion": EVENT_VERSION, "eventTime": iso(at), "eventSource": IAM_SOURCE, "eventName": event_name,
        "awsRegion": IAM_REGION,
        "userIdentity": {"type": "Operator", "userName": operator.user, "invokedBy": operator.invoked_by},
        "sourceIPAddress": operator.host, "userAgent": operator.invoked_by,
        "requestParameters": request_parameters, "responseElements": None, "errorCode": None, "errorMessage": None,
        "requestID": str(uuid.uuid4()), "eventID": str(uuid.uuid4()), "readOnly": False, "resources": [],
        "eventType": "AwsApiCall", "managementEvent": True, "eventCategory": "Management",
        "recipientAccountId": account_id,
    })
