"""What every answer to a hostile request must satisfy (issue #11's contract), as a list of problems.

- An answer, always: no reset, no close without a response, no hang.
- Never a 5xx; a 2xx only for an authentic request that could be valid.
- Every 4xx is AWS's shape, {"__type": ..., "message": ...}, with a message of at most 1,024 characters: a
  bad value is echoed as a short prefix at most. (A request that is not HTTP at all may instead get the HTTP
  layer's own plain-text 400.)
- Limits before work: header bytes over the limit answer 431 RequestHeaderFieldsTooLargeException, a body
  over it 413 RequestEntityTooLargeException, before the signature is looked at.
- An unauthenticated request learns nothing but that: its refusal is about authentication, a limit or
  throttling, never about its body or operation.
"""
from __future__ import annotations

from tests.hostile.hostile_request import HostileRequest
from tests.hostile.raw_http import Answer

MAX_MESSAGE = 1024
HEADER_LIMIT = 16_384  # KEYLEDGER_MAX_HEADER_BYTES's default
# Far enough from the limit that how header bytes are counted (names, separators, request line) cannot matter.
HEADERS_SURELY_UNDER, HEADERS_SURELY_OVER = HEADER_LIMIT // 2, HEADER_LIMIT * 2
BODY_SURELY_OVER = 4 * 1024 * 1024  # no valid KMS request comes near: the largest (a 32 KiB policy, escaped) is < 1 MiB
BODY_SURELY_UNDER = 1024  # no operation's derived limit can be below a kilobyte
TOO_LARGE_HEADERS = ("RequestHeaderFieldsTooLargeException", 431)
TOO_LARGE_BODY = ("RequestEntityTooLargeException", 413)
THROTTLED = "ThrottlingException"
MAX_INPUT_DEPTH = 3
AUTHENTICATION_REFUSALS = frozenset({"MissingAuthenticationTokenException", "IncompleteSignatureException",
                                     "InvalidSignatureException", "UnrecognizedClientException"})
UNAUTHENTICATED_ANSWERS = AUTHENTICATION_REFUSALS | {TOO_LARGE_HEADERS[0], TOO_LARGE_BODY[0], THROTTLED}


def deeper_than_any_input(request: HostileRequest) -> bool:
    """Nested deeper than any valid KMS input (3 levels: CreateGrant's Constraints.EncryptionContextSubset),
    so a JSON depth limit, one of the limits checked before authentication, may refuse it."""
    return request.deep_json or nesting_depth(request.body) > MAX_INPUT_DEPTH


def nesting_depth(body: bytes) -> int:
    depth = deepest = 0
    in_string = escaped = False
    for byte in body:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):
            depth += 1
            deepest = max(deepest, depth)
        elif byte in (0x5D, 0x7D):
            depth -= 1
    return deepest


def error_type(document: object) -> str | None:
    if isinstance(document, dict) and isinstance(document.get("__type"), str):
        return document["__type"].rsplit("#", 1)[-1]
    return None


def problems(request: HostileRequest, header_bytes: int, answer: Answer) -> list[str]:
    if answer.failure:
        return [f"no answer: {answer.summary()}"]
    status, found = answer.status or 0, []
    body_bytes = len(request.body)
    if status >= 500:
        found.append(f"answered {status}")
    elif 200 <= status < 300 and not (request.may_succeed and request.authentic):
        found.append(f"answered {status}, but this request must be refused")
    elif not (200 <= status < 300 or 400 <= status < 500):
        found.append(f"answered {status}")
    document = answer.document()
    kind = error_type(document)
    if status >= 400:
        if kind is None and not (request.http_invalid and status == 400):
            found.append(f"a {status} that is not AWS's error shape")
        message = document.get("message", document.get("Message")) if isinstance(document, dict) else None
        if isinstance(message, str) and len(message) > MAX_MESSAGE:
            found.append(f"an error message of {len(message):,} characters (at most {MAX_MESSAGE})")
        for name, code in (TOO_LARGE_HEADERS, TOO_LARGE_BODY):
            if (kind == name) != (status == code) and kind is not None:
                found.append(f"{kind} with status {status}")
        if status == 431 and header_bytes <= HEADERS_SURELY_UNDER:
            found.append(f"431 for {header_bytes:,} header bytes")
        if status == 413 and body_bytes <= BODY_SURELY_UNDER:
            found.append(f"413 for a {body_bytes:,}-byte body")
        if not request.authentic and kind is not None and kind not in UNAUTHENTICATED_ANSWERS \
                and not (kind == "SerializationException" and deeper_than_any_input(request)):
            found.append(f"an unauthenticated request was answered {kind}: it got past authentication")
    headers_over, body_over = header_bytes >= HEADERS_SURELY_OVER, body_bytes >= BODY_SURELY_OVER
    if headers_over and status != 431 and not (body_over and status == 413):
        found.append(f"{header_bytes:,} header bytes answered {status} {kind}, not 431")
    if body_over and status != 413 and not (header_bytes > HEADERS_SURELY_UNDER and status == 431):
        found.append(f"a {body_bytes:,}-byte body answered {status} {kind}, not 413")
    return found
