"""CloudTrail-shaped audit records and the context of the call being audited.

The API (or the maintenance pass) opens a CallContext for each call; the write path reads it through a
context variable, so a key change and its record are written in one transaction without every service
method passing it along.
"""
from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable

from domain.crypto.primitives import random_bytes

EVENT_VERSION = "1.08"
EVENT_SOURCE = "kms.amazonaws.com"

# Operations that change state; every other KMS operation is readOnly in CloudTrail (Decrypt included).
MUTATING = frozenset({
    "CreateKey", "EnableKey", "DisableKey", "UpdateKeyDescription", "ScheduleKeyDeletion", "CancelKeyDeletion",
    "TagResource", "UntagResource", "CreateAlias", "UpdateAlias", "DeleteAlias", "PutKeyPolicy",
    "EnableKeyRotation", "DisableKeyRotation", "RotateKeyOnDemand", "GetParametersForImport",
    "ImportKeyMaterial", "DeleteImportedKeyMaterial", "CreateGrant", "RetireGrant", "RevokeGrant",
    "ReplicateKey", "UpdatePrimaryRegion",
})


def iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


_last_iso: tuple[int, str] = (-1, "")


def _iso_now(moment: datetime) -> str:
    """iso() for the call being recorded: every call in one second shares the text, so keep the last one."""
    global _last_iso
    second = int(moment.timestamp())
    last = _last_iso
    if last[0] != second:
        last = _last_iso = (second, iso(moment))
    return last[1]


def new_ids(count: int = 1) -> list[str]:
    """Random (version 4) UUIDs as text, as str(uuid.uuid4()) spells them, from one draw of random bytes."""
    raw = bytearray(random_bytes(16 * count))
    out = []
    for i in range(0, 16 * count, 16):
        raw[i + 6] = (raw[i + 6] & 0x0F) | 0x40  # version 4
        raw[i + 8] = (raw[i + 8] & 0x3F) | 0x80  # RFC 4122 variant
        h = raw[i:i + 16].hex()
        out.append(f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}")
    return out


@dataclass
class CallContext:
    record: dict[str, Any]
    committed: bool = False
    resources: list[str] = field(default_factory=list)
    # For a key change recorded inside its transaction: renders responseElements from the changed key.
    respond_from: Callable[[Any], dict[str, Any] | None] | None = None
    # What authorization reads besides the record; never persisted (params may hold plaintext).
    params: dict[str, Any] = field(default_factory=dict, repr=False)
    secure_transport: bool = False
    at: datetime = field(default_factory=lambda: datetime.now(tz=timezone.utc))
    authorized: bool = False  # set by the check that allowed this call (application/authorization/authorizer.py)

    @classmethod
    def api_call(cls, *, event_name: str, at: datetime, region: str | None, source_ip: str | None,
                 user_agent: str | None, request_id: str, event_id: str | None = None) -> CallContext:
        return cls(record={
            "eventVersion": EVENT_VERSION, "eventTime": _iso_now(at), "eventSource": EVENT_SOURCE,
            "eventName": event_name, "awsRegion": region, "userIdentity": {"type": "Unknown"},
            "sourceIPAddress": source_ip, "userAgent": user_agent, "requestParameters": None,
            "responseElements": None, "errorCode": None, "errorMessage": None, "requestID": request_id,
            "eventID": event_id or new_ids()[0], "readOnly": event_name not in MUTATING, "resources": [],
            "eventType": "AwsApiCall", "managementEvent": True, "eventCategory": "Management",
        }, at=at)

    @classmethod
    def service_event(cls, *, event_name: str, at: datetime, region: str, account_id: str) -> CallContext:
        return cls(record={
            "eventVersion": EVENT_VERSION, "eventTime": iso(at), "eventSource": EVENT_SOURCE,
            "eventName": event_name, "awsRegion": region,
            "userIdentity": {"accountId": account_id, "invokedBy": EVENT_SOURCE},
            "sourceIPAddress": EVENT_SOURCE, "userAgent": EVENT_SOURCE, "requestParameters": None,
            "responseElements": None, "errorCode": None, "errorMessage": None,
            "requestID": new_ids()[0], "eventID": new_ids()[0], "readOnly": False, "resources": [],
            "eventType": "AwsServiceEvent", "managementEvent": True, "eventCategory": "Management",
            "recipientAccountId": account_id,
        }, at=at)

    def identify(self, *, principal_arn: str, account_id: str, access_key_id: str, region: str,
                 unique_id: str | None = None, role_arn: str | None = None) -> None:
        """CloudTrail's userIdentity. ``unique_id``: the user's or role's IAM id (AIDA..., AROA...);
        ``role_arn``: for a role session, the role (with its path), which CloudTrail names as the issuer."""
        root = principal_arn.endswith(":root")
        session = ":assumed-role/" in principal_arn
        name = principal_arn.rsplit("/", 1)[-1]
        owner_id = unique_id or account_id  # a principal recorded before unique ids: the account stands in
        identity: dict[str, Any] = {
            "type": "Root" if root else ("AssumedRole" if session else "IAMUser"),
            "principalId": account_id if root else f"{owner_id}:{name}" if session or not unique_id else unique_id,
            "arn": principal_arn, "accountId": account_id, "accessKeyId": access_key_id,
        }
        if not root and not session:
            identity["userName"] = name
        if session and role_arn:
            identity["sessionContext"] = {
                "sessionIssuer": {"type": "Role", "principalId": owner_id, "arn": role_arn, "accountId": account_id,
                                  "userName": role_arn.rsplit("/", 1)[-1]},
                "attributes": {"mfaAuthenticated": "false"},
            }
        self.record["userIdentity"] = identity
        self.record["awsRegion"] = region
        self.record["recipientAccountId"] = account_id

    def add_resource(self, arn: str | None) -> None:
        if arn and arn.startswith("arn:") and ":key/" in arn and arn not in self.resources:
            self.resources.append(arn)

    def finish(self, *, error_code: str | None = None, error_message: str | None = None,
               response_elements: dict[str, Any] | None = None) -> dict[str, Any]:
        self.record["errorCode"] = error_code
        self.record["errorMessage"] = error_message
        self.record["responseElements"] = response_elements
        return self.final_record()

    def final_record(self) -> dict[str, Any]:
        self.record["resources"] = [
            {"accountId": arn.split(":")[4], "type": "AWS::KMS::Key", "ARN": arn} for arn in self.resources]
        return self.record


current_call: ContextVar[CallContext | None] = ContextVar("keyledger_current_call", default=None)
