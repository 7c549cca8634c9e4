"""SigV4 for hostile requests: botocore's own signer (SigV4Auth), at an instant of our choosing, over exactly
the header values and body bytes that will be sent."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from botocore.auth import SIGV4_TIMESTAMP, SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from tests.servers import ADMIN_KEY_ID, ADMIN_SECRET

REGION = "us-east-1"


class SigV4AtInstant(SigV4Auth):
    """SigV4Auth.add_auth with the clock given instead of read: requests signed minutes or years away from now
    are correctly signed in every other respect, so only the time check can refuse them."""

    def __init__(self, credentials: Credentials, service: str, region: str, at: datetime) -> None:
        super().__init__(credentials, service, region)
        self._at = at

    def add_auth(self, request: AWSRequest) -> None:
        request.context["timestamp"] = self._at.strftime(SIGV4_TIMESTAMP)
        self._modify_request_before_signing(request)
        canonical_request = self.canonical_request(request)
        string_to_sign = self.string_to_sign(request, canonical_request)
        self._inject_signature_to_request(request, self.signature(string_to_sign, request))


def sign(endpoint: str, path: str, headers: list[tuple[bytes, bytes]], body: bytes, *,
         key_id: str = ADMIN_KEY_ID, secret: str = ADMIN_SECRET, region: str = REGION, service: str = "kms",
         skew: timedelta = timedelta(0), method: str = "POST") -> list[tuple[bytes, bytes]]:
    """The headers botocore adds to sign ``headers`` + ``body`` (X-Amz-Date and Authorization), as bytes.
    Every header given is signed (botocore leaves out User-Agent and a few others, as AWS clients do)."""
    request = AWSRequest(method=method, url=endpoint + path, data=body,
                         headers={name.decode("latin-1"): value.decode("latin-1") for name, value in headers})
    SigV4AtInstant(Credentials(key_id, secret), service, region, datetime.now(timezone.utc) + skew).add_auth(request)
    given = {name.lower() for name, _ in headers}
    return [(name.encode("latin-1"), value.encode("utf-8")) for name, value in request.headers.items()
            if name.lower().encode("latin-1") not in given]
