"""The read-only /v1 query API: key state at an instant, timelines and the audit log, as JSON.

Served by the same request pipeline as the KMS endpoint (api/pipeline.py): authenticated like it (SigV4,
service `kms`, any region served), scoped to the caller's account and region, authorized once, audited (a
readOnly record) before it is answered, and counted in the metrics.

A key is named in any form the KMS API accepts: key id, key ARN, alias name or alias ARN, its slashes
URL-encoded or not (``/v1/keys/alias%2Fapp`` and ``/v1/keys/alias/app`` are the same). Routing sees the
decoded path, so a trailing ``/timeline`` or ``/access`` is always the sub-resource: an alias whose own name
ends in one of those is queried by its key id or key ARN. An alias names the key it pointed to at the
instant asked about (``at``), and for the timeline and the audit filter the key it names now. The key queries
answer for the caller's own keys; the audit filter also takes another account's key ARN (a record of the
caller's account names it when the caller used that key).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable

from fastapi import APIRouter, Query, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from api.pipeline import HttpRequest, RequestPipeline
from application.calls import Call
from application.history.access_at import access_at
from application.history.point_in_time import MAX_TIMELINE_PAGE, TIMELINE_PAGE
from domain.errors import NotFoundError, ValidationError, shown
from domain.identifiers import parse_key_reference
from infrastructure.bootstrap import Runtime, Services
from projections.audit_index import AuditFilter

MAX_AUDIT_PAGE = 1000
QUERY_OPERATIONS = ("GetKeyStateAt", "ListKeysAt", "GetKeyTimeline", "GetKeyAccessAt", "LookupAuditEvents")
_AT = Query(None, description="RFC 3339 or epoch seconds; default now.")
_KEY = "A key id, key ARN, alias name or alias ARN (slashes URL-encoded or not)."


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


def key_named(services: Services, call: Call, key_ref: str, at: str | None) -> str:
    """The id of the key ``key_ref`` names in the caller's account and region. Key ids and ARNs are parsed as
    the KMS API parses them; an alias is resolved by the KMS API's KeyResolver (its target now) or, for a
    question about instant ``at``, by the alias's history (its target then)."""
    scope = call.in_scope()
    reference = parse_key_reference(key_ref, scope)
    if reference.account_id is not None:  # another account's ARN: /v1 answers for the caller's own keys only
        raise NotFoundError(f"Key '{key_ref}' does not exist")
    if reference.alias_name is not None and at is not None:
        return services.history.key_id_at(scope, key_ref, parse_instant(at))
    return services.resolver.key_id(call, key_ref)


@dataclass
class KeyQuery:
    """One /v1 request: its front in the request pipeline."""

    runtime: Runtime
    name: str  # eventName
    parameters: dict[str, Any]  # as the route received them
    action: str  # what IAM must allow
    answer: Callable[[Services, Call, str | None], Any]  # runs in a worker thread; gets the key id named
    key: str | None = None  # the key reference, resolved before authorization, which is on the key's ARN
    at: str | None = None  # the instant an alias is resolved at (None: now)
    content_type = b"application/json"
    _key_id: str | None = field(default=None, init=False)  # what ``key`` named, once resolved

    def open(self, request: HttpRequest, at: datetime, request_id: str, event_id: str) -> tuple[Call, str | None]:
        call = Call.api(self.name, at=at, request_id=request_id, event_id=event_id, source_ip=request.client,
                        user_agent=_header(request, b"user-agent"), secure_transport=request.secure)
        call.request_parameters = {k: v for k, v in self.parameters.items() if v is not None} or None
        return call, self.name

    def prepare(self, call: Call, operation: str | None, body: bytes) -> None:
        call.parameters = {k: v for k, v in self.parameters.items() if v is not None}

    async def authorize(self, call: Call, operation: str | None) -> None:
        await run_in_threadpool(self._authorize, call)  # resolving an alias reads the database

    async def run(self, call: Call, operation: str | None) -> bytes:
        return _json(await run_in_threadpool(self.answer, self._services(), call, self._key_id)).encode("utf-8")

    def _authorize(self, call: Call) -> None:
        services = self._services()
        resource = "*"
        if self.key is not None:
            self._key_id = key_named(services, call, self.key, self.at)
            resource = call.in_scope().key_arn(self._key_id)
        services.authorizer.authorize_query(call, self.action, resource)

    def _services(self) -> Services:
        assert self.runtime.services is not None  # authentication refuses a sealed runtime
        return self.runtime.services


def _header(request: HttpRequest, name: bytes) -> str | None:
    return next((v.decode("latin-1") for k, v in request.raw_headers if k.lower() == name), None)


def query_router(runtime: Runtime, pipeline: RequestPipeline) -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["queries"])

    async def serve(request: Request, query: KeyQuery) -> Response:
        answer = await pipeline.serve(query, HttpRequest.of(request.scope, request.receive))
        if answer is None:
            return Response(status_code=400)  # the client went away: nobody reads this
        status, headers, payload = answer
        return Response(payload, status_code=status, headers={k.decode(): v.decode() for k, v in headers})

    # The sub-resources first: the key part of a path may itself contain slashes (alias names, ARNs).
    @router.get("/keys/{key:path}/timeline", summary="Every change of a key, when, and who made it")
    async def timeline(request: Request, key: str,
                       limit: int = Query(TIMELINE_PAGE, ge=1, le=MAX_TIMELINE_PAGE, description="Events per page"),
                       marker: str | None = Query(None, max_length=12, description="NextMarker of the previous page"),
                       ) -> Response:
        return await serve(request, KeyQuery(
            runtime, "GetKeyTimeline", {"keyId": key, "limit": limit, "marker": marker}, "kms:DescribeKey", key=key,
            answer=lambda sv, call, key_id: sv.history.timeline_page(key_id, call.scope, limit, marker)))

    @router.get("/keys/{key:path}/access", summary="Who could perform an operation on the key at an instant")
    async def access(request: Request, key: str, operation: str, at: str | None = _AT,
                     principal: str | None = None) -> Response:
        return await serve(request, KeyQuery(
            runtime, "GetKeyAccessAt", {"keyId": key, "operation": operation, "at": at, "principal": principal},
            "kms:DescribeKey", key=key, at=at,
            answer=lambda sv, call, key_id: access_at(sv.history, call.scope, key_id, parse_instant(at), operation,
                                                      principal, directory=sv.principals)))

    @router.get("/keys/{key:path}/last-usage", summary="The key's last successful cryptographic use at an instant")
    async def last_usage(request: Request, key: str, at: str | None = _AT) -> Response:
        def answer(sv: Services, call: Call, key_id: str | None) -> dict[str, Any]:
            assert key_id is not None and sv.last_usage is not None
            return {"KeyId": key_id, "At": parse_instant(at).isoformat(),
                    "KeyLastUsage": sv.last_usage.last_usage_at(key_id, parse_instant(at), call.in_scope().region)}

        return await serve(request, KeyQuery(
            runtime, "GetKeyLastUsageAt", {"keyId": key, "at": at}, "kms:GetKeyLastUsage", key=key, at=at,
            answer=answer))

    @router.get("/keys/{key:path}", summary="A key's state as DescribeKey would have answered at an instant",
                description=_KEY)
    async def key_at(request: Request, key: str, at: str | None = _AT) -> Response:
        return await serve(request, KeyQuery(
            runtime, "GetKeyStateAt", {"keyId": key, "at": at}, "kms:DescribeKey", key=key, at=at,
            answer=lambda sv, call, key_id: sv.history.key_at(call.scope, key_id, parse_instant(at))))

    @router.get("/keys", summary="Every key of the caller's account and region at an instant")
    async def keys_at(request: Request, at: str | None = _AT, state: str | None = None,
                      key_spec: str | None = None, alias: str | None = None) -> Response:
        def answer(sv: Services, call: Call, _: str | None) -> dict[str, Any]:
            scope = call.in_scope()
            return {"Keys": sv.history.keys_at(parse_instant(at), scope.account_id, scope.region, state, key_spec,
                                               alias)}

        return await serve(request, KeyQuery(
            runtime, "ListKeysAt", {"at": at, "state": state, "keySpec": key_spec, "alias": alias}, "kms:ListKeys",
            answer=answer))

    @router.get("/audit", summary="Audit records, oldest first, paginated by seq")
    async def audit(request: Request, key: str | None = Query(None, description=_KEY), principal: str | None = None,
                    event: str | None = None, error: str | None = Query(None, description="errorCode"),
                    start: str | None = Query(None, alias="from"),
                    end: str | None = Query(None, alias="to"), limit: int = Query(100, ge=1, le=MAX_AUDIT_PAGE),
                    marker: int = Query(0, ge=0, le=2**63 - 1, description="NextMarker of the previous page")) -> Response:
        def answer(sv: Services, call: Call, _: str | None) -> dict[str, Any]:
            scope = call.in_scope()
            # Records of the caller's account name other accounts' keys too (cross-account calls): any key.
            key_id = sv.resolver.key_id(call, key) if key is not None else None
            low, high = (parse_instant(start) if start else None), (parse_instant(end) if end else None)
            index = runtime.audit_index
            assert index is not None
            # The index finds the page (issue 13); each record is then checked as before, so a row that says
            # otherwise than its record (the index is not tagged) can only hide a record, never show another.
            where = AuditFilter(scope.account_id, key_id, principal, event, error, low, high)
            seqs = index.seqs(where, marker, limit + 1)
            truncated, seqs = len(seqs) > limit, seqs[:limit]
            found = [r for r in index.records(runtime.ledger, seqs)
                     if record_matches(r, scope.account_id, key_id, principal, event, error, low, high)]
            if truncated:
                return {"Records": found, "NextMarker": seqs[-1], "Truncated": True}
            return {"Records": found, "Truncated": False}

        return await serve(request, KeyQuery(
            runtime, "LookupAuditEvents", {"key": key, "principal": principal, "event": event, "error": error,
                                           "from": start, "to": end, "limit": limit, "marker": marker},
            "cloudtrail:LookupEvents", answer=answer))

    return router


def record_matches(record: dict[str, Any], account_id: str, key_id: str | None, principal: str | None,
                   event: str | None, error: str | None, low: datetime | None, high: datetime | None) -> bool:
    """Only the caller's own account's records; then the filters."""
    identity = record.get("userIdentity") or {}
    if account_id not in (identity.get("accountId"), record.get("recipientAccountId")):
        return False
    if event and record.get("eventName") != event:
        return False
    if error and record.get("errorCode") != error:
        return False
    if principal and identity.get("arn") != principal:
        return False
    if key_id and not any(r.get("ARN", "").endswith("/" + key_id) for r in record.get("resources") or []):
        return False
    at = datetime.fromisoformat(record["eventTime"].replace("Z", "+00:00")) if record.get("eventTime") else None
    return not ((low and at and at < low) or (high and at and at > high))
