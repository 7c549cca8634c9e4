"""The web console's pages: what each page shows, read through the same services as the /v1 routes that
answer the same question (history, access at a moment, the audit log, integrity, usage). Each builder returns
the function that renders the page after the request pipeline has authorized it (api/console/routes.py)."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, Callable

from api.console.chart import bucket_count, usage_svg
from api.console.session import PREFIX, SESSION_COOKIE, set_cookie
from api.moments import MomentError, parse_moment
from application.calls import Call
from domain.errors import ValidationError
from domain.keys.operations import operations_of
from infrastructure.runtime import Runtime, Services

if TYPE_CHECKING:
    from api.console.routes import Console, ConsoleCall

AUDIT_PAGE = 50


@dataclass
class Page:
    """What a page's render function returns: a template and its values, or a redirect."""

    template: str | None = None
    values: dict[str, Any] = field(default_factory=dict)
    redirect: str | None = None
    cookies: list[str] = field(default_factory=list)


def iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def full_iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def _moment(value: str | None, now: datetime, name: str) -> datetime | None:
    if not value:
        return None
    try:
        moment = parse_moment(value).resolve(now)
    except MomentError as exc:
        raise ValidationError(f"{name}: {exc}") from None
    return min(moment, now)


def _key_id_of(record: dict[str, Any]) -> str | None:
    for resource in record.get("resources") or []:
        arn = resource.get("ARN") or ""
        if ":key/" in arn:
            return arn.rsplit("/", 1)[-1]
    return None


def keys_page(runtime: Runtime, q: dict[str, str | None]) -> Callable[[Services, Call, ConsoleCall], Page]:
    def render(services: Services, call: Call, _: ConsoleCall) -> Page:
        scope = call.in_scope()
        now = runtime.now()
        keys = services.history.keys_at(now, scope.account_id, scope.region, q["state"] or None, q["spec"] or None,
                                        q["alias"] or None)
        if q["tag"]:
            name, _, value = q["tag"].partition("=")
            keys = [k for k in keys if any(t["TagKey"] == name and (not value or t["TagValue"] == value)
                                           for t in k["Tags"])]
        states = ["Enabled", "Disabled", "PendingDeletion", "PendingImport", "Deleted"]
        return Page("keys.html", {"keys": keys, "q": q, "states": states, "title": "Keys"})
    return render


def key_page(runtime: Runtime, q: dict[str, str | None]) -> Callable[[Services, Call, ConsoleCall], Page]:
    def render(services: Services, call: Call, front: ConsoleCall) -> Page:
        scope, key_id, now = call.in_scope(), front.key_id or "", runtime.now()
        timeline = services.history.timeline(key_id, scope)
        at = _moment(q["at"], now, "at") or now
        if q["version"] and q["version"].isdigit():
            chosen = [e for e in timeline if e["Version"] == int(q["version"])]
            if chosen:
                at = chosen[0]["Time"]
        view = services.history.key_at(scope, key_id, at)
        meta = view["KeyMetadata"]
        rotations = [e for e in timeline if e["EventType"] == "MaterialRotated"]
        policy = json.dumps(json.loads(view["Policy"]), indent=2) if view.get("Policy") else ""
        return Page("key.html", {"title": meta["KeyId"], "view": view, "meta": meta, "timeline": timeline,
                                 "rotations": rotations, "policy": policy, "at": full_iso(at),
                                 "as_of_now": at == now, "version": view["Version"],
                                 "versions": len(timeline), "key_id": key_id,
                                 "operations": operations_of(meta),
                                 "iso": full_iso})
    return render


def access_page(runtime: Runtime, q: dict[str, str | None]) -> Callable[[Services, Call, ConsoleCall], Page]:
    def render(services: Services, call: Call, front: ConsoleCall) -> Page:
        from application.history.access_at import access_at

        scope, key_id, now = call.in_scope(), front.key_id or "", runtime.now()
        at = _moment(q["at"], now, "at") or now
        meta = services.history.key_at(scope, key_id, now)["KeyMetadata"]
        operations = operations_of(meta)
        operation = q["operation"] or ("Decrypt" if "Decrypt" in operations else operations[0])
        answer = access_at(services.history, scope, key_id, at, operation, q["principal"] or None,
                           directory=services.principals)
        return Page("access.html", {"title": f"Access to {key_id}", "answer": answer, "key_id": key_id,
                                    "operations": operations, "operation": operation, "at": full_iso(at), "q": q})
    return render


def audit_page(runtime: Runtime, q: dict[str, str | None]) -> Callable[[Services, Call, ConsoleCall], Page]:
    def render(services: Services, call: Call, _: ConsoleCall) -> Page:
        from api.query_api import record_matches
        from application.audit.checkpoints import audit_records

        scope, now = call.in_scope(), runtime.now()
        key_id = services.resolver.key_id(call, q["key"]) if q["key"] else None
        low, high = _moment(q["from"], now, "from"), _moment(q["to"], now, "to")
        if q["marker"] and not (q["marker"].isdigit() and len(q["marker"]) <= 18):  # a seq: fits 64 bits
            raise ValidationError("marker is the seq of the page's last record, a number of at most 18 digits.")
        marker = int(q["marker"]) if q["marker"] else 0
        error = q["error"] or ""
        found, next_marker = [], None
        for record in audit_records(runtime.ledger, after_seq=marker):
            if not record_matches(record, scope.account_id, key_id, q["principal"] or None, q["event"] or None, None,
                                  low, high):
                continue
            code = record.get("errorCode") or ""
            if (error == "any" and not code) or (error == "none" and code) or (error not in ("", "any", "none")
                                                                                and code != error):
                continue
            found.append(record)
            if len(found) == AUDIT_PAGE:
                next_marker = record["seq"]
                break
        rows = [{"record": r, "key_id": _key_id_of(r), "json": json.dumps(r, indent=2, sort_keys=True)} for r in found]
        return Page("audit.html", {"title": "Audit log", "rows": rows, "q": q, "next_marker": next_marker})
    return render


def integrity_page(console: Console, verify: bool) -> Callable[[Services, Call, ConsoleCall], Page]:
    def render(services: Services, call: Call, _: ConsoleCall) -> Page:
        from application.audit.checkpoints import (
            audit_head,
            audit_records,
            stored_checkpoints,
        )

        runtime = console.runtime
        if verify:
            from application.audit.archived import chain_start
            from domain.audit.chain import verify_log

            checkpoints = stored_checkpoints(runtime.ledger)
            after_seq, after_chain, after, checkpoints = chain_start(runtime.archive_store.archived(), checkpoints)
            # Records archived (`keyledger audit archive`) are not read here: `audit verify --segments` reads them.
            result = verify_log(audit_records(runtime.ledger, after_seq=after_seq), checkpoints,
                                services.audit_public_key, after_seq=after_seq, after_chain=after_chain,
                                after_checkpoint=after)
            console.verified = {"at": iso(runtime.now()), "ok": result.ok, "records": result.records,
                                "checkpoints": result.checkpoints_checked, "problem": result.problem,
                                "first_bad_seq": result.first_bad_seq}
            return Page(redirect=f"{PREFIX}/integrity")
        seq, chain = audit_head(runtime.ledger)
        checkpoints = stored_checkpoints(runtime.ledger)
        newest = checkpoints[-1] if checkpoints else None
        return Page("integrity.html", {"title": "Integrity", "head": seq, "chain": chain, "newest": newest,
                                       "tail": seq - (newest.seq if newest else 0), "verified": console.verified,
                                       "checkpoints": len(checkpoints)})
    return render


def usage_page(runtime: Runtime, q: dict[str, str | None]) -> Callable[[Services, Call, ConsoleCall], Page]:
    def render(services: Services, call: Call, front: ConsoleCall) -> Page:
        scope, now = call.in_scope(), runtime.now()
        start = _moment(q["from"], now, "from") or now - timedelta(days=7)
        end = _moment(q["to"], now, "to") or now
        if end <= start:
            raise ValidationError("from must be before to.")
        keys = {front.key_id} if front.key_id else None
        series = runtime.reports.usage_series(keys, start, end, scope.account_id, bucket_count(start, end))
        what = f"key {front.key_id}" if front.key_id else f"account {scope.account_id}"
        svg = usage_svg(series, start, end, f"Calls per operation, {what}")
        try:
            estimate, problem = runtime.reports.priced(keys, start, end, scope.account_id), None
        except ValueError as exc:  # a price table the operator broke: the chart still helps
            estimate, problem = None, str(exc)
        return Page("usage.html", {"title": "Usage", "svg": svg, "estimate": estimate, "problem": problem,
                                   "q": q, "what": what,
                                   "from": iso(start), "to": iso(end),
                                   "rows": runtime.reports.usage_of(keys, start, end, scope.account_id)})
    return render


def sign_out(console: Console) -> Callable[[Services, Call, ConsoleCall], Page]:
    def render(services: Services, call: Call, front: ConsoleCall) -> Page:
        assert front.session is not None
        console.session_codec().revoke(front.session, console.runtime.now())
        return Page(redirect=f"{PREFIX}/signin?signed_out=1", cookies=[set_cookie(SESSION_COOKIE, "", 0, False)])
    return render
