"""GetKeyLastUsage: the last successful cryptographic use of a key, from the audit log (docs/decisions.md 90).

The audit log is the source: a follower reads records after its position and indexes each successful use of a
tracked operation by key (projections/key_usage.py). Every answer first catches the follower up, so a use is
visible to the next call on any process; the cost is the records since the last catch-up, not the log's length.
"As of T" (the /v1 query API) is the last use at or before T."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable, Iterable, Iterator, Protocol, Sequence

from application.calls import Call
from application.keys.resolver import KeyResolver
from domain.errors import NotFoundError
from domain.identifiers import arn_region, key_storage_id

# botocore's KeyLastUsageTrackingOperation
TRACKED_OPERATIONS = frozenset({
    "Decrypt", "DeriveSharedSecret", "Encrypt", "GenerateDataKey", "GenerateDataKeyPair",
    "GenerateDataKeyPairWithoutPlaintext", "GenerateDataKeyWithoutPlaintext", "GenerateMac", "ReEncrypt", "Sign",
    "Verify", "VerifyMac", "Encapsulate", "Decapsulate"})
CATCH_UP_CHUNK = 2000  # audit records per follower transaction


@dataclass(frozen=True)
class KeyUse:
    key_id: str
    at: datetime
    operation: str
    event_id: str
    request_id: str


class KeyUsageIndex(Protocol):
    def position(self) -> int: ...

    def add(self, after: int, upto: int, uses: Sequence[tuple[int, KeyUse]]) -> bool: ...

    def last_use(self, key_id: str, at: datetime | None) -> KeyUse | None: ...


# keyledger's XKS proxy API encrypting or decrypting with a key for AWS KMS (application/xks/proxy.py): a use of
# that key, reported as the KMS operation it performs.
XKS_USES = {"XksEncrypt": "Encrypt", "XksDecrypt": "Decrypt"}


def uses_in(record: dict[str, Any]) -> list[KeyUse]:
    """The key uses one audit record shows: a successful API call of a tracked operation, per key it names."""
    operation = record.get("eventName")
    operation = XKS_USES.get(operation, operation)  # type: ignore[arg-type]
    if (operation not in TRACKED_OPERATIONS or record.get("errorCode")
            or record.get("eventType") != "AwsApiCall" or not record.get("eventTime")):
        return []
    at = datetime.fromisoformat(record["eventTime"].replace("Z", "+00:00"))
    # By storage id: related multi-Region keys share a key id, and each Region's key has its own last use.
    keys = [key_storage_id(r["ARN"].rsplit("/", 1)[-1], arn_region(r["ARN"])) for r in record.get("resources") or []
            if ":key/" in (r.get("ARN") or "")]
    return [KeyUse(key_id, at, operation, record.get("eventID") or "", record.get("requestID") or "")
            for key_id in dict.fromkeys(keys)]


def _usage(use: KeyUse | None) -> dict[str, Any]:
    if use is None:
        return {}  # "If the key has not been used since tracking began, this response element is an empty object"
    return {"Operation": use.operation, "Timestamp": use.at, "CloudTrailEventId": use.event_id,
            "KmsRequestId": use.request_id}


class KeyLastUsage:
    def __init__(self, records_after: Callable[[int], Iterable[dict[str, Any]]], index: KeyUsageIndex,
                 resolver: KeyResolver) -> None:
        self._records_after = records_after
        self._index = index
        self._resolve = resolver

    def catch_up(self) -> None:
        """Index every audit record committed before this call."""
        while True:
            position = self._index.position()
            last, uses = position, []
            records: Iterator[dict[str, Any]] = iter(self._records_after(position))
            for count, record in enumerate(records, 1):
                last = int(record["seq"])
                uses += [(last, use) for use in uses_in(record)]
                if count >= CATCH_UP_CHUNK:
                    break
            if last == position:
                return
            self._index.add(position, last, uses)  # False: another process moved it; read the position again

    def get_key_last_usage(self, call: Call, key_ref: str) -> dict[str, Any]:
        if key_ref.startswith("alias/") or ":alias/" in key_ref:
            raise NotFoundError("GetKeyLastUsage does not take alias names: specify the key ID or key ARN.")
        row = self._resolve.row(call, key_ref)
        self.catch_up()
        created = row.metadata["CreationDate"]
        # Every record since the key was made is in the audit log, so tracking starts at its creation.
        return {"KeyId": row.key_id, "KeyLastUsage": _usage(self._index.last_use(row.storage_id, None)),
                "TrackingStartDate": created, "KeyCreationDate": created}

    def last_usage_at(self, key_id: str, at: datetime, region: str = "") -> dict[str, Any]:
        """The last use at or before ``at`` of the key ``key_id`` of ``region`` (the caller checked who may ask)."""
        self.catch_up()
        return _usage(self._index.last_use(key_storage_id(key_id, region), at))
