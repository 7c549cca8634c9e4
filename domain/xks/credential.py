"""An XKS proxy credential: the access key id and secret AWS KMS (or another keyledger) signs XKS proxy API
requests with (SigV4, service ``kms-xks-proxy``), as an aggregate so its life is in the ledger.

A credential belongs to an account and acts as one of its principals (by default the account root): an XKS call
signed with it is that principal's call, authorized by the key policy of the key it names. No secret is in any
event: the secret lives root-wrapped in its own row (infrastructure/xks_credentials.py); events carry the id.

Rotation follows the spec ("SigV4 credentials rotation"): ``rotate`` makes a new credential for the same
account and principal and leaves the old one working, so AWS KMS can be told the new one
(UpdateCustomKeyStore) before the old one is deleted.
"""
from __future__ import annotations

import base64
import os
import secrets
import uuid
from datetime import datetime

from eventsourcing.domain import Aggregate

from domain.errors import NotFoundError, shown

_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "keyledger:xks-proxy-credential")
_ID_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
ACCESS_KEY_ID_CHARS = 24  # AWS requires 20 to 30 of [A-Z2-7]


def new_credential() -> tuple[str, str]:
    """(access key id, secret): 24 characters of [A-Z2-7], and Base64 of 32 random bytes (44 characters of
    [A-Za-z0-9+/=], 256 bits), as the spec's Appendix A suggests."""
    access_key_id = "".join(secrets.choice(_ID_ALPHABET) for _ in range(ACCESS_KEY_ID_CHARS))
    return access_key_id, base64.b64encode(os.urandom(32)).decode("ascii")


def credential_uuid(access_key_id: str) -> uuid.UUID:
    return uuid.uuid5(_NAMESPACE, access_key_id)


class XksCredential(Aggregate):
    class Created(Aggregate.Created):
        access_key_id: str
        account_id: str
        principal_arn: str
        replaces: str | None  # the credential this one rotated, if any

    class Rotated(Aggregate.Event):
        """A successor was made; this one keeps working until deleted."""

        replaced_by: str

        def apply(self, credential: XksCredential) -> None:
            credential.replaced_by = self.replaced_by

    class Deleted(Aggregate.Event):
        def apply(self, credential: XksCredential) -> None:
            credential.deleted = True

    def __init__(self, *, access_key_id: str, account_id: str, principal_arn: str, replaces: str | None) -> None:
        self.access_key_id = access_key_id
        self.account_id = account_id
        self.principal_arn = principal_arn
        self.replaces = replaces
        self.replaced_by: str | None = None
        self.deleted = False

    @classmethod
    def create(cls, *, access_key_id: str, account_id: str, principal_arn: str, at: datetime,
               replaces: str | None = None) -> XksCredential:
        return cls._create(cls.Created, id=credential_uuid(access_key_id), timestamp=at, access_key_id=access_key_id,
                           account_id=account_id, principal_arn=principal_arn, replaces=replaces)

    def require_live(self) -> None:
        if self.deleted:
            raise NotFoundError(f"XKS proxy credential {shown(self.access_key_id)} does not exist.")

    def rotate(self, successor: str, at: datetime) -> None:
        self.require_live()
        self.trigger_event(self.Rotated, replaced_by=successor, timestamp=at)

    def delete(self, at: datetime) -> None:
        self.require_live()
        self.trigger_event(self.Deleted, timestamp=at)
