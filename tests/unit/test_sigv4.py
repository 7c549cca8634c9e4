"""SigV4 verification: published AWS vectors, real botocore signatures, and every refusal path."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from unittest import mock
from urllib.parse import unquote, urlsplit

import botocore.session
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from hypothesis import given, settings
from hypothesis import strategies as st

from api.sigv4 import SignedRequest, verify_sigv4
from domain.errors import (
    IncompleteSignatureError,
    InvalidSignatureError,
    MissingAuthenticationTokenError,
    UnrecognizedClientError,
)

# --- Known-answer vectors ---------------------------------------------------------------------------
# From the AWS SigV4 test suite as shipped in awslabs/aws-c-auth
# (tests/aws-signing-test-suite/v4/<name>/header-signed-request.txt), embedded verbatim. get-vanilla's
# file is the suite's get-vanilla.req plus its published .authz line.
SUITE_SECRET = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
SUITE_NOW = datetime(2015, 8, 30, 12, 36, tzinfo=timezone.utc)
_AUTH = "Authorization:AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, "

VECTORS = {
    "get-vanilla": (
        "GET / HTTP/1.1\nHost:example.amazonaws.com\n"
        + _AUTH + "SignedHeaders=host;x-amz-date, "
        "Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31\n"
        "X-Amz-Date:20150830T123600Z\n\n"),
    "post-vanilla": (
        "POST / HTTP/1.1\nHost:example.amazonaws.com\n"
        + _AUTH + "SignedHeaders=host;x-amz-date, "
        "Signature=5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b\n"
        "X-Amz-Date:20150830T123600Z\n\n"),
    "get-vanilla-query-order-key-case": (
        "GET /?Param2=value2&Param1=value1 HTTP/1.1\nHost:example.amazonaws.com\n"
        + _AUTH + "SignedHeaders=host;x-amz-date, "
        "Signature=b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500\n"
        "X-Amz-Date:20150830T123600Z\n\n"),
    "get-vanilla-query-unreserved": (
        "GET /?-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz="
        "-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz HTTP/1.1\n"
        "Host:example.amazonaws.com\n"
        + _AUTH + "SignedHeaders=host;x-amz-date, "
        "Signature=9c3e54bfcdf0b19771a7f523ee5669cdf59bc7cc0884027167c21bb143a40197\n"
        "X-Amz-Date:20150830T123600Z\n\n"),
    "post-x-www-form-urlencoded": (
        "POST / HTTP/1.1\nContent-Type:application/x-www-form-urlencoded\nHost:example.amazonaws.com\n"
        "Content-Length:13\n"
        "x-amz-content-sha256:9095672bbd1f56dfc5b65f3e153adc8731a4a654192329106275f4c7b24d0b6e\n"
        + _AUTH + "SignedHeaders=content-length;content-type;host;x-amz-content-sha256;x-amz-date, "
        "Signature=d3875051da38690788ef43de4db0d8f280229d82040bfac253562e56c3f20e0b\n"
        "X-Amz-Date:20150830T123600Z\n\nParam1=value1"),
    "get-header-value-trim": (
        "GET / HTTP/1.1\nHost:example.amazonaws.com\nMy-Header1: value1\nMy-Header2: \"a   b   c\"\n"
        + _AUTH + "SignedHeaders=host;my-header1;my-header2;x-amz-date, "
        "Signature=acc3ed3afb60bb290fc8d2dd0098b9911fcaa05412b367055dee359757a9c736\n"
        "X-Amz-Date:20150830T123600Z\n\n"),
    "get-header-value-order": (
        "GET / HTTP/1.1\nHost:example.amazonaws.com\n"
        "My-Header1:value4\nMy-Header1:value1\nMy-Header1:value3\nMy-Header1:value2\n"
        + _AUTH + "SignedHeaders=host;my-header1;x-amz-date, "
        "Signature=08c7e5a9acfcfeb3ab6b2185e75ce8b1deb5e634ec47601a50643f830c755c01\n"
        "X-Amz-Date:20150830T123600Z\n\n"),
    "get-header-key-duplicate": (
        "GET / HTTP/1.1\nHost:example.amazonaws.com\nMy-Header1:value2\nMy-Header1:value2\nMy-Header1:value1\n"
        + _AUTH + "SignedHeaders=host;my-header1;x-amz-date, "
        "Signature=c9d5ea9f3f72853aea855b47ea873832890dbdd183b4468f858259531a5138ea\n"
        "X-Amz-Date:20150830T123600Z\n\n"),
    "get-slashes-normalized": (
        "GET //example// HTTP/1.1\nHost:example.amazonaws.com\n"
        + _AUTH + "SignedHeaders=host;x-amz-date, "
        "Signature=9a624bd73a37c9a373b5312afbebe7a714a789de108f0bdfe846570885f57e84\n"
        "X-Amz-Date:20150830T123600Z\n\n"),
    "get-utf8": (
        "GET /\u1234 HTTP/1.1\nHost:example.amazonaws.com\n"
        + _AUTH + "SignedHeaders=host;x-amz-date, "
        "Signature=8318018e0b0f223aa2bbf98705b62bb787dc9c0e678f255a891fd03141be5d85\n"
        "X-Amz-Date:20150830T123600Z\n\n"),
}

SESSION_TOKEN_VECTOR = (
    "GET / HTTP/1.1\nHost:example.amazonaws.com\n"
    + _AUTH + "SignedHeaders=host;x-amz-date;x-amz-security-token, "
    "Signature=07ec1639c89043aa0e3e2de82b96708f198cceab042d4a97044c66dd9f74e7f8\n"
    "X-Amz-Date:20150830T123600Z\n"
    "X-Amz-Security-Token:6e86291e8372ff2a2260956d9b8aae1d763fbf315fa00fa31553b73ebf194267\n\n")

MISMATCH = "The request signature we calculated does not match the signature you provided."


def parse_vector(text: str) -> dict:
    """A raw request text as the suite writes it -> verify_sigv4 keyword arguments."""
    head, _, body = text.partition("\n\n")
    request_line, *header_lines = head.split("\n")
    method, _, target = request_line.rpartition(" HTTP/1.1")[0].partition(" ")
    path, _, query = target.partition("?")
    headers = [tuple(line.split(":", 1)) for line in header_lines]
    return dict(method=method, path=path, query_string=query, headers=headers, body=body.encode())


def suite_verify(request: dict, **overrides) -> SignedRequest:
    lookup = {"AKIDEXAMPLE": SUITE_SECRET}.get
    return verify_sigv4(**{**request, **overrides}, lookup_secret=lookup, now=SUITE_NOW, service="service")


def _flip(text: str) -> str:
    """Change the last character: one byte of the host name, or of the signature's hex."""
    return text[:-1] + ("0" if text[-1] != "0" else "1")


@pytest.mark.parametrize("name", sorted(VECTORS))
def test_published_vector_verifies(name):
    assert suite_verify(parse_vector(VECTORS[name])) == SignedRequest(
        "AKIDEXAMPLE", "us-east-1", "service", SUITE_NOW)


@pytest.mark.parametrize("name", sorted(VECTORS))
def test_published_vector_fails_when_body_changes(name):
    request = parse_vector(VECTORS[name])
    body = request["body"]
    tampered = body[:-1] + bytes([body[-1] ^ 1]) if body else b"x"
    with pytest.raises(InvalidSignatureError, match=MISMATCH):
        suite_verify(request, body=tampered)


@pytest.mark.parametrize("name", sorted(VECTORS))
def test_published_vector_fails_when_a_signed_header_changes(name):
    request = parse_vector(VECTORS[name])
    headers = [(k, _flip(v) if k.lower() == "host" else v) for k, v in request["headers"]]
    with pytest.raises(InvalidSignatureError, match=MISMATCH):
        suite_verify(request, headers=headers)


@pytest.mark.parametrize("name", sorted(VECTORS))
def test_published_vector_fails_when_signature_changes(name):
    request = parse_vector(VECTORS[name])
    headers = [(k, _flip(v) if k == "Authorization" else v) for k, v in request["headers"]]
    with pytest.raises(InvalidSignatureError, match=MISMATCH):
        suite_verify(request, headers=headers)


# botocore's own copies of the older suite (boto/botocore tests/unit/auth/aws4_testsuite/<name>.creq and
# .authz), rewritten for botocore's double encoding of already-encoded paths; they sign Date, not X-Amz-Date.
BOTOCORE_VECTORS = {
    "get-space": (
        "GET\n/%2520/foo\n\ndate:Mon, 09 Sep 2011 23:36:00 GMT\nhost:host.foo.com\n\ndate;host\n"
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20110909/us-east-1/host/aws4_request, SignedHeaders=date;host, "
        "Signature=2be9e587d1ee1f0fd02128724b86b4358ba3630d39f493b6e06610a19a50779e"),
    "get-utf8": (
        "GET\n/%25E1%2588%25B4\n\ndate:Mon, 09 Sep 2011 23:36:00 GMT\nhost:host.foo.com\n\ndate;host\n"
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20110909/us-east-1/host/aws4_request, SignedHeaders=date;host, "
        "Signature=57b1eb3df3b16a8479c0097b66c0b261cfd65b829419a3f2c3d05319722490b8"),
}


@pytest.mark.parametrize("name", sorted(BOTOCORE_VECTORS))
def test_botocore_double_encoded_vector_with_date_header(name):
    creq, authz = BOTOCORE_VECTORS[name]
    method, canonical_uri, _, date, host = creq.split("\n")[:5]
    request = dict(method=method, path=unquote(canonical_uri), query_string="", body=b"",
                   headers=[("Date", date.partition(":")[2]), ("Host", host.partition(":")[2]),
                            ("Authorization", authz)])
    kwargs = dict(lookup_secret={"AKIDEXAMPLE": SUITE_SECRET}.get, service="host",
                  now=datetime(2011, 9, 9, 23, 36, tzinfo=timezone.utc))
    assert verify_sigv4(**request, **kwargs) == SignedRequest(
        "AKIDEXAMPLE", "us-east-1", "host", datetime(2011, 9, 9, 23, 36, tzinfo=timezone.utc))
    with pytest.raises(InvalidSignatureError, match=MISMATCH):  # single encoding would not verify
        verify_sigv4(**{**request, "path": unquote(request["path"])}, **kwargs)


def test_published_vector_with_session_token_is_refused():
    with pytest.raises(UnrecognizedClientError, match="security token included in the request is invalid"):
        suite_verify(parse_vector(SESSION_TOKEN_VECTOR))


# --- Round trips with real botocore -------------------------------------------------------------------
AKID, SECRET = "AKIAKEYLEDGERTEST001", "keyledger/secret+KEY0123456789abcdefghij"
SIGNED_AT = datetime(2026, 1, 1, 0, 0, tzinfo=timezone.utc)
BODY = json.dumps({"KeyId": "alias/app", "Plaintext": "aGVsbG8="}).encode()


def wire_headers(prepared, netloc: str) -> list[tuple[str, str]]:
    """Headers as an HTTP server hands them over: text, plus the Host the HTTP client adds."""
    text = [(k, v.decode("latin-1") if isinstance(v, bytes) else v) for k, v in prepared.headers.items()]
    return [*text, ("Host", netloc)]


def lookup(access_key_id: str) -> str | None:
    return {AKID: SECRET}.get(access_key_id)


def botocore_signed(body: bytes = BODY, *, secret: str = SECRET, region: str = "eu-west-1",
                    path: str = "/", extra: dict | None = None, at: datetime = SIGNED_AT) -> dict:
    """Sign like botocore's client does and return the request as our HTTP layer would see it."""
    headers = {"X-Amz-Target": "TrentService.Encrypt", "Content-Type": "application/x-amz-json-1.1",
               "User-Agent": "Boto3/1.0 keyledger-tests", **(extra or {})}
    request = AWSRequest(method="POST", url=f"https://127.0.0.1:8080{path}", data=body, headers=headers)
    with mock.patch("botocore.auth.get_current_datetime", return_value=at.replace(tzinfo=None)):
        SigV4Auth(Credentials(AKID, secret), "kms", region).add_auth(request)
    prepared = request.prepare()
    url = urlsplit(prepared.url)
    return dict(method=prepared.method, path=url.path, query_string=url.query, body=prepared.body or b"",
                headers=wire_headers(prepared, url.netloc))


def verify(request: dict, **overrides) -> SignedRequest:
    return verify_sigv4(**{"lookup_secret": lookup, "now": SIGNED_AT, **request, **overrides})


def test_botocore_signed_request_verifies():
    assert verify(botocore_signed()) == SignedRequest(AKID, "eu-west-1", "kms", SIGNED_AT)


def test_real_botocore_client_request_verifies():
    """Capture what a botocore KMS client actually puts on the wire, then verify it."""
    captured = {}

    class Captured(Exception):
        pass

    def capture(request, **_):
        captured["request"] = request
        raise Captured

    client = botocore.session.get_session().create_client(
        "kms", region_name="us-east-1", endpoint_url="https://127.0.0.1:8080",
        aws_access_key_id=AKID, aws_secret_access_key=SECRET)
    client.meta.events.register("before-send", capture)
    with pytest.raises(Captured):
        client.encrypt(KeyId="alias/app", Plaintext=b"hello")
    sent = captured["request"]
    url = urlsplit(sent.url)
    signed = verify_sigv4(method=sent.method, path=url.path, query_string=url.query,
                          headers=wire_headers(sent, url.netloc), body=sent.body,
                          lookup_secret=lookup, now=datetime.now(timezone.utc))
    assert (signed.access_key_id, signed.region, signed.service) == (AKID, "us-east-1", "kms")


def test_wrong_secret_is_a_signature_mismatch_that_leaks_nothing():
    request = botocore_signed(secret="not-the-secret")
    with pytest.raises(InvalidSignatureError, match=MISMATCH) as caught:
        verify(request)
    provided = dict(request["headers"])["Authorization"].rpartition("Signature=")[2]
    assert SECRET not in caught.value.message and provided not in caught.value.message


def test_unknown_access_key_is_unrecognized_client():
    with pytest.raises(UnrecognizedClientError, match="security token included in the request is invalid"):
        verify(botocore_signed(), lookup_secret=lambda _: None)


def test_no_authorization_header_is_missing_token():
    request = botocore_signed()
    headers = [(k, v) for k, v in request["headers"] if k.lower() != "authorization"]
    with pytest.raises(MissingAuthenticationTokenError, match="Missing Authentication Token"):
        verify(request, headers=headers)


def test_query_string_auth_is_refused_clearly():
    with pytest.raises(IncompleteSignatureError, match="Query-string"):
        verify(botocore_signed(), headers=[("Host", "127.0.0.1:8080")],
               query_string="X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Signature=abc")


def test_session_token_header_is_refused():
    with pytest.raises(UnrecognizedClientError):
        verify(botocore_signed(extra={"X-Amz-Security-Token": "token"}))


def _with_authorization(request: dict, rewrite) -> dict:
    return {**request, "headers": [(k, rewrite(v) if k == "Authorization" else v)
                                   for k, v in request["headers"]]}


def _drop_param(name):
    return lambda v: ", ".join(p for p in v.split(", ") if not p.startswith(name + "="))


@pytest.mark.parametrize("rewrite, message", [
    (lambda v: v.replace("AWS4-HMAC-SHA256", "AWS4-HMAC-SHA512"), "Unsupported AWS 'algorithm'"),
    (_drop_param("Signature"), "requires 'Signature' parameter"),
    (lambda v: v[:v.index("Credential=")] + v[v.index("SignedHeaders="):], "requires 'Credential' parameter"),
    (_drop_param("SignedHeaders"), "requires 'SignedHeaders' parameter"),
    (lambda v: v.replace("/eu-west-1/", "/"), "Credential must have the form"),
    (lambda v: v.replace("aws4_request", "aws5_request"), "valid terminator"),
    (lambda v: v.replace("SignedHeaders=content-type;host;", "SignedHeaders=content-type;"),
     "'Host' or ':authority' must be a 'SignedHeader'"),
    (lambda v: v.replace(", Signature=", ", Signature "), "missing equal-sign"),
])
def test_malformed_authorization_is_incomplete_signature(rewrite, message):
    request = _with_authorization(botocore_signed(), rewrite)
    with pytest.raises(IncompleteSignatureError, match=message) as caught:
        verify(request)
    provided = dict(botocore_signed()["headers"])["Authorization"].rpartition("Signature=")[2]
    assert provided not in caught.value.message


@pytest.mark.parametrize("renamed", ["Sig=", "X-Signature=", ""])
def test_incomplete_signature_message_echoes_the_header_but_never_the_signature(renamed):
    request = _with_authorization(botocore_signed(), lambda v: v.replace("Signature=", renamed))
    signature = dict(request["headers"])["Authorization"][-64:]
    with pytest.raises(IncompleteSignatureError) as caught:
        verify(request)
    assert "AWS4-HMAC-SHA256 Credential=AKIAKEYLEDGERTEST001/20260101/eu-west-1/kms/" \
           "aws4_request, SignedHeaders=content-type;host;x-amz-date;x-amz-target" in caught.value.message
    assert signature not in caught.value.message


def test_missing_date_is_incomplete_signature():
    request = botocore_signed()
    headers = [(k, v) for k, v in request["headers"] if k.lower() != "x-amz-date"]
    with pytest.raises(IncompleteSignatureError, match="'X-Amz-Date' or a 'Date' header"):
        verify(request, headers=headers)


@pytest.mark.parametrize("date", ["2026-01-01T00:00:00Z", "20261301T000000Z", "2026011T0000000Z"])
def test_malformed_x_amz_date_is_incomplete_signature(date):
    request = botocore_signed()
    headers = [(k, date if k.lower() == "x-amz-date" else v) for k, v in request["headers"]]
    with pytest.raises(IncompleteSignatureError, match="ISO-8601 'basic format'"):
        verify(request, headers=headers)


def test_wrong_service_in_scope_is_invalid_signature():
    with pytest.raises(InvalidSignatureError, match="scoped to correct service: 'kms'"):
        verify(_with_authorization(botocore_signed(), lambda v: v.replace("/kms/", "/s3/")))


def test_scope_date_must_match_request_date():
    with pytest.raises(InvalidSignatureError, match="'20260102' != '20260101'"):
        verify(_with_authorization(botocore_signed(), lambda v: v.replace("/20260101/", "/20260102/")))


def test_six_minutes_of_skew_is_an_expired_signature():
    with pytest.raises(InvalidSignatureError) as caught:
        verify(botocore_signed(), now=SIGNED_AT + timedelta(minutes=6))
    assert caught.value.message == ("Signature expired: 20260101T000000Z is now earlier than 20260101T000100Z "
                                    "(20260101T000600Z - 5 min.)")


def test_a_signature_from_the_future_is_not_yet_current():
    with pytest.raises(InvalidSignatureError, match="Signature not yet current: 20260101T000000Z is still later"):
        verify(botocore_signed(), now=SIGNED_AT - timedelta(minutes=6))


def test_skew_within_the_window_is_accepted():
    assert verify(botocore_signed(), now=SIGNED_AT + timedelta(minutes=5)).signed_at == SIGNED_AT
    assert verify(botocore_signed(), now=SIGNED_AT - timedelta(minutes=4, seconds=59)).access_key_id == AKID


def test_tampered_body_is_invalid_signature():
    with pytest.raises(InvalidSignatureError, match=MISMATCH):
        verify(botocore_signed(), body=BODY.replace(b"alias/app", b"alias/apq"))


def test_path_needing_encoding_verifies_and_path_is_covered():
    request = botocore_signed(path="/keys/alias%2Fmy%20key/caf%C3%A9~x/")
    assert verify(request).access_key_id == AKID
    with pytest.raises(InvalidSignatureError, match=MISMATCH):
        verify(request, path="/keys/alias%2Fmy%20key/cafe~x/")


def test_query_string_is_canonicalised_like_botocore():
    request = AWSRequest(method="GET", url="https://127.0.0.1:8080/", params={"b": "x y+z/", "a": "1"})
    with mock.patch("botocore.auth.get_current_datetime", return_value=SIGNED_AT.replace(tzinfo=None)):
        SigV4Auth(Credentials(AKID, SECRET), "kms", "eu-west-1").add_auth(request)
    prepared = request.prepare()
    url = urlsplit(prepared.url)
    assert verify({"method": "GET", "path": url.path, "query_string": url.query, "body": b"",
                   "headers": wire_headers(prepared, url.netloc)}).region == "eu-west-1"


def test_content_sha256_header_must_match_the_body():
    digest = "a" * 64
    request = botocore_signed(extra={"X-Amz-Content-SHA256": digest})
    with pytest.raises(InvalidSignatureError, match=MISMATCH):
        verify(request)  # botocore signed the (false) claimed hash; we use the real one


def test_unsigned_payload_is_refused():
    with pytest.raises(InvalidSignatureError, match="UNSIGNED-PAYLOAD"):
        verify(botocore_signed(extra={"X-Amz-Content-SHA256": "UNSIGNED-PAYLOAD"}))


# --- Property ------------------------------------------------------------------------------------------
header_text = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40)
regions = st.from_regex(r"[a-z]{2}-[a-z]{4,9}-[1-9]", fullmatch=True)


@settings(max_examples=75, deadline=None)
@given(body=st.binary(max_size=256), value=header_text, region=regions, data=st.data())
def test_property_botocore_signatures_verify_and_any_body_byte_flip_fails(body, value, region, data):
    request = botocore_signed(body, region=region, extra={"X-Keyledger-Test": value})
    assert verify(request) == SignedRequest(AKID, region, "kms", SIGNED_AT)
    if body:
        index = data.draw(st.integers(0, len(body) - 1))
        mask = data.draw(st.integers(1, 255))
        flipped = body[:index] + bytes([body[index] ^ mask]) + body[index + 1:]
        with pytest.raises(InvalidSignatureError, match=MISMATCH):
            verify(request, body=flipped)


# -- the kept Authorization fields (a client's header is the same every call but for the signature) ---------------

def _fields_or_refusal(authorization: str):
    from api import sigv4
    try:
        credential, names, signature = sigv4._parse_authorization(authorization)
        return "ok", (sigv4._parse_credential(credential), tuple(names), signature)
    except Exception as exc:  # noqa: BLE001 - the refusal compared is the exception's type and message
        return type(exc).__name__, str(exc)


def _kept_or_refusal(authorization: str):
    from api import sigv4
    try:
        parts, names, signature = sigv4._authorization_fields(authorization)
        return "ok", (parts, tuple(names), signature)
    except Exception as exc:  # noqa: BLE001
        return type(exc).__name__, str(exc)


_PIECES = st.sampled_from([
    "AWS4-HMAC-SHA256", "AWS4-HMAC-SHA1", " ", ",", ", ", "=", "Credential=", "SignedHeaders=", "Signature=",
    "signature=", "AKIDEXAMPLE/20150830/us-east-1/kms/aws4_request", "AKID/2015/us-east-1/kms/aws4_request",
    "AKIDEXAMPLE/20150830/us-east-1/kms/aws4", "host;x-amz-date", "Host; X-Amz-Date;", "x", "ab12", "Signature=ab,cd",
])
_WELL_FORMED = ("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/kms/aws4_request, "
                "SignedHeaders=host;x-amz-date, Signature=")


@settings(max_examples=500, deadline=None)
@given(head=st.one_of(st.just(_WELL_FORMED), st.lists(_PIECES, max_size=10).map("".join)),
       signatures=st.lists(st.text(alphabet="0123456789abcdef ,=", max_size=8), min_size=1, max_size=4))
def test_kept_authorization_fields_answer_exactly_as_parsing_the_header(head, signatures):
    """Whatever was kept from headers before, a header's fields (or its refusal) are what parsing it gives."""
    for signature in signatures:
        authorization = head + signature
        assert _kept_or_refusal(authorization) == _fields_or_refusal(authorization)
        assert _kept_or_refusal(authorization) == _fields_or_refusal(authorization)  # now perhaps from what was kept
