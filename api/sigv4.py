"""AWS Signature Version 4 verification for incoming requests (Authorization-header form only).

The canonical request, string-to-sign and signature are computed exactly as ``botocore.auth.SigV4Auth``
computes them when it signs (header value trimming, duplicate headers joined by commas, RFC 3986 query
encoding, botocore's path normalisation), but for exactly the headers the client listed in
``SignedHeaders`` (``SigV4Auth.canonical_request`` chooses the headers itself). The tests check this
against AWS's published vectors and against botocore signatures of generated requests.

Every request is verified. What is cached is only what does not depend on the request: the derived
signing key per (secret, date, region, service), as AWS's own SDKs cache it (kept as an HMAC keyed with it),
and the parsed form of the last few X-Amz-Date values."""
from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta, timezone
from email.utils import parsedate_to_datetime
from typing import NamedTuple
from urllib.parse import quote, unquote_plus

from botocore.utils import normalize_url_path
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import hmac as crypto_hmac

from domain.crypto.primitives import sha256_hex
from domain.errors import (
    IncompleteSignatureError,
    InvalidSignatureError,
    MissingAuthenticationTokenError,
    UnrecognizedClientError,
    shown,
)

_ALGORITHM = "AWS4-HMAC-SHA256"
_AMZ_DATE = "%Y%m%dT%H%M%SZ"
_BAD_TOKEN = "The security token included in the request is invalid."
_MISMATCH = (
    "The request signature we calculated does not match the signature you provided. Check your AWS "
    "Secret Access Key and signing method. Consult the service documentation for details."
)


class SignedRequest(NamedTuple):  # a tuple: made on every call, and frozen dataclasses are slow to make
    access_key_id: str
    region: str  # from the credential scope
    service: str  # from the credential scope
    signed_at: datetime  # from X-Amz-Date, tz-aware UTC


def verify_sigv4(*, method: str, path: str, query_string: str, headers: Sequence[tuple[str, str]],
                 body: bytes, lookup_secret: Callable[[str], str | None], now: datetime,
                 service: str = "kms", max_skew: timedelta = timedelta(minutes=5)) -> SignedRequest:
    """Return who signed the request, or raise the error AWS would answer with."""
    by_name: dict[str, list[str]] = {}
    for name, value in headers:
        by_name.setdefault(name.strip().lower(), []).append(value)
    query = _parse_query(query_string)

    if "authorization" not in by_name:
        if any(key == "X-Amz-Algorithm" for key, _ in query):
            raise IncompleteSignatureError(
                "Query-string (presigned URL) authentication is not supported by this service; "
                "sign the request with an Authorization header.")
        raise MissingAuthenticationTokenError("Missing Authentication Token")
    # We issue no session tokens, so any token is one we cannot have issued.
    if "x-amz-security-token" in by_name or any(k == "X-Amz-Security-Token" for k, _ in query):
        raise UnrecognizedClientError(_BAD_TOKEN)

    authorization = by_name["authorization"][0]
    (access_key_id, scope_date, region, scope_service), signed_names, provided = _authorization_fields(authorization)
    if "host" not in signed_names:
        raise IncompleteSignatureError(
            "'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization.")
    amz_date, signed_at = _request_time(by_name, authorization)

    if scope_service != service:
        raise InvalidSignatureError(f"Credential should be scoped to correct service: '{service}'.")
    if scope_date != amz_date[:8]:
        raise InvalidSignatureError(
            "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: "
            f"'{scope_date}' != '{amz_date[:8]}', from '{amz_date}'.")
    secret = lookup_secret(access_key_id)
    if secret is None:
        raise UnrecognizedClientError(_BAD_TOKEN)
    _check_skew(amz_date, signed_at, now, max_skew)

    missing = [name for name in signed_names if name not in by_name]
    if missing:
        raise IncompleteSignatureError(
            f"Signed header(s) {shown(', '.join(missing))} listed in SignedHeaders are not present in the request.")
    # A name listed twice contributes its values twice, as botocore's HTTPHeaders.from_pairs would.
    signed: dict[str, list[str]] = {}
    for name in signed_names:
        if name in signed:
            signed[name] = signed[name] + by_name[name]
        else:
            signed[name] = by_name[name]
    ordered = sorted(signed)
    # Trimall: surrounding whitespace removed, inner runs collapsed to one space; values joined by ','.
    lines = []
    for name in ordered:
        values = signed[name]
        lines.append(f"{name}:{' '.join(values[0].split())}\n" if len(values) == 1
                     else f"{name}:{','.join(' '.join(v.split()) for v in values)}\n")
    canonical_request = "\n".join([
        method.upper(),
        # botocore's client path for non-S3 services: dot segments and duplicate slashes removed,
        # then the (already percent-encoded) path encoded once more. Matching it is what verifies.
        "/" if path == "/" else quote(normalize_url_path(path), safe="/~"),
        _canonical_query(query),
        "".join(lines),
        ";".join(ordered),
        _payload_hash(by_name, signed_names, body),
    ])
    string_to_sign = "\n".join([
        _ALGORITHM, amz_date, f"{scope_date}/{region}/{scope_service}/aws4_request",
        hashlib.sha256(canonical_request.encode("utf-8")).hexdigest()])
    mac = _signing_mac(secret, scope_date, region, scope_service).copy()
    mac.update(string_to_sign.encode("utf-8"))
    expected = mac.finalize().hex()
    if not hmac.compare_digest(expected.encode("ascii"), provided.encode("utf-8", "replace")):
        raise InvalidSignatureError(_MISMATCH)
    return SignedRequest(access_key_id, region, scope_service, signed_at)


_SIGNING_MACS: dict[tuple[str, str, str, str], crypto_hmac.HMAC] = {}
_SIGNING_MACS_MAX = 4096


def _signing_mac(secret: str, date: str, region: str, service: str) -> crypto_hmac.HMAC:
    """An HMAC-SHA256 keyed with kSigning = HMAC(HMAC(HMAC(HMAC("AWS4" + secret, date), region), service),
    "aws4_request"), to be copied for each signature and never updated itself. The four HMACs change once a day
    per access key and region, so they are derived once and kept (in memory only), as AWS's own SDKs keep the key;
    keeping it keyed also spares each request the key's own two blocks of SHA-256 and the digest's look-up
    (a copy and a signature: 0.85 us, against 2.9 for ``hmac.new(...).hexdigest()``)."""
    cache_key = (secret, date, region, service)
    mac = _SIGNING_MACS.get(cache_key)
    if mac is None:
        key = f"AWS4{secret}".encode("utf-8")
        for part in (date, region, service, "aws4_request"):
            key = hmac.new(key, part.encode("utf-8"), hashlib.sha256).digest()
        if len(_SIGNING_MACS) >= _SIGNING_MACS_MAX:
            _SIGNING_MACS.clear()
        mac = _SIGNING_MACS[cache_key] = crypto_hmac.HMAC(key, hashes.SHA256())
    return mac


def _canonical_query(query: list[tuple[str, str]]) -> str:
    # botocore's SigV4Auth._canonical_query_string_params: RFC 3986 encoding, sorted by key then value.
    if not query:
        return ""
    pairs = sorted((quote(k, safe="-_.~"), quote(str(v), safe="-_.~")) for k, v in query)
    return "&".join(f"{k}={v}" for k, v in pairs)


def _parse_query(query_string: str) -> list[tuple[str, str]]:
    # Decode, then botocore re-encodes (RFC 3986) and sorts. '+' decodes to a space because botocore
    # sends request params form-encoded ('+') while signing them as '%20'; a literal plus arrives as %2B.
    pairs = []
    for part in query_string.split("&"):
        if part:
            key, _, value = part.partition("=")
            pairs.append((unquote_plus(key), unquote_plus(value)))
    return pairs


def _echo(authorization: str) -> str:
    # AWS echoes the whole header back; we echo its shape but only the Credential and SignedHeaders
    # values, so a signature is never reflected whatever the client called its parameter.
    algorithm, _, rest = authorization.strip().partition(" ")
    kept = []
    for item in filter(None, (p.strip() for p in rest.split(","))):
        key, eq, _ = item.partition("=")
        keep = key.strip() in ("Credential", "SignedHeaders")
        kept.append(item if keep else f"{key.strip()}=<redacted>" if eq else "<redacted>")
    return shown(f"{algorithm[:64]} {', '.join(kept)}", 256)


_AUTHORIZATIONS: dict[str, tuple[tuple[str, str, str, str], tuple[str, ...]]] = {}
_AUTHORIZATIONS_MAX = 4096


def _authorization_fields(authorization: str) -> tuple[tuple[str, str, str, str], Sequence[str], str]:
    """The credential's four parts, the signed header names and the signature, or the error AWS answers with.

    A client sends the same Authorization header every call of a day but for the signature, which SDKs put last:
    what comes before it is parsed once and kept, like the signing key (in memory; nothing secret). Only a header
    that parsed without error is kept, and only when the signature is the last parameter and holds no comma: then
    any other signature after the same text parses to the same fields, so a kept one answers exactly as parsing."""
    head, found, tail = authorization.rpartition("Signature=")
    provided = tail.strip()
    plain = bool(found) and bool(provided) and "," not in tail
    if plain:
        fields = _AUTHORIZATIONS.get(head)
        if fields is not None:
            return fields[0], fields[1], provided
    credential, signed_names, signature = _parse_authorization(authorization)
    parts = _parse_credential(credential)
    if plain and signature == provided:
        if len(_AUTHORIZATIONS) >= _AUTHORIZATIONS_MAX:
            _AUTHORIZATIONS.clear()
        _AUTHORIZATIONS[head] = (parts, tuple(signed_names))
    return parts, signed_names, signature


def _parse_authorization(authorization: str) -> tuple[str, list[str], str]:
    algorithm, _, rest = authorization.strip().partition(" ")
    if algorithm != _ALGORITHM:
        raise IncompleteSignatureError(
            f"Unsupported AWS 'algorithm': '{shown(algorithm, 64)}'; only {_ALGORITHM} is accepted.")
    params: dict[str, str] = {}
    for item in filter(None, (p.strip() for p in rest.split(","))):
        key, eq, value = item.partition("=")
        if not eq:
            raise IncompleteSignatureError(
                "A parameter is not a valid key=value pair (missing equal-sign) in Authorization header: "
                f"'{_echo(authorization)}'.")
        params[key.strip()] = value.strip()
    missing = [k for k in ("Credential", "Signature", "SignedHeaders") if not params.get(k)]
    if missing:
        raise IncompleteSignatureError(
            "".join(f"Authorization header requires '{k}' parameter. " for k in missing)
            + f"Authorization={_echo(authorization)}")
    signed_names = [n.strip().lower() for n in params["SignedHeaders"].split(";") if n.strip()]
    return params["Credential"], signed_names, params["Signature"]


def _parse_credential(credential: str) -> tuple[str, str, str, str]:
    parts = credential.split("/")
    if len(parts) != 5 or not all(parts) or not re.fullmatch(r"\d{8}", parts[1]):
        raise IncompleteSignatureError(
            "Credential must have the form <AccessKeyId>/<YYYYMMDD>/<region>/<service>/aws4_request, "
            f"not '{shown(credential)}'.")
    if parts[4] != "aws4_request":
        raise IncompleteSignatureError(
            f"Credential should be scoped with a valid terminator: 'aws4_request', not '{shown(parts[4], 64)}'.")
    return parts[0], parts[1], parts[2], parts[3]


_AMZ_DATE_SHAPE = re.compile(r"\d{8}T\d{6}Z")
_AMZ_DATES: dict[str, datetime] = {}


def _request_time(by_name: dict[str, list[str]], authorization: str) -> tuple[str, datetime]:
    """The signing timestamp as SigV4 text and as a datetime: X-Amz-Date wins over Date."""
    if "x-amz-date" in by_name:
        text = by_name["x-amz-date"][0].strip()
        parsed = _AMZ_DATES.get(text)
        if parsed is not None:
            return text, parsed
        try:  # the regex because strptime alone accepts short fields such as "2026011T..."
            if _AMZ_DATE_SHAPE.fullmatch(text):
                parsed = datetime.strptime(text, _AMZ_DATE).replace(tzinfo=timezone.utc)
                if len(_AMZ_DATES) >= 64:  # a client sends the same X-Amz-Date for every request in a second
                    _AMZ_DATES.clear()
                _AMZ_DATES[text] = parsed
                return text, parsed
        except ValueError:  # well-shaped but impossible, e.g. month 13
            pass
        raise IncompleteSignatureError(f"Date must be in ISO-8601 'basic format'. Got '{shown(text, 64)}'. "
                                       "See http://en.wikipedia.org/wiki/ISO_8601")
    if "date" in by_name:
        try:
            when = parsedate_to_datetime(by_name["date"][0])
        except (TypeError, ValueError):
            raise IncompleteSignatureError(
                f"Date header is not an RFC 1123 date: '{shown(by_name['date'][0], 64)}'.") from None
        when = when.astimezone(timezone.utc) if when.tzinfo else when.replace(tzinfo=timezone.utc)
        return when.strftime(_AMZ_DATE), when
    raise IncompleteSignatureError(
        "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header. "
        f"Authorization={_echo(authorization)}")


def _check_skew(amz_date: str, signed_at: datetime, now: datetime, max_skew: timedelta) -> None:
    if now.tzinfo is not timezone.utc:
        now = now.astimezone(timezone.utc) if now.tzinfo else now.replace(tzinfo=timezone.utc)
    if -max_skew <= signed_at - now <= max_skew:  # now - skew <= signed_at <= now + skew
        return
    tail = f"{now.strftime(_AMZ_DATE)} %s {max_skew.total_seconds() / 60:g} min."
    if signed_at < now - max_skew:
        raise InvalidSignatureError(f"Signature expired: {amz_date} is now earlier than "
                                    f"{(now - max_skew).strftime(_AMZ_DATE)} ({tail % '-'})")
    raise InvalidSignatureError(f"Signature not yet current: {amz_date} is still later than "
                                f"{(now + max_skew).strftime(_AMZ_DATE)} ({tail % '+'})")


def _payload_hash(by_name: dict[str, list[str]], signed_names: list[str], body: bytes) -> str:
    actual = sha256_hex(body)
    if "x-amz-content-sha256" not in signed_names:
        return actual
    claimed = by_name["x-amz-content-sha256"][0].strip()
    if claimed == "UNSIGNED-PAYLOAD":
        raise InvalidSignatureError("UNSIGNED-PAYLOAD is not accepted by this service; sign the body.")
    # A claimed hash that is not the body's own falls back to the real one, so the signature fails.
    return claimed if claimed.lower() == actual else actual
