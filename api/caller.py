"""Who is calling: SigV4 verification of an HTTP request against our access keys, for the pipeline shared
by the KMS endpoint and the /v1 query API. What the request claims is noted on the Call as soon as it is
read (recorded even if the signature is refused); the caller is set only once the signature is verified."""
from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import Sequence

from api.sigv4 import verify_sigv4
from application.calls import Call, Caller
from domain.errors import InvalidSignatureError, SealedError, UnrecognizedClientError, shown
from domain.identifiers import scope_of
from infrastructure.credentials import Credential
from infrastructure.runtime import Runtime

_CREDENTIAL = re.compile(r"Credential=(?P<key>[A-Za-z0-9]{1,128})/\d{8}/(?P<region>[a-z0-9-]{1,32})/")


_CALLERS: dict[tuple[str, str, str, str | None, str | None], Caller] = {}


def caller_of(principal_arn: str, account_id: str, access_key_id: str, unique_id: str | None,
              role_arn: str | None) -> Caller:
    """The Caller with these fields, the same (immutable) object for every call with the same credential, as
    ``scope_of`` keeps Scopes."""
    fields = (principal_arn, account_id, access_key_id, unique_id, role_arn)
    caller = _CALLERS.get(fields)
    if caller is None:
        if len(_CALLERS) >= 4096:  # bounded: one entry per access key in use
            _CALLERS.clear()
        caller = _CALLERS[fields] = Caller(*fields)
    return caller


def authenticate(runtime: Runtime, call: Call, *, method: str, path: str, query_string: str,
                 headers: Sequence[tuple[str, str]], body: bytes) -> None:
    """Sets ``call``'s caller and scope, or raises. ``headers``: every header of the request as (name, value)
    text, names in any case."""
    if runtime.sealed_reason or runtime.services is None:
        raise SealedError(f"keyledger is sealed and refuses key operations: {runtime.sealed_reason}")
    credentials = runtime.services.credentials
    authorization = next((v for k, v in headers if k.lower() == "authorization"), "")
    claimed = _CREDENTIAL.search(authorization)
    if claimed:  # what the caller claims, recorded even if the signature is refused
        call.claim(claimed.group("key"), claimed.group("region"))
    found: list[Credential] = []  # the credential whose secret verified the signature: looked up once

    def lookup_secret(key_id: str) -> str | None:
        credential = credentials.lookup(key_id)
        if credential is None:
            return None
        found.append(credential)
        return credential.secret

    signed = verify_sigv4(method=method, path=path, query_string=query_string, headers=headers, body=body,
                          lookup_secret=lookup_secret, now=datetime.now(tz=timezone.utc))
    call.region = signed.region
    if signed.region not in runtime.settings.regions:
        raise InvalidSignatureError(f"Credential should be scoped to a valid region, not '{shown(signed.region)}'.")
    credential = found[-1] if found and found[-1].access_key_id == signed.access_key_id else None
    if credential is None:
        raise UnrecognizedClientError("The security token included in the request is invalid.")
    owner = runtime.services.principals.get(credential.principal_arn)  # the user, or the session's role
    call.authenticate(caller_of(credential.principal_arn, credential.account_id, credential.access_key_id,
                                owner.unique_id if owner and owner.kind != "root" else None,
                                owner.arn if owner and owner.kind == "role" else None),
                      scope_of(credential.account_id, signed.region))
