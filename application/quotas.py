"""Request quotas as AWS KMS has them: requests per second per account and Region, shared by the
operations of a class; a request over its quota is refused with ThrottlingException ("Rate exceeded").

AWS groups its quotas into the cryptographic operations, which share one quota per key type (symmetric,
RSA, ECC: "Cryptographic operations (...) request rate"), and the management operations, each with a quota
of its own (CreateKey 5, DescribeKey 2,000, ...). We keep two classes, cryptographic and management, each
shared by its operations (the key type of a cryptographic call is known only once its key is read, after
the quota is checked). Defaults: AWS's largest symmetric quota (100,000 per second) and its largest
management one (DescribeKey's 2,000): no honest load reaches them on one host, a runaway client does.

Buckets are taken on the event loop only (the KMS endpoint checks the quota before a handler runs, in a
thread or not), so they need no lock: one dict lookup and a few float operations per call.
"""
from __future__ import annotations

import time
from typing import Callable, Mapping

from domain.errors import ThrottlingError

CRYPTOGRAPHIC = "cryptographic"
MANAGEMENT = "management"
RATE_EXCEEDED = "Rate exceeded"

# AWS's "Cryptographic operations (symmetric|RSA|ECC|HMAC) request rate" quotas apply to these; every
# other operation is a management operation.
CRYPTOGRAPHIC_OPERATIONS = frozenset({
    "Encrypt", "Decrypt", "ReEncrypt", "GenerateDataKey", "GenerateDataKeyWithoutPlaintext",
    "GenerateDataKeyPair", "GenerateDataKeyPairWithoutPlaintext", "GenerateRandom", "GenerateMac", "VerifyMac",
    "Sign", "Verify", "GetPublicKey", "DeriveSharedSecret", "Encapsulate", "Decapsulate",
    "XksEncrypt", "XksDecrypt",  # keyledger's XKS proxy API: what AWS KMS asks of it per cryptographic call
})


def operation_class(operation: str) -> str:
    return CRYPTOGRAPHIC if operation in CRYPTOGRAPHIC_OPERATIONS else MANAGEMENT


class TokenBucket:
    """``rate`` tokens a second, at most ``burst`` saved up (one second's worth, at least one token)."""

    __slots__ = ("rate", "burst", "tokens", "at")

    def __init__(self, rate: float, now: float) -> None:
        self.rate = rate
        self.burst = max(1.0, rate)
        self.tokens = self.burst
        self.at = now

    def take(self, now: float) -> bool:
        tokens = self.tokens + (now - self.at) * self.rate
        if tokens > self.burst:
            tokens = self.burst
        self.at = now
        if tokens < 1.0:
            self.tokens = tokens
            return False
        self.tokens = tokens - 1.0
        return True


class RequestQuotas:
    def __init__(self, cryptographic_per_second: float, management_per_second: float,
                 overrides: Mapping[str, Mapping[str, float]] | None = None,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        """A rate of 0 means no quota for that class. ``overrides``: per account id, a rate per class."""
        self._defaults = {CRYPTOGRAPHIC: cryptographic_per_second, MANAGEMENT: management_per_second}
        self._overrides = {account: dict(classes) for account, classes in (overrides or {}).items()}
        self._buckets: dict[tuple[str, str, str], TokenBucket | None] = {}
        self._monotonic = monotonic

    def rate(self, account_id: str, quota_class: str) -> float:
        return self._overrides.get(account_id, {}).get(quota_class, self._defaults[quota_class])

    def take(self, account_id: str, region: str, operation: str) -> None:
        """Counts one call of ``operation``; raises ThrottlingError when its class's quota is spent."""
        quota_class = CRYPTOGRAPHIC if operation in CRYPTOGRAPHIC_OPERATIONS else MANAGEMENT
        key = (account_id, region, quota_class)
        now = self._monotonic()
        try:
            bucket = self._buckets[key]
        except KeyError:
            rate = self.rate(account_id, quota_class)
            bucket = self._buckets[key] = TokenBucket(rate, now) if rate > 0 else None
        if bucket is not None and not bucket.take(now):
            raise ThrottlingError(RATE_EXCEEDED)
