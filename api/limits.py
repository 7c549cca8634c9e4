"""The limits stage of the request pipeline (api/pipeline.py): what a request may cost before any work is done
on it. The pipeline calls it at four points, for the KMS endpoint and /v1 alike:

* ``check_headers(call, raw_headers)``: first, before the body is read or the signature checked; returns the
  body limit;
* ``read_body(call, receive, limit)``: reads the body (the only place that does), stopping at the limit;
* ``admit(call)``: once the caller is authenticated, before authorization and the operation run (quotas);
* ``refused_before_caller(call, error)``: a call refused before its caller was known is throttled per source
  and, past the per-window allowance, counted in a summary record instead of getting its own
  (application/audit/unauthenticated.py).

Header bytes are checked first, then the body's length, from Content-Length before a byte of the body is read
and again while reading, which stops at the limit.

A KMS request's body limit is its operation's (X-Amz-Target arrives before the body): the largest valid
request of that operation as botocore's model allows it (api/body_limits.py), capped by
KEYLEDGER_MAX_BODY_BYTES. Other paths (/v1, /healthz, /metrics) are GET requests whose body only SigV4
reads: they get ``OTHER_BODY_BYTES``. Refusals are domain errors answered in AWS's shape; a refused
body is never read, and the answer closes the connection (what is left of the body is not read either).
"""
from __future__ import annotations

from typing import Any, Awaitable, Callable, MutableMapping, Sequence

from api.body_limits import derived_body_limits
from application.audit.unauthenticated import UnauthenticatedFailures
from application.calls import Call
from application.quotas import RequestQuotas
from domain.errors import KmsError, RequestEntityTooLargeError, RequestHeaderFieldsTooLargeError

TARGET_PREFIX = "TrentService."
MAX_JSON_DEPTH = 32  # the deepest KMS request nests 3 deep (CreateGrant's Constraints, CreateKey's Tags)
UNKNOWN_OPERATION_BODY_BYTES = 16384  # the target names no operation: the call is refused whatever its body
OTHER_BODY_BYTES = 16384  # /v1 and the other GET paths carry no body worth the name
# The connection guard (api/http_protocol.py) stops reading a request head (request line and headers, with
# their separators) past twice the header limit and this much: beyond what the header check here refuses
# with an audit record, a head is not even buffered.
HEAD_ALLOWANCE = 8192


def head_limit(max_header_bytes: int) -> int:
    return 2 * max_header_bytes + HEAD_ALLOWANCE
CLOSE = (b"connection", b"close")

Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]


class RequestLimits:
    def __init__(self, service_model: Any, max_header_bytes: int, max_body_bytes: int | None,
                 quotas: RequestQuotas | None = None, unauthenticated: UnauthenticatedFailures | None = None) -> None:
        self.quotas = quotas
        self.unauthenticated = unauthenticated
        derived = derived_body_limits(service_model)
        self.max_header_bytes = max_header_bytes
        self.max_head_bytes = head_limit(max_header_bytes)
        self.max_body_bytes = max(derived.values()) if max_body_bytes is None else max_body_bytes
        # Keyed by the raw X-Amz-Target value, as it arrives in the ASGI scope.
        self._by_target = {f"{TARGET_PREFIX}{name}".encode("latin-1"): min(limit, self.max_body_bytes)
                           for name, limit in derived.items()}
        self._unknown = min(UNKNOWN_OPERATION_BODY_BYTES, self.max_body_bytes)
        self._other = min(OTHER_BODY_BYTES, self.max_body_bytes)

    def body_limit(self, operation: str) -> int:
        return self._by_target.get(f"{TARGET_PREFIX}{operation}".encode("latin-1"), self._unknown)

    def check_kms(self, headers: Sequence[tuple[bytes, bytes]]) -> tuple[KmsError | None, int]:
        """For ``POST /``: (the refusal, or None; the body limit). One pass over the headers (ASGI names are
        lower-case): their bytes, the target and the declared length."""
        total, target, length = 0, None, None
        for name, value in headers:
            total += len(name) + len(value)
            if name == b"x-amz-target":
                if target is None:
                    target = value
            elif name == b"content-length":
                length = value
        if total > self.max_header_bytes:
            return self._headers_too_large(total), 0
        limit = self._by_target.get(target, self._unknown) if target is not None else self._unknown
        if length is not None and length.isdigit() and int(length) > limit:
            return self._body_too_large(int(length), limit, exact=True), limit
        return None, limit

    def check_other(self, headers: Sequence[tuple[bytes, bytes]]) -> tuple[KmsError | None, int]:
        """For every other path: the same checks with the fixed body limit."""
        return self.check_fixed(headers, self._other)

    def check_fixed(self, headers: Sequence[tuple[bytes, bytes]], limit: int) -> tuple[KmsError | None, int]:
        """Header bytes, then the declared length against ``limit``."""
        total, length = 0, None
        for name, value in headers:
            total += len(name) + len(value)
            if name == b"content-length":
                length = value
        if total > self.max_header_bytes:
            return self._headers_too_large(total), 0
        if length is not None and length.isdigit() and int(length) > limit:
            return self._body_too_large(int(length), limit, exact=True), limit
        return None, limit

    def _headers_too_large(self, total: int) -> KmsError:
        return RequestHeaderFieldsTooLargeError(
            f"The request's header names and values total {total} bytes; this service accepts at most "
            f"{self.max_header_bytes}. Send fewer or shorter headers (a long User-Agent, for one).")

    def _body_too_large(self, size: int, limit: int, exact: bool) -> KmsError:
        told = f"{size} bytes" if exact else f"more than {limit} bytes"
        return RequestEntityTooLargeError(
            f"The request body is {told}; this operation accepts at most {limit} bytes, which every valid "
            f"request fits. The body was not read.")

    # -- the pipeline's stages -------------------------------------------------------------------

    def check_headers(self, call: Call, raw_headers: Sequence[tuple[bytes, bytes]], fixed: int | None = None) -> int:
        """The body limit of this request, or the refusal raised (431, or 413 from Content-Length). ``fixed``: a
        front's own limit (the XKS proxy API's), in place of the KMS operation's."""
        refusal, limit = self.check_kms(raw_headers) if fixed is None else self.check_fixed(raw_headers, fixed)
        if refusal is not None:
            raise refusal
        return limit

    async def read_body(self, call: Call, receive: Receive, limit: int) -> bytes | None:
        """The body; None if the client went away first (nothing is answered); 413 raised past ``limit``."""
        body, refusal = await self.read_limited(receive, limit)
        if refusal is not None:
            raise refusal
        return body

    def admit(self, call: Call) -> None:
        """After authentication: ThrottlingException past the account's quota for this class of operation."""
        if self.quotas is not None and call.scope is not None:
            self.quotas.take(call.scope.account_id, call.scope.region, call.operation)

    def refused_before_caller(self, call: Call, error: KmsError, operation: str | None) -> tuple[KmsError, bool]:
        """(the error to answer, whether the call gets a record of its own) for a call refused before its caller
        was known; ``operation``: the KMS operation it named, if one exists."""
        if self.unauthenticated is None:
            return error, True
        return self.unauthenticated.refused(call.source_ip, error, operation)

    # -- the checks themselves -------------------------------------------------------------------

    async def read_limited(self, receive: Receive, limit: int) -> tuple[bytes | None, KmsError | None]:
        """The body, read up to ``limit`` bytes: (body, None); (None, refusal) as soon as it passes the limit,
        without reading the rest; (None, None) if the client went away first."""
        chunks = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None, None  # nothing was done, nothing to answer
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                return None, self._body_too_large(size, limit, exact=False)
            chunks.append(chunk)
            if not message.get("more_body", False):
                return (chunks[0] if len(chunks) == 1 else b"".join(chunks)), None


def replay(body: bytes, receive: Receive) -> Receive:
    """A receive callable that hands over the already read ``body`` first, then waits on ``receive`` (for
    the disconnect the server reports once the response is sent or the client goes away)."""
    pending = True

    async def replayed() -> MutableMapping[str, Any]:
        nonlocal pending
        if pending:
            pending = False
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()
    return replayed
