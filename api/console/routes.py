"""The web console's routes: every page (and sign-in and sign-out) is one call through the request pipeline
(api/pipeline.py), like a /v1 request: bounded, authenticated (by its session here, not SigV4), authorized
with the same IAM actions as the /v1 route that answers the same question, run on the same services,
audited (eventName ``Console...``) and counted. Pages are rendered from Jinja2 templates shipped in the
package; the only asset is a stylesheet; no page runs a script (docs/console.md)."""
from __future__ import annotations

import json
import urllib.parse
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable

from fastapi import FastAPI, Request
from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.concurrency import run_in_threadpool
from starlette.responses import HTMLResponse, RedirectResponse, Response

from api.console.pages import (
    Page,
    access_page,
    audit_page,
    integrity_page,
    iso,
    key_page,
    keys_page,
    sign_out,
    usage_page,
)
from api.console.session import (
    PREFIX,
    SESSION_COOKIE,
    SIGNIN_CSRF_COOKIE,
    Session,
    SessionCodec,
    SessionRefused,
    request_cookies,
    set_cookie,
    signin_csrf_ok,
)
from api.pipeline import HttpRequest, RequestPipeline
from application.calls import Call, Caller
from domain.errors import (
    AccessDeniedError,
    KmsError,
    UnrecognizedClientError,
    ValidationError,
    shown,
)
from domain.identifiers import Scope
from domain.policy.evaluation import Decision
from infrastructure.bootstrap import Runtime, Services

CONSOLE_OPERATIONS = ("ConsoleLogin", "ConsoleLogout", "ConsoleListKeys", "ConsoleGetKey", "ConsoleGetKeyAccess",
                      "ConsoleLookupAuditEvents", "ConsoleGetIntegrity", "ConsoleVerifyIntegrity", "ConsoleGetUsage")
MAX_FIELD = 256  # any query or form value; longer ones are refused before any work
MAX_FORM_BYTES = 4096
SECURITY_HEADERS = {
    "content-security-policy": "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
                               "frame-ancestors 'none'; base-uri 'none'",
    "x-content-type-options": "nosniff", "referrer-policy": "no-referrer", "cache-control": "no-store",
    "x-frame-options": "DENY",
}


@dataclass
class Console:
    runtime: Runtime
    templates: Environment
    codec: SessionCodec | None = None
    verified: dict[str, Any] = field(default_factory=dict)  # the last integrity verification in this process

    def session_codec(self) -> SessionCodec:
        if self.codec is None:
            services = self.runtime.services
            assert services is not None
            self.codec = SessionCodec(services.console_session_key, self.runtime.settings.console_session_seconds)
        return self.codec


@dataclass
class ConsoleCall:
    """One console request: its front in the request pipeline."""

    console: Console
    name: str  # eventName
    parameters: dict[str, Any]
    action: str | None  # the IAM action that must be allowed; None: sign-in and sign-out, allowed by rule
    render: Callable[[Services, Call, ConsoleCall], Page]  # runs in a worker thread, after authorization
    key: str | None = None
    form: bool = False  # a POST form: its CSRF token is checked
    signin: bool = False
    content_type = b"text/html; charset=utf-8"
    cookies: dict[str, str] = field(default_factory=dict)
    session: Session | None = None
    key_id: str | None = None
    page: Page | None = None
    form_values: dict[str, str] = field(default_factory=dict)
    refusal: KmsError | None = None  # an input refused before any work (raised once the caller is known)

    def __post_init__(self) -> None:
        values = {**self.parameters, "key": self.key}
        too_long = [name for name, value in values.items() if isinstance(value, str) and len(value) > MAX_FIELD]
        if too_long:
            self.refusal = ValidationError(f"{too_long[0]} is longer than {MAX_FIELD} characters.")
            self.parameters = {k: v[:MAX_FIELD] if isinstance(v, str) else v for k, v in self.parameters.items()}
            self.key = None

    # -- the pipeline's stages ------------------------------------------------------------------

    def open(self, request: HttpRequest, at: datetime, request_id: str, event_id: str) -> tuple[Call, str | None]:
        call = Call.api(self.name, at=at, request_id=request_id, event_id=event_id, source_ip=request.client,
                        user_agent=_header(request, b"user-agent"), secure_transport=request.secure)
        call.request_parameters = {k: v for k, v in self.parameters.items() if v not in (None, "")} or None
        self.cookies = request_cookies(request.raw_headers)
        return call, self.name

    def authenticate(self, call: Call, request: HttpRequest, body: bytes) -> None:
        runtime = self.console.runtime
        if runtime.sealed_reason or runtime.services is None:
            raise UnrecognizedClientError(f"keyledger is sealed: {runtime.sealed_reason}")
        services = runtime.services
        if self.form:
            if len(body) > MAX_FORM_BYTES:
                raise ValidationError("The form is too large.")
            try:
                parsed = urllib.parse.parse_qs(body.decode("utf-8", "replace"), max_num_fields=20)
            except ValueError:  # more fields than any console form has
                raise ValidationError("The form has too many fields.") from None
            self.form_values = {k: v[0][:MAX_FIELD] for k, v in parsed.items()}
        codec = self.console.session_codec()
        if self.signin:
            if not signin_csrf_ok(self.cookies.get(SIGNIN_CSRF_COOKIE), self.form_values.get("csrf")):
                raise AccessDeniedError("The sign-in form's CSRF token is missing or wrong: reload the sign-in page.")
            key_id, secret = self.form_values.get("access_key_id", "").strip(), self.form_values.get("secret", "")
            region = self.form_values.get("region") or _default_region(runtime)
            if key_id:
                call.claim(key_id[:128], region[:32])
            credential = services.credentials.lookup(key_id) if key_id else None
            # One answer for an unknown key and a wrong secret; the comparison takes the same time either way.
            expected = credential.secret if credential else "\x00" * 40
            if credential is None or not _same(secret, expected) or region not in runtime.settings.regions:
                raise UnrecognizedClientError("The access key id, secret access key or region is not valid.")
            self._sign_in_as(call, credential, region)
            token, self.session = codec.issue(credential.access_key_id, region, runtime.now())
            cookie = set_cookie(SESSION_COOKIE, token, codec.ttl_seconds, request.secure)
            self.page = Page(redirect=f"{PREFIX}/keys", cookies=[cookie, set_cookie(SIGNIN_CSRF_COOKIE, "", 0, request.secure)])
            return
        try:
            session = codec.open(self.cookies.get(SESSION_COOKIE), runtime.now())
        except SessionRefused as refused:
            raise UnrecognizedClientError(str(refused)) from None
        call.claim(session.access_key_id, session.region)
        credential = services.credentials.lookup(session.access_key_id)
        if credential is None:
            raise UnrecognizedClientError("The access key of this console session is no longer active: sign in again.")
        if self.form and not codec.csrf_ok(session, self.form_values.get("csrf")):
            raise AccessDeniedError("The form's CSRF token is missing or wrong: reload the page and try again.")
        self.session = session
        self._sign_in_as(call, credential, session.region)

    def _sign_in_as(self, call: Call, credential: Any, region: str) -> None:
        services = self.console.runtime.services
        assert services is not None
        owner = services.principals.get(credential.principal_arn)
        caller = Caller(credential.principal_arn, credential.account_id, credential.access_key_id,
                        unique_id=owner.unique_id if owner and owner.kind != "root" else None,
                        role_arn=owner.arn if owner and owner.kind == "role" else None)
        call.authenticate(caller, Scope(credential.account_id, region))

    def prepare(self, call: Call, operation: str | None, body: bytes) -> None:
        if self.refusal is not None:
            raise self.refusal
        call.parameters = {k: v for k, v in self.parameters.items() if v is not None}

    async def authorize(self, call: Call, operation: str | None) -> None:
        await run_in_threadpool(self._authorize, call)

    def _authorize(self, call: Call) -> None:
        services = self._services()
        if self.action is None:
            services.authorizer.mark_authorized(call, Decision(True, "signing in or out of the console"))
            return
        resource = "*"
        if self.key is not None:
            from api.query_api import key_named

            self.key_id = key_named(services, call, self.key, None)
            resource = call.in_scope().key_arn(self.key_id)
            call.add_resource(resource)  # the record names the key the page showed
        services.authorizer.authorize_query(call, self.action, resource)

    async def run(self, call: Call, operation: str | None) -> bytes:
        if self.page is None:
            self.page = await run_in_threadpool(self.render, self._services(), call, self)
        if self.page.template is None:
            return b""
        return self.console.templates.get_template(self.page.template).render(
            **self.page.values, **self.chrome(call)).encode("utf-8")

    def chrome(self, call: Call) -> dict[str, Any]:
        """What every page shows around its content: who is signed in, where, until when, the CSRF token."""
        codec = self.console.session_codec()
        session = self.session
        return {"prefix": PREFIX, "signed_in": call.caller.principal_arn if call.caller else None,
                "region": session.region if session else None,
                "expires": iso(datetime.fromtimestamp(session.expires, timezone.utc)) if session else None,
                "csrf": codec.csrf_token(session) if session else None, "now": iso(self.console.runtime.now())}

    def _services(self) -> Services:
        assert self.console.runtime.services is not None
        return self.console.runtime.services


# -- helpers ---------------------------------------------------------------------------------------

def _same(given: str, expected: str) -> bool:
    import hmac

    return hmac.compare_digest(given.encode("utf-8", "replace"), expected.encode("utf-8", "replace"))


def _header(request: HttpRequest, name: bytes) -> str | None:
    return next((v.decode("latin-1") for k, v in request.raw_headers if k.lower() == name), None)


def _default_region(runtime: Runtime) -> str:
    regions = runtime.settings.regions
    return "us-east-1" if "us-east-1" in regions else regions[0]


# -- routes --------------------------------------------------------------------------------------------

def install_console(app: FastAPI, runtime: Runtime, pipeline: RequestPipeline) -> None:
    templates = Environment(loader=PackageLoader("api.console", "templates"),
                            autoescape=select_autoescape(["html"]), trim_blocks=True, lstrip_blocks=True)
    console = Console(runtime, templates)

    async def serve(request: Request, front: ConsoleCall) -> Response:
        answer = await pipeline.serve(front, HttpRequest.of(request.scope, request.receive))
        if answer is None:
            return Response(status_code=400)
        status, headers, payload = answer
        extra = {k.decode(): v.decode() for k, v in headers if k == b"x-amzn-requestid"}
        page = front.page
        if status == 200 and page is not None and page.redirect:
            response: Response = RedirectResponse(page.redirect, status_code=303, headers={**extra, **SECURITY_HEADERS})
        elif status == 200:
            response = HTMLResponse(payload, headers={**extra, **SECURITY_HEADERS})
        else:
            error = json.loads(payload) if payload.startswith(b"{") else {}
            code, message = error.get("__type", "KMSInternalException"), error.get("message", "")
            if code == "UnrecognizedClientException" and not front.signin:
                # No session (or an expired or revoked one): the sign-in page, saying why.
                query = urllib.parse.urlencode({"reason": message})
                response = RedirectResponse(f"{PREFIX}/signin?{query}", status_code=303, headers=SECURITY_HEADERS)
            elif front.signin and code in ("UnrecognizedClientException", "AccessDeniedException",
                                           "ThrottlingException"):
                response = signin_form(request, message, status)
            else:
                response = HTMLResponse(templates.get_template("error.html").render(
                    prefix=PREFIX, code=code, message=message, status=status, title=code,
                    signed_in=None), status_code=status, headers={**extra, **SECURITY_HEADERS})
        for cookie in (page.cookies if page is not None and status == 200 else []):
            response.headers.append("set-cookie", cookie)
        return response

    def signin_form(request: Request, problem: str | None = None, status: int = 200) -> Response:
        import secrets

        token = secrets.token_urlsafe(24)
        page = templates.get_template("signin.html").render(
            prefix=PREFIX, csrf=token, problem=problem, reason=request.query_params.get("reason", "")[:200],
            signed_out=request.query_params.get("signed_out"), regions=runtime.settings.regions,
            default_region=_default_region(runtime), title="Sign in", signed_in=None)
        response = HTMLResponse(page, status_code=status, headers=SECURITY_HEADERS)
        response.headers.append("set-cookie", set_cookie(SIGNIN_CSRF_COOKIE, token, 600, request.url.scheme == "https"))
        return response

    def query(request: Request, *names: str) -> dict[str, str | None]:
        return {name: request.query_params.get(name) for name in names}  # bounded by ConsoleCall

    @app.get(PREFIX, include_in_schema=False)
    @app.get(PREFIX + "/", include_in_schema=False)
    async def home() -> Response:
        return RedirectResponse(f"{PREFIX}/keys", status_code=303, headers=SECURITY_HEADERS)

    @app.get(PREFIX + "/signin", include_in_schema=False)
    async def signin_page(request: Request) -> Response:
        return signin_form(request)

    @app.post(PREFIX + "/signin", include_in_schema=False)
    async def signin(request: Request) -> Response:
        return await serve(request, ConsoleCall(console, "ConsoleLogin", {}, None, _no_page, form=True, signin=True))

    @app.post(PREFIX + "/signout", include_in_schema=False)
    async def signout(request: Request) -> Response:
        return await serve(request, ConsoleCall(console, "ConsoleLogout", {}, None, sign_out(console), form=True))

    @app.get(PREFIX + "/keys", include_in_schema=False)
    async def keys(request: Request) -> Response:
        q = query(request, "state", "spec", "alias", "tag")
        return await serve(request, ConsoleCall(console, "ConsoleListKeys", dict(q), "kms:ListKeys", keys_page(runtime, q)))

    @app.get(PREFIX + "/keys/{key:path}/access", include_in_schema=False)
    async def key_access(request: Request, key: str) -> Response:
        q = query(request, "operation", "at", "principal")
        return await serve(request, ConsoleCall(console, "ConsoleGetKeyAccess", {"keyId": key, **q}, "kms:DescribeKey",
                                                access_page(runtime, q), key=key))

    @app.get(PREFIX + "/keys/{key:path}", include_in_schema=False)
    async def key(request: Request, key: str) -> Response:
        q = query(request, "at", "version")
        return await serve(request, ConsoleCall(console, "ConsoleGetKey", {"keyId": key, **q}, "kms:DescribeKey",
                                                key_page(runtime, q), key=key))

    @app.get(PREFIX + "/audit", include_in_schema=False)
    async def audit(request: Request) -> Response:
        q = query(request, "key", "principal", "event", "error", "from", "to", "marker")
        return await serve(request, ConsoleCall(console, "ConsoleLookupAuditEvents", dict(q), "cloudtrail:LookupEvents",
                                                audit_page(runtime, q)))

    @app.get(PREFIX + "/integrity", include_in_schema=False)
    async def integrity(request: Request) -> Response:
        return await serve(request, ConsoleCall(console, "ConsoleGetIntegrity", {}, "cloudtrail:LookupEvents",
                                                integrity_page(console, verify=False)))

    @app.post(PREFIX + "/integrity/verify", include_in_schema=False)
    async def verify(request: Request) -> Response:
        return await serve(request, ConsoleCall(console, "ConsoleVerifyIntegrity", {}, "cloudtrail:LookupEvents",
                                                integrity_page(console, verify=True), form=True))

    @app.get(PREFIX + "/usage", include_in_schema=False)
    async def usage(request: Request) -> Response:
        q = query(request, "key", "from", "to")
        return await serve(request, ConsoleCall(console, "ConsoleGetUsage", dict(q), "cloudtrail:LookupEvents",
                                                usage_page(runtime, q), key=q["key"] or None))


def _no_page(services: Services, call: Call, front: ConsoleCall) -> Page:
    return front.page or Page()


__all__ = ["install_console", "CONSOLE_OPERATIONS", "shown", "KmsError"]
