"""What keys and calls would cost at AWS KMS's list prices, so a platform team can put a number on running
its own KMS. The prices are data (infrastructure/data/aws-kms-prices.json, or the file named by
KEYLEDGER_PRICE_TABLE; docs/pricing.md); this module only counts and multiplies.

The model, as AWS publishes it: each key costs ``key_month`` per month (prorated by the hour) while it exists
and is not scheduled for deletion (a deletion canceled in its waiting period is charged as if never
scheduled); each of the first ``rotations_charged`` rotations adds ``rotation_month`` per month from when it
happened; requests cost per 10,000 by class (symmetric, RSA 2048, other asymmetric, data key pairs), after
``free_requests_per_month`` free requests in each calendar month (taken from the cheapest class first)."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Iterable, Mapping

REQUEST_CLASSES = ("symmetric", "rsa_2048", "asymmetric", "ecc_generate_data_key_pair", "rsa_generate_data_key_pair")
_DATA_KEY_PAIR = frozenset({"GenerateDataKeyPair", "GenerateDataKeyPairWithoutPlaintext"})


@dataclass(frozen=True)
class PriceTable:
    name: str
    currency: str
    key_month: float
    rotation_month: float
    rotations_charged: int
    hours_per_month: float
    free_requests_per_month: int
    per_10000_requests: Mapping[str, float] = field(default_factory=dict)

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> PriceTable:
        """Raises ValueError naming what is wrong."""
        try:
            prices = {name: float(data["per_10000_requests"][name]) for name in REQUEST_CLASSES}
            table = cls(str(data["name"]), str(data["currency"]), float(data["key_month"]),
                        float(data["rotation_month"]), int(data["rotations_charged"]), float(data["hours_per_month"]),
                        int(data["free_requests_per_month"]), prices)
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"the price table lacks or mistypes {exc}; it needs name, currency, key_month, "
                             f"rotation_month, rotations_charged, hours_per_month, free_requests_per_month and "
                             f"per_10000_requests for {', '.join(REQUEST_CLASSES)}") from None
        if min(table.key_month, table.rotation_month, table.rotations_charged, table.free_requests_per_month,
               *prices.values()) < 0 or table.hours_per_month <= 0:
            raise ValueError("the price table's prices and counts must be 0 or more, hours_per_month above 0")
        return table


@dataclass(frozen=True)
class KeyLife:
    """One key within the span asked about: the hours it was charged, and when its rotations happened."""

    key_arn: str
    charged_hours: float
    rotation_hours: tuple[float, ...] = ()  # per charged rotation: hours from it to the end of the span


def request_class(event_name: str, key_spec: str | None, parameters: Mapping[str, Any] | None) -> str:
    if event_name in _DATA_KEY_PAIR:
        pair = str((parameters or {}).get("keyPairSpec", ""))
        if pair.startswith("RSA"):
            return "rsa_generate_data_key_pair"
        if pair.startswith("ECC"):
            return "ecc_generate_data_key_pair"
    if key_spec is None or key_spec == "SYMMETRIC_DEFAULT" or key_spec.startswith("HMAC"):
        return "symmetric"
    return "rsa_2048" if key_spec == "RSA_2048" else "asymmetric"


def estimate(table: PriceTable, keys: Iterable[KeyLife], requests: Mapping[tuple[str, str], int]) -> dict[str, Any]:
    """``requests``: (calendar month "YYYY-MM", request class) -> calls. Lines and a total."""
    keys = list(keys)
    key_months = sum(k.charged_hours for k in keys) / table.hours_per_month
    rotation_months = sum(h for k in keys for h in k.rotation_hours) / table.hours_per_month
    by_class: Counter[str] = Counter()
    free_used = 0
    for month in sorted({m for m, _ in requests}):
        allowance = table.free_requests_per_month
        for name in sorted(REQUEST_CLASSES, key=lambda c: table.per_10000_requests[c]):
            calls = requests.get((month, name), 0)
            free = min(calls, allowance)
            allowance -= free
            free_used += free
            by_class[name] += calls - free
    lines = [
        {"Item": "key storage (key-months)", "Quantity": round(key_months, 6), "UnitPrice": table.key_month,
         "Cost": round(key_months * table.key_month, 4)},
        {"Item": "rotated material (months)", "Quantity": round(rotation_months, 6),
         "UnitPrice": table.rotation_month, "Cost": round(rotation_months * table.rotation_month, 4)},
    ]
    total_requests = sum(requests.values())
    lines.append({"Item": "free-tier requests", "Quantity": free_used, "UnitPrice": 0.0, "Cost": 0.0})
    for name in REQUEST_CLASSES:
        if by_class[name]:
            price = table.per_10000_requests[name]
            lines.append({"Item": f"{name} requests (per 10,000)", "Quantity": by_class[name], "UnitPrice": price,
                          "Cost": round(by_class[name] / 10000 * price, 4)})
    return {"PriceTable": table.name, "Currency": table.currency, "Keys": len(keys), "Requests": total_requests,
            "Lines": lines, "Total": round(sum(line["Cost"] for line in lines), 4)}


def key_life(key_arn: str, events: Iterable[tuple[str, datetime]], start: datetime, end: datetime,
             rotations_charged: int) -> KeyLife:
    """From a key's (event type, time) in order: the hours in [start, end] it was charged, and its charged
    rotations' hours to ``end``."""
    created = scheduled = None
    gone = None  # when a deletion that went through was scheduled: charging stopped then
    rotations: list[datetime] = []
    for event_type, at in events:
        if event_type == "Created":
            created = at
        elif event_type == "DeletionScheduled":
            scheduled = at
        elif event_type == "DeletionCanceled":
            scheduled = None  # charged as though it was never scheduled
        elif event_type == "Deleted":
            gone = scheduled or at
        elif event_type == "MaterialRotated" and len(rotations) < rotations_charged:
            rotations.append(at)
    if created is None:
        return KeyLife(key_arn, 0.0)
    stop = min(end, gone or end)
    if scheduled is not None and gone is None:
        stop = min(stop, scheduled)  # pending deletion now: not charged while it waits

    def hours(since: datetime) -> float:
        return max(0.0, (stop - max(since, start)).total_seconds() / 3600)

    return KeyLife(key_arn, hours(created), tuple(hours(r) for r in rotations))
