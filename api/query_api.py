"""The read-only /v1 query API: key state at an instant, timelines and the audit log, as JSON.

Authenticated like the KMS endpoint (SigV4, service `kms`, any region served), scoped to the caller's
account and region, and every query is itself audited (a readOnly record) before it is answered.
"""
from __future__ import annotations

import json
import uuid
from datetime import datetime, timezone
from typing import Any, Callable

from fastapi import APIRouter, Query, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from api.caller import authenticate
from api.errors import error_response, internal_error_response
from application.audit.checkpoints import audit_records
from application.audit.records import CallContext, current_call
from application.audit.trail import AuditUnavailable
from application.history.access_at import access_at
from domain.errors import InternalError, KmsError, ValidationError, shown
from domain.identifiers import Scope
from infrastructure.bootstrap import Runtime

MAX_AUDIT_PAGE = 1000
_AT = Query(None, description="RFC 3339 or epoch seconds; default now.")


def parse_instant(value: str | None) -> datetime:
    if value is None:
        return datetime.now(tz=timezone.utc)
    try:
        return datetime.fromtimestamp(float(value), tz=timezone.utc)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ValidationError(f"'{shown(value)}' is not a time: use RFC 3339 (2026-11-24T10:00:00Z) or epoch seconds.") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _json(value: Any) -> str:
    return json.dumps(value, default=lambda v: v.isoformat() if isinstance(v, datetime) else str(v))


def query_router(runtime: Runtime) -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["queries"])

    async def answer(request: Request, event_name: str, parameters: dict[str, Any], action: str,
                     resource: Callable[[Scope], str], run: Callable[[Scope], Any]) -> Response:
        request_id = str(uuid.uuid4())
        call = CallContext.api_call(event_name=event_name, at=runtime.now(), region=None,
                                    source_ip=request.client.host if request.client else None,
                                    user_agent=request.headers.get("user-agent"), request_id=request_id)
        call.secure_transport = request.url.scheme == "https"
        call.record["requestParameters"] = {k: v for k, v in parameters.items() if v is not None} or None
        headers = {"x-amzn-RequestId": request_id}
        own_record = True
        try:
            scope = authenticate(runtime, request, await request.body(), call)
            runtime.quotas.take(scope.account_id, scope.region, event_name)  # [bounds] a management call
            call.params = {k: v for k, v in parameters.items() if v is not None}
            assert runtime.services is not None  # authenticate refuses a sealed runtime
            token = current_call.set(call)
            try:
                runtime.services.authorizer.authorize_query(action, resource(scope))
            finally:
                current_call.reset(token)
            response = Response(_json(await run_in_threadpool(run, scope)), media_type="application/json",
                                headers=headers)
            call.finish()
        except KmsError as error:
            if "accountId" not in call.record["userIdentity"]:  # [bounds] failed before the caller was identified
                error, own_record = runtime.unauthenticated.refused(call.record["sourceIPAddress"], error, None)
            call.finish(error_code=error.code, error_message=error.message)
            response = error_response(error, request_id)
        except Exception:
            call.finish(error_code=InternalError.code, error_message="internal error")
            response = internal_error_response(request_id)
        if not own_record:  # [bounds] counted in the failed-authentication summary
            return response
        try:
            await runtime.audit.record_async(call.final_record())
        except AuditUnavailable:
            return internal_error_response(request_id)
        return response

    def history():  # type: ignore[no-untyped-def]
        assert runtime.services is not None
        return runtime.services.history

    @router.get("/keys/{key}", summary="A key's state as DescribeKey would have answered at an instant")
    async def key_at(request: Request, key: str, at: str | None = _AT) -> Response:
        return await answer(request, "GetKeyStateAt", {"keyId": key, "at": at}, "kms:DescribeKey", _named(key),
                            lambda s: history().key_at(s, key, parse_instant(at)))

    @router.get("/keys", summary="Every key of the caller's account and region at an instant")
    async def keys_at(request: Request, at: str | None = _AT, state: str | None = None,
                      key_spec: str | None = None, alias: str | None = None) -> Response:
        return await answer(request, "ListKeysAt", {"at": at, "state": state, "keySpec": key_spec, "alias": alias},
                            "kms:ListKeys", lambda s: "*", lambda s: {"Keys": history().keys_at(parse_instant(at), s.account_id, s.region, state,
                                                                  key_spec, alias)})

    @router.get("/keys/{key}/timeline", summary="Every change of a key, when, and who made it")
    async def timeline(request: Request, key: str) -> Response:
        return await answer(request, "GetKeyTimeline", {"keyId": key}, "kms:DescribeKey", _named(key),
                            lambda s: {"Events": history().timeline(key, s)})

    @router.get("/keys/{key}/access", summary="Who could perform an operation on the key at an instant")
    async def access(request: Request, key: str, operation: str, at: str | None = _AT,
                     principal: str | None = None) -> Response:
        return await answer(request, "GetKeyAccessAt", {"keyId": key, "operation": operation, "at": at,
                                                        "principal": principal},
                            "kms:DescribeKey", _named(key), lambda s: access_at(
                                history(), s, key, parse_instant(at), operation, principal,
                                directory=runtime.services.principals if runtime.services else None))

    @router.get("/audit", summary="Audit records, oldest first, paginated by seq")
    async def audit(request: Request, key: str | None = None, principal: str | None = None,
                    event: str | None = None, start: str | None = Query(None, alias="from"),
                    end: str | None = Query(None, alias="to"), limit: int = Query(100, ge=1, le=MAX_AUDIT_PAGE),
                    marker: int = Query(0, ge=0, description="NextMarker of the previous page")) -> Response:
        def run(scope: Scope) -> dict[str, Any]:
            low, high = (parse_instant(start) if start else None), (parse_instant(end) if end else None)
            found, last = [], marker
            for record in audit_records(runtime.ledger, after_seq=marker):
                last = record["seq"]
                if _matches(record, scope, key, principal, event, low, high):
                    found.append(record)
                    if len(found) == limit:
                        return {"Records": found, "NextMarker": last, "Truncated": True}
            return {"Records": found, "Truncated": False}

        return await answer(request, "LookupAuditEvents", {"key": key, "principal": principal, "event": event,
                                                            "from": start, "to": end, "limit": limit,
                                                            "marker": marker},
                            "cloudtrail:LookupEvents", lambda s: "*", run)

    return router


def _named(key: str) -> Callable[[Scope], str]:
    """The resource a key query is authorized on: the ARN of the key or alias the caller named."""
    def resource(scope: Scope) -> str:
        if key.startswith("arn:"):
            return key
        return scope.alias_arn(key) if key.startswith("alias/") else scope.key_arn(key)
    return resource


def _matches(record: dict[str, Any], scope: Scope, key: str | None, principal: str | None, event: str | None,
             low: datetime | None, high: datetime | None) -> bool:
    """Only the caller's own account's records; then the filters."""
    identity = record.get("userIdentity") or {}
    if scope.account_id not in (identity.get("accountId"), record.get("recipientAccountId")):
        return False
    if event and record.get("eventName") != event:
        return False
    if principal and identity.get("arn") != principal:
        return False
    if key and not any(r.get("ARN", "").endswith("/" + key) or r.get("ARN") == key
                       for r in record.get("resources") or []):
        return False
    at = datetime.fromisoformat(record["eventTime"].replace("Z", "+00:00")) if record.get("eventTime") else None
    return not ((low and at and at < low) or (high and at and at > high))
