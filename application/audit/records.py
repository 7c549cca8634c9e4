"""CloudTrail-shaped audit records, made from the Call they record (application/calls.py).

A record is made once, when the call is over, or inside the transaction of the key change it records (so the
change and its record commit together); the Call, not the record, carries who is calling until then.
"""
from __future__ import annotations

import os
from datetime import datetime, timezone
from typing import Any

from application.calls import ASSUMED_ROLE, IAM_USER, KMS_SOURCE, ROOT, Call, Caller, CallKind
from domain.crypto.primitives import public_random_bytes

EVENT_VERSION = "1.08"
EVENT_SOURCE = KMS_SOURCE

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


_POOL_SIZE = 256  # ids made per draw of random bytes
_VARIANT = {digit: "89ab"[int(digit, 16) & 3] for digit in "0123456789abcdef"}  # RFC 4122: the top bits are 10
_pool: list[str] = []  # ids made and not yet handed out; a forked child must not hand out its parent's
os.register_at_fork(after_in_child=_pool.clear)


def _refill() -> None:
    """Version 4 UUIDs, spelled as str(uuid.uuid4()) spells them, made _POOL_SIZE at a time: every call takes two
    (its request id and event id), and one draw and one pass over its hex digits cost less than a draw per call."""
    h = public_random_bytes(16 * _POOL_SIZE).hex()
    variant = _VARIANT
    _pool.extend(f"{h[i:i + 8]}-{h[i + 8:i + 12]}-4{h[i + 13:i + 16]}-{variant[h[i + 16]]}{h[i + 17:i + 20]}-"
                 f"{h[i + 20:i + 32]}" for i in range(0, 32 * _POOL_SIZE, 32))


def new_ids(count: int = 1) -> list[str]:
    """Random (version 4) UUIDs as text, as str(uuid.uuid4()) spells them. Threads share the pool (the loop, the
    failed-authentication summaries, handlers run in threads): each id is taken by one ``list.pop``, which no other
    thread can interleave with, so none is handed out twice."""
    taken: list[str] = []
    while len(taken) < count:
        try:
            taken.append(_pool.pop())
        except IndexError:  # empty, or emptied by another thread meanwhile
            _refill()
    return taken


_API, _SERVICE = CallKind.API, CallKind.SERVICE  # read on every record: a module global is the cheapest read


def cloudtrail_record(call: Call) -> dict[str, Any]:
    """The call's CloudTrail-shaped record, as it stands: made at the end of the call (or inside the
    transaction of the key change it records). Field order is part of the stored record; keep it."""
    kind, caller = call.kind, call.caller
    if kind is _API:
        event_time, event_type, read_only = _iso_now(call.at), "AwsApiCall", call.operation not in MUTATING
    else:
        event_time, read_only = iso(call.at), False
        event_type = "AwsServiceEvent" if kind is _SERVICE else "AwsApiCall"
    record = {
        "eventVersion": EVENT_VERSION, "eventTime": event_time, "eventSource": call.source,
        "eventName": call.operation, "awsRegion": call.region,
        "userIdentity": _caller_identity(caller) if caller is not None else user_identity(call),
        "sourceIPAddress": call.source_ip, "userAgent": call.user_agent,
        "requestParameters": call.request_parameters, "responseElements": call.response_elements,
        "errorCode": call.error_code, "errorMessage": call.error_message, "requestID": call.request_id,
        "eventID": call.event_id, "readOnly": read_only,
        "resources": [{"accountId": arn.split(":")[4], "type": "AWS::KMS::Key", "ARN": arn} for arn in call.resources],
        "eventType": event_type, "managementEvent": True, "eventCategory": "Management",
    }
    if caller is not None:
        record["recipientAccountId"] = caller.account_id
    elif kind is not _API:
        record["recipientAccountId"] = call.scope.account_id if call.scope else None
    extra = call.additional_event_data
    if call.authorized_by_rule:  # no policy was asked: say which rule allowed it
        extra = {**(extra or {}), "authorizedByRule": kind.value}
    if extra is not None:
        record["additionalEventData"] = extra
    return record


def user_identity(call: Call) -> dict[str, Any]:
    """CloudTrail's userIdentity of whoever made the call."""
    caller = call.caller
    if caller is not None:
        return _caller_identity(caller)
    if call.kind is _SERVICE:
        return {"accountId": call.scope.account_id if call.scope else None, "invokedBy": EVENT_SOURCE}
    if call.operator is not None:
        return {"type": "Operator", "userName": call.operator.user, "invokedBy": call.operator.invoked_by}
    if call.claimed_access_key_id is not None:  # what a request refused before its signature was checked claimed
        return {"type": "Unknown", "accessKeyId": call.claimed_access_key_id}
    return {"type": "Unknown"}


def _caller_identity(caller: Caller) -> dict[str, Any]:
    arn, account_id, kind = caller.principal_arn, caller.account_id, caller.kind
    name = arn.rsplit("/", 1)[-1]
    owner_id = caller.unique_id or account_id  # a principal recorded before unique ids: the account stands in
    if kind == ROOT:
        principal_id = account_id
    elif kind == ASSUMED_ROLE or not caller.unique_id:
        principal_id = f"{owner_id}:{name}"
    else:
        principal_id = caller.unique_id
    identity: dict[str, Any] = {"type": kind, "principalId": principal_id, "arn": arn, "accountId": account_id,
                                "accessKeyId": caller.access_key_id}
    if kind == IAM_USER:
        identity["userName"] = name
    elif kind == ASSUMED_ROLE and caller.role_arn:
        identity["sessionContext"] = {
            "sessionIssuer": {"type": "Role", "principalId": owner_id, "arn": caller.role_arn,
                              "accountId": account_id, "userName": caller.role_arn.rsplit("/", 1)[-1]},
            "attributes": {"mfaAuthenticated": "false"},
        }
    return identity
