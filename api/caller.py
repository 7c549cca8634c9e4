"""Who is calling: SigV4 verification of an HTTP request against our access keys, shared by the KMS
endpoint and the /v1 query API. Fills the audit record's identity as far as it gets."""
from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import Sequence

from starlette.requests import Request

from api.sigv4 import verify_sigv4
from application.audit.records import CallContext
from domain.errors import InvalidSignatureError, SealedError, UnrecognizedClientError, shown
from domain.identifiers import Scope
from infrastructure.bootstrap import Runtime

_CREDENTIAL = re.compile(r"Credential=(?P<key>[A-Za-z0-9]{1,128})/\d{8}/(?P<region>[a-z0-9-]{1,32})/")


def authenticate(runtime: Runtime, request: Request, body: bytes, call: CallContext) -> Scope:
    """For a Starlette request (the /v1 query API)."""
    return authenticate_raw(
        runtime, method=request.method, path=request.scope.get("raw_path", b"/").decode("latin-1") or "/",
        query_string=request.scope.get("query_string", b"").decode("latin-1"),
        headers=[(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.scope["headers"]],
        body=body, call=call)


def authenticate_raw(runtime: Runtime, *, method: str, path: str, query_string: str,
                     headers: Sequence[tuple[str, str]], body: bytes, call: CallContext) -> Scope:
    """``headers``: every header of the request as (name, value) text, names in any case."""
    if runtime.sealed_reason or runtime.services is None:
        raise SealedError(f"keyledger is sealed and refuses key operations: {runtime.sealed_reason}")
    credentials = runtime.services.credentials
    authorization = next((v for k, v in headers if k.lower() == "authorization"), "")
    claimed = _CREDENTIAL.search(authorization)
    if claimed:  # what the caller claims, recorded even if the signature is refused
        call.record["awsRegion"] = claimed.group("region")
        call.record["userIdentity"] = {"type": "Unknown", "accessKeyId": claimed.group("key")}
    signed = verify_sigv4(
        method=method, path=path, query_string=query_string, headers=headers, body=body,
        lookup_secret=lambda key_id: (c.secret if (c := credentials.lookup(key_id)) else None),
        now=datetime.now(tz=timezone.utc),
    )
    call.record["awsRegion"] = signed.region
    if signed.region not in runtime.settings.regions:
        raise InvalidSignatureError(f"Credential should be scoped to a valid region, not '{shown(signed.region)}'.")
    credential = credentials.lookup(signed.access_key_id)
    if credential is None:
        raise UnrecognizedClientError("The security token included in the request is invalid.")
    owner = runtime.services.principals.get(credential.principal_arn)  # the user, or the session's role
    call.identify(principal_arn=credential.principal_arn, account_id=credential.account_id,
                  access_key_id=credential.access_key_id, region=signed.region,
                  unique_id=owner.unique_id if owner and owner.kind != "root" else None,
                  role_arn=owner.arn if owner and owner.kind == "role" else None)
    return Scope(credential.account_id, signed.region)
