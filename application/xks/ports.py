"""What the XKS proxy services need from outside: the credentials' rows (the secret root-wrapped)."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

XKS_SOURCE = "kms-xks-proxy"  # eventSource of XKS proxy calls and credential changes (the SigV4 service name)
XKS_SECRET_PURPOSE = "xks-proxy-credential-secret"  # AAD purpose of a root-wrapped XKS credential secret


@dataclass(frozen=True)
class XksCredentialRow:
    access_key_id: str
    account_id: str
    principal_arn: str
    created: datetime
    replaces: str | None = None
    replaced_by: str | None = None


@dataclass(frozen=True)
class XksSigningCredential:
    """What a request's signature is checked against (only ever in memory)."""

    access_key_id: str
    account_id: str
    principal_arn: str
    secret: str = field(repr=False)


class XksCredentialStore(Protocol):
    def put(self, tx: Any, row: XksCredentialRow, secret: str) -> None: ...

    def mark_replaced(self, tx: Any, access_key_id: str, replaced_by: str) -> None: ...

    def delete(self, tx: Any, access_key_id: str) -> None: ...

    def rows(self, account_id: str | None = None) -> list[XksCredentialRow]: ...

    def lookup(self, access_key_id: str) -> XksSigningCredential | None:
        """The credential a request claims (None: unknown or deleted); cached briefly."""

    def forget(self, access_key_id: str) -> None: ...
