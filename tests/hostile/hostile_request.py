"""One hostile request as generated (what to send and what may come back) and its assembly into bytes.

Signing happens at send time, over exactly the headers and body that go out, so a generated request can be
rebuilt from (seed, index) any time later and still be signed (or mis-signed) the way it was generated."""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Callable

from tests.hostile.raw_http import request_head
from tests.hostile.signing import REGION, sign
from tests.servers import ADMIN_KEY_ID, ADMIN_SECRET

CONTENT_TYPE = b"application/x-amz-json-1.1"
_HEADER_NAME = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_FORBIDDEN_IN_VALUE = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")
Headers = list[tuple[bytes, bytes]]
SKEW_ALLOWED = timedelta(minutes=4)  # SigV4 allows 5 minutes; a request closer than 4 is on time


@dataclass(frozen=True)
class Auth:
    """How the request is signed: ``sign`` (SigV4 with these credentials and scope, at now + skew), ``none``
    (no Authorization header) or ``made-up`` (an unknown access key and Signature=00, built by hand)."""
    mode: str = "sign"
    key_id: str = ADMIN_KEY_ID
    secret: str = ADMIN_SECRET
    region: str = REGION
    service: str = "kms"
    skew: timedelta = timedelta(0)

    @property
    def authentic(self) -> bool:
        return (self.mode == "sign" and self.key_id == ADMIN_KEY_ID and self.secret == ADMIN_SECRET
                and self.region == REGION and self.service == "kms" and abs(self.skew) < SKEW_ALLOWED)


SIGNED, UNSIGNED, MADE_UP = Auth(), Auth(mode="none"), Auth(mode="made-up")


@dataclass
class HostileRequest:
    category: str
    note: str  # what is hostile about it, for a failure message
    target: bytes | None = b"TrentService.ListKeys"  # None: no X-Amz-Target header
    body: bytes = b"{}"
    signed_body: bytes | None = None  # sign these bytes instead of ``body`` (a body changed after signing)
    auth: Auth = SIGNED
    extra: tuple[tuple[bytes, bytes], ...] = ()  # headers added after signing (so never signed)
    mutate: Callable[[Headers], Headers] | None = None  # applied last, to the whole header list
    keeps_signature: bool = False  # ``mutate`` leaves a correct signature correct (e.g. header name case)
    content_type: bytes | None = CONTENT_TYPE
    may_succeed: bool = False  # a 2xx answer is acceptable (only ever for an authentic request)
    http_invalid: bool = False  # not valid HTTP/1.1: the HTTP layer may answer a plain-text 400 of its own
    deep_json: bool = False  # nested deeper than any KMS input: a JSON depth limit may refuse it before auth
    method: bytes = b"POST"
    path: bytes = b"/"
    index: int = -1

    @property
    def authentic(self) -> bool:
        """Correctly signed with the administrator's key: it reaches validation and the services, and gets an
        audit record of its own (unauthenticated ones are aggregated)."""
        return (self.auth.authentic and self.signed_body is None
                and (self.mutate is None or self.keeps_signature))

    def assemble(self, endpoint: str, host: bytes) -> tuple[bytes, int]:
        """(request head bytes, total header bytes) for this request to ``endpoint``."""
        headers: Headers = [(b"Host", host)]
        if self.content_type is not None:
            headers.append((b"Content-Type", self.content_type))
        if self.target is not None:
            headers.append((b"X-Amz-Target", self.target))
        if self.auth.mode == "sign":
            headers += sign(endpoint, self.path.decode("latin-1"), headers,
                            self.body if self.signed_body is None else self.signed_body, key_id=self.auth.key_id,
                            secret=self.auth.secret, region=self.auth.region, service=self.auth.service,
                            skew=self.auth.skew, method=self.method.decode("latin-1"))
        elif self.auth.mode == "made-up":
            headers += made_up_authorization(datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ").encode(), self.note)
        headers += list(self.extra)
        headers.append((b"Content-Length", str(len(self.body)).encode()))
        if self.mutate is not None:
            headers = self.mutate(headers)
        if not all(_HEADER_NAME.fullmatch(n) and not _FORBIDDEN_IN_VALUE.search(v) for n, v in headers):
            self.http_invalid = True  # RFC 9110: names are tokens, values hold no control characters but tab
        head = request_head(self.method, self.path, headers)
        return head, len(head)


def made_up_authorization(amz_date: bytes, salt: str) -> Headers:
    """An Authorization naming an access key nobody issued, with Signature=00 (measurement 1 of issue #11)."""
    key = b"AKIA" + hashlib.sha256(salt.encode("utf-8", "surrogatepass")).hexdigest()[:16].upper().encode()
    return [(b"X-Amz-Date", amz_date), (b"Authorization", b"AWS4-HMAC-SHA256 Credential=" + key + b"/"
             + amz_date[:8] + b"/us-east-1/kms/aws4_request, SignedHeaders=content-type;host;x-amz-date;x-amz-target,"
             b" Signature=00")]
