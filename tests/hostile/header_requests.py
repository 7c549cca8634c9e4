"""Hostile headers and SigV4 abuse, each on an ordinary call (targets.benign) so that only the headers are odd."""
from __future__ import annotations

import json
import random
from datetime import timedelta
from typing import Callable

from tests.hostile.hostile_request import MADE_UP, SIGNED, UNSIGNED, Auth, Headers, HostileRequest
from tests.hostile.targets import Targets, benign

UTF8_EMOJI = "\U0001f600".encode("utf-8")
FILLERS = (b"A", UTF8_EMOJI, bytes(range(0x80, 0x100)), b"Mozilla/5.0 (X11) ", b"\xff", b"%00", b"\\u0000")


def _base(rng: random.Random, targets: Targets, note: str, auth: Auth | None = None) -> HostileRequest:
    target, document = benign(rng, targets)
    auth = auth or rng.choices((SIGNED, UNSIGNED, MADE_UP), (0.5, 0.2, 0.3))[0]
    return HostileRequest(category="", note=note, target=target, body=json.dumps(document).encode(), auth=auth,
                          may_succeed=True)


def _filled(rng: random.Random, size: int) -> bytes:
    filler = rng.choice(FILLERS)
    return (filler * (size // len(filler) + 1))[:size]


def _sized(rng: random.Random, sizes: tuple[int, ...], weights: tuple[int, ...]) -> int:
    return rng.choices(sizes, weights)[0]


def _replace(name: bytes, value: bytes | None) -> Callable[[Headers], Headers]:
    """Replaces (or, with None, removes) every header called ``name`` (any case)."""
    def mutate(headers: Headers) -> Headers:
        out = [(n, v) for n, v in headers if n.lower() != name.lower()]
        return out if value is None else out + [(name, value)]
    return mutate


def _duplicate(name: bytes, value: bytes, first: bool) -> Callable[[Headers], Headers]:
    def mutate(headers: Headers) -> Headers:
        return [(name, value)] + headers if first else headers + [(name, value)]
    return mutate


def _rename(how: Callable[[bytes], bytes]) -> Callable[[Headers], Headers]:
    return lambda headers: [(how(n), v) for n, v in headers]


def _random_case(rng: random.Random) -> Callable[[bytes], bytes]:
    seed = rng.random()

    def how(name: bytes) -> bytes:
        local = random.Random(f"{seed}:{name!r}")  # str seeds are hashed with SHA-512: the same in every process
        return bytes(c ^ 0x20 if chr(c).isascii() and chr(c).isalpha() and local.random() < 0.5 else c for c in name)
    return how


def header_request(rng: random.Random, targets: Targets) -> HostileRequest:
    kind = rng.choices(
        ("user-agent", "target", "many", "long-name", "duplicate", "case", "whitespace", "content-type",
         "non-latin", "control", "forwarded", "token", "expect", "close", "empty", "fold"),
        (14, 8, 12, 4, 8, 8, 5, 6, 5, 3, 5, 4, 4, 4, 5, 2))[0]
    request = _base(rng, targets, kind)
    if kind == "user-agent":
        size = _sized(rng, (200, 5_000, 20_000, 100_000, 1_000_000, 4_000_000), (20, 20, 25, 25, 7, 3))
        request.extra, request.note = ((b"User-Agent", _filled(rng, size)),), f"User-Agent of {size:,} bytes"
    elif kind == "target":
        size = _sized(rng, (2_000, 20_000, 100_000, 1_000_000), (30, 40, 25, 5))
        request.target, request.note = b"TrentService." + _filled(rng, size), f"X-Amz-Target of {size:,} bytes"
        request.may_succeed = False
    elif kind == "many":
        count = _sized(rng, (50, 200, 1_000, 3_000, 10_000), (25, 20, 20, 25, 10))
        request.extra = tuple((b"X-Hostile-%d" % i, b"%d" % rng.randrange(10**6)) for i in range(count))
        request.note = f"{count:,} extra headers"
    elif kind == "long-name":
        size = _sized(rng, (100, 5_000, 20_000, 200_000), (30, 30, 30, 10))
        request.extra, request.note = ((b"X-" + b"n" * size, b"1"),), f"a header name of {size:,} bytes"
    elif kind == "duplicate":
        name, value = rng.choice(((b"X-Amz-Target", b"TrentService.ScheduleKeyDeletion"), (b"X-Amz-Target", b""),
                                  (b"Host", b"evil.example"), (b"Content-Type", b"text/plain"),
                                  (b"X-Amz-Date", b"20000101T000000Z"), (b"Content-Length", None)))
        first = rng.random() < 0.5
        if value is None:  # the same Content-Length twice: the HTTP parser may refuse it
            request.mutate = lambda headers: headers + [h for h in headers if h[0] == b"Content-Length"]
            request.keeps_signature = request.http_invalid = True
        else:  # every one of these headers is signed: a second value changes what was signed
            request.mutate, request.may_succeed = _duplicate(name, value, first), False
        request.note = f"{name.decode()} twice ({'added first' if first else 'added last'})"
    elif kind == "case":
        how = rng.choice((bytes.lower, bytes.upper, _random_case(rng)))
        request.mutate, request.keeps_signature, request.note = _rename(how), True, "header names in another case"
    elif kind == "whitespace":
        pad = rng.choice((b" ", b"\t", b" \t  "))
        request.mutate = lambda headers: [(n, pad + v + pad) for n, v in headers]
        request.keeps_signature, request.note = True, "every header value padded with optional whitespace"
    elif kind == "content-type":
        request.content_type = rng.choice((None, b"application/json", b"text/plain", b"application/x-amz-json-1.0",
                                           b"\xff\xfe", b"a" * 5000, b"multipart/form-data; boundary=x", b""))
        request.note = f"Content-Type {request.content_type!r:.40}"
    elif kind == "non-latin":
        value = _filled(rng, rng.randint(1, 3000)) + UTF8_EMOJI
        if rng.random() < 0.5:
            request.target, request.may_succeed = b"TrentService.List\xc3\xa9Keys" + value, False
        else:
            request.extra = ((b"User-Agent", value), (b"X-Custom-\xc3\xa9", value))
            request.http_invalid = True  # a non-token byte in a header name is not HTTP
        request.note = "bytes above 0x7F in header names and values"
    elif kind == "control":
        request.extra = ((b"User-Agent", b"abc" + rng.choice((b"\x00", b"\x01", b"\x7f", b"\x1b[31m")) + b"def"),)
        request.http_invalid, request.note = True, "a control character in a header value"
    elif kind == "forwarded":
        count = _sized(rng, (5, 500, 5_000), (40, 40, 20))
        addresses = b", ".join(b"10.%d.%d.%d" % (i >> 16 & 255, i >> 8 & 255, i & 255) for i in range(count))
        request.extra = ((b"X-Forwarded-For", addresses), (b"X-Real-IP", b"not an address"),
                         (b"Forwarded", b"for=\"[::1]\";proto=https"))
        request.note = f"X-Forwarded-For with {count:,} addresses"
    elif kind == "token":
        request.extra = ((b"X-Amz-Security-Token", _filled(rng, rng.choice((16, 1000, 6000)))),)
        request.may_succeed, request.note = False, "a session token we never issued"
    elif kind == "expect":
        request.extra, request.note = ((b"Expect", b"100-continue"),), "Expect: 100-continue"
    elif kind == "close":
        request.extra, request.note = ((b"Connection", b"close"),), "Connection: close"
    elif kind == "empty":
        name = rng.choice((b"X-Amz-Target", b"Content-Type", b"Host", b"User-Agent", b"Authorization"))
        request.mutate, request.note = _replace(name, b""), f"an empty {name.decode()}"
        request.may_succeed = request.keeps_signature = name == b"User-Agent"  # the only one not signed
    else:
        request.extra = ((b"X-Folded", b"first\r\n second"),)
        request.http_invalid, request.note = True, "an obsolete folded header line"
    request.category = "headers"
    return request


AUTH_GARBAGE = (
    b"", b"AWS4-HMAC-SHA256", b"AWS4-HMAC-SHA256 ", b"Bearer abc", b"Basic YWRtaW46YWRtaW4=", b"\xff\xfe\x00",
    b"AWS4-HMAC-SHA256 Credential=, SignedHeaders=, Signature=",
    b"AWS4-HMAC-SHA256 Credential=AKIA/20260101/us-east-1/kms/aws4_request",
    b"AWS4-HMAC-SHA256 SignedHeaders=host, Signature=00",
    b"AWS4-HMAC-SHA256 Credential=AKIAKEYLEDGERTESTS01/20260101/us-east-1/kms/aws4_request, SignedHeaders=host, Signature=00",
    b"AWS4-HMAC-SHA512 Credential=AKIAKEYLEDGERTESTS01/20260101/us-east-1/kms/aws4_request, SignedHeaders=host, Signature=00",
    b"aws4-hmac-sha256 Credential=AKIAKEYLEDGERTESTS01/20260101/us-east-1/kms/aws4_request, SignedHeaders=host, Signature=00",
    b"AWS4-HMAC-SHA256 Credential=" + b"/" * 5000 + b", SignedHeaders=host, Signature=00",
    b"AWS4-HMAC-SHA256 Credential=AKIA\xc3\xa9/2026/us-east-1/kms/aws4_request, SignedHeaders=host, Signature=zz",
    b"AWS4-HMAC-SHA256 Credential=AKIAKEYLEDGERTESTS01/abcdefgh/us-east-1/kms/aws4_request, SignedHeaders=;;;, Signature=00",
    b"AWS4-HMAC-SHA256 Credential=AKIAKEYLEDGERTESTS01/20260101/us-east-1/kms/aws4_request, SignedHeaders="
    + b";".join(b"x-h%d" % i for i in range(1000)) + b", Signature=" + b"0" * 64,
    b"AWS4-HMAC-SHA256 Credential=AKIAKEYLEDGERTESTS01/20260101/us-east-1/kms/aws4_request, Credential=x, "
    b"SignedHeaders=host;host, Signature=" + b"f" * 64 + b", Signature=00",
    b"AWS4-HMAC-SHA256 Credential=AKIAKEYLEDGERTESTS01/20260101/US-EAST-1/KMS/AWS4_REQUEST, SignedHeaders=HOST, Signature=00",
)
DATE_GARBAGE = (b"", b"0", b"20261301T250000Z", b"99999999T999999Z", b"2026-01-01T00:00:00Z", b"20260101",
                b"\xff" * 16, b"1" * 5000, b"19700101T000000Z", b"29991231T235959Z", b"20260229T000000Z")


def sigv4_request(rng: random.Random, targets: Targets) -> HostileRequest:
    kind = rng.choices(("unsigned", "made-up", "garbage", "skew", "scope", "date", "duplicate", "signature",
                        "tampered", "presigned", "name-case"), (8, 12, 18, 12, 12, 10, 7, 8, 5, 3, 5))[0]
    request = _base(rng, targets, kind, auth=SIGNED)
    request.may_succeed = False
    if kind == "unsigned":
        request.auth, request.note = UNSIGNED, "no Authorization header"
    elif kind == "made-up":
        request.auth, request.note = MADE_UP, "a made-up access key and Signature=00"
    elif kind == "garbage":
        value = rng.choice(AUTH_GARBAGE)
        request.mutate, request.note = _replace(b"Authorization", value), f"Authorization {value[:60]!r}"
    elif kind == "skew":
        skew = rng.choice((timedelta(days=-365), timedelta(days=-1), timedelta(minutes=-6), timedelta(minutes=6),
                           timedelta(days=1), timedelta(days=3650), timedelta(minutes=-2), timedelta(minutes=2)))
        request.auth = Auth(skew=skew)
        request.may_succeed, request.note = request.auth.authentic, f"signed {skew} away from now"
    elif kind == "scope":
        request.auth = rng.choice((
            Auth(region="xx-nowhere-1"), Auth(region="US-EAST-1"), Auth(region="us-east-1" + "x" * 3000),
            Auth(region="\u00e9\u00e9"), Auth(service="s3"), Auth(service="KMS"), Auth(service="kms-fips"),
            Auth(secret="not-the-secret"), Auth(key_id="AKIA" + "%016d" % rng.randrange(10**16)),
            Auth(key_id="AKIA" + "Z" * 2000), Auth(key_id="\U0001f600")))
        request.note = f"signed with {request.auth}"[:200]
    elif kind == "date":
        value = rng.choice(DATE_GARBAGE + (None,))
        mutate = _replace(b"X-Amz-Date", value)
        if rng.random() < 0.3:
            mutate = (lambda inner: lambda headers: inner(headers) + [(b"Date", b"Thu, 01 Jan 1970 00:00:00 GMT")])(mutate)
        request.mutate, request.note = mutate, f"X-Amz-Date {value!r:.40}"
    elif kind == "duplicate":
        value = rng.choice((b"garbage", b"AWS4-HMAC-SHA256 Credential=AKIAX/20260101/us-east-1/kms/aws4_request, "
                                        b"SignedHeaders=host, Signature=00"))
        request.mutate = _duplicate(b"Authorization", value, rng.random() < 0.5)
        # Which of the two a server reads is its choice; with a correct one among them either answer is fine.
        request.keeps_signature = request.may_succeed = True
        request.note = "two Authorization headers"
    elif kind == "signature":
        how = rng.choice(("upper", "truncate", "extend", "non-hex", "zero"))
        request.mutate = _signature_game(how)
        request.keeps_signature = request.may_succeed = how == "upper"  # lenient either way; not a hole
        request.note = f"signature {how}"
    elif kind == "tampered":
        request.signed_body = request.body
        request.body = request.body.replace(b"}", b', "Tampered": 1}', 1)
        request.note = "signed over a different body"
    elif kind == "presigned":
        request.auth, request.path = UNSIGNED, (b"/?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAX%2F20260101"
                                                b"%2Fus-east-1%2Fkms%2Faws4_request&X-Amz-Signature=00")
        request.note = "query-string (presigned) authentication"
    else:
        request.mutate = _rename(lambda n: n.lower() if n.lower() == b"authorization" else n.upper())
        request.keeps_signature = request.may_succeed = True
        request.note = "authorization in lower case, other names upper case"
    request.category = "sigv4"
    return request


def _signature_game(how: str) -> Callable[[Headers], Headers]:
    def mutate(headers: Headers) -> Headers:
        out = []
        for name, value in headers:
            if name.lower() == b"authorization":
                head, _, signature = value.rpartition(b"Signature=")
                signature = {"upper": signature.upper(), "truncate": signature[:-1], "extend": signature + b"0",
                             "non-hex": b"g" * 64, "zero": b"0" * 64}[how]
                value = head + b"Signature=" + signature
            out.append((name, value))
        return out
    return mutate
