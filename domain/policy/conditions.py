"""IAM condition operators, evaluated as AWS documents them (IAM User Guide, "Condition operators").

A ``Condition`` is one (operator, key, values) clause; a statement's clauses are AND'd. Within a clause the
policy values are OR'd for positive operators and NOR'd for negated ones (``StringNotEquals``,
``NotIpAddress``, ``ArnNotLike``...). A key missing from the request makes a positive operator false and a
negated operator true (the AWS docs' rule, not "false for all"); ``...IfExists`` makes a missing key true;
``Null`` tests presence. ``ForAllValues:`` is true on a missing or empty key, ``ForAnyValue:`` false, and
that holds even with ``IfExists`` (AWS evaluates ``ForAnyValue:StringEqualsIfExists`` on a missing key as
false). Context key names are case-insensitive; ``normalize_context`` lower-cases them once per request.

Policy variables (``${aws:username}``) are not expanded: a value is compared literally.
"""
from __future__ import annotations

import base64
import binascii
import ipaddress
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import Any, Callable, Iterable, Mapping

from domain.errors import shown
from domain.policy.wildcard import wildcard_match

_MISSING = object()


@dataclass(frozen=True)
class Condition:
    operator: str  # as written in the policy, e.g. "ForAnyValue:StringLikeIfExists"
    key: str
    values: tuple[str, ...]  # JSON numbers and booleans are kept as their policy text ("5", "true")


@dataclass(frozen=True)
class Operator:
    qualifier: str | None  # "ForAllValues" | "ForAnyValue" | None
    base: str  # canonical name without qualifier or IfExists, e.g. "StringLike"
    if_exists: bool


def _text(value: Any) -> str | None:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (str, int, float, Decimal)):
        return str(value)
    return None


def _number(value: Any) -> Decimal | None:
    if isinstance(value, bool):
        return None
    try:
        number = Decimal(str(value).strip())
    except (InvalidOperation, ValueError):
        return None
    return number if number.is_finite() else None


def _date(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, (int, float, Decimal)) and not isinstance(value, bool):
        try:
            moment = datetime.fromtimestamp(float(value), tz=timezone.utc)
        except (OverflowError, OSError, ValueError):
            return None
    elif isinstance(value, str):
        number = _number(value)
        if number is not None:
            return _date(number)
        try:
            moment = datetime.fromisoformat(value.strip())
        except ValueError:
            return None
    else:
        return None
    # Naive datetimes are the service clock's UTC; comparing naive with aware would raise.
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _bool(value: Any) -> str | None:
    text = _text(value)
    return text.lower() if text is not None and text.lower() in ("true", "false") else None


def _network(value: Any) -> Any:
    try:
        return ipaddress.ip_network(str(value).strip(), strict=False)
    except ValueError:
        return None


def _address(value: Any) -> Any:
    try:
        return ipaddress.ip_address(str(value).strip())
    except ValueError:
        return None


def _binary(value: Any) -> bytes | None:
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    try:
        return base64.b64decode(str(value), validate=True)
    except (binascii.Error, ValueError):
        return None


def _arn_match(request: str, pattern: str) -> bool:
    # Each of the six colon-separated ARN parts is matched on its own, so a '*' never spans a ':' boundary
    # before the resource part (which may itself contain colons). A value that is not a six-part ARN (say a
    # bare "*") can only be compared whole.
    pattern_parts, request_parts = pattern.split(":", 5), request.split(":", 5)
    if len(pattern_parts) != 6:
        return wildcard_match(pattern, request)
    return len(request_parts) == 6 and all(map(wildcard_match, pattern_parts, request_parts))


_Compare = Callable[[Any, Any], bool]
_eq: _Compare = lambda r, p: r == p  # noqa: E731
# family -> (policy-value converter, request-value converter); a converter answers None for a bad value.
_FAMILIES: dict[str, tuple[Callable[[Any], Any], Callable[[Any], Any]]] = {
    "String": (_text, _text), "Numeric": (_number, _number), "Date": (_date, _date), "Bool": (_bool, _bool),
    "Binary": (_binary, _binary), "Ip": (_network, _address), "Arn": (_text, _text),
}
# base operator -> (family, comparison(request, policy), negated)
_OPERATORS: dict[str, tuple[str, _Compare, bool]] = {
    "StringEquals": ("String", _eq, False), "StringNotEquals": ("String", _eq, True),
    "StringEqualsIgnoreCase": ("String", lambda r, p: r.casefold() == p.casefold(), False),
    "StringNotEqualsIgnoreCase": ("String", lambda r, p: r.casefold() == p.casefold(), True),
    "StringLike": ("String", lambda r, p: wildcard_match(p, r), False),
    "StringNotLike": ("String", lambda r, p: wildcard_match(p, r), True),
    "Bool": ("Bool", _eq, False), "BinaryEquals": ("Binary", _eq, False),
    "IpAddress": ("Ip", lambda r, p: r in p, False), "NotIpAddress": ("Ip", lambda r, p: r in p, True),
    "ArnEquals": ("Arn", _arn_match, False), "ArnLike": ("Arn", _arn_match, False),
    "ArnNotEquals": ("Arn", _arn_match, True), "ArnNotLike": ("Arn", _arn_match, True),
}
_ORDERINGS: dict[str, tuple[_Compare, bool]] = {
    "Equals": (_eq, False), "NotEquals": (_eq, True), "LessThan": (lambda r, p: r < p, False),
    "LessThanEquals": (lambda r, p: r <= p, False), "GreaterThan": (lambda r, p: r > p, False),
    "GreaterThanEquals": (lambda r, p: r >= p, False),
}
for _family in ("Numeric", "Date"):
    for _suffix, (_cmp, _negated) in _ORDERINGS.items():
        _OPERATORS[_family + _suffix] = (_family, _cmp, _negated)
_CANONICAL = {name.lower(): name for name in [*_OPERATORS, "Null"]}
_QUALIFIERS = {"forallvalues": "ForAllValues", "foranyvalue": "ForAnyValue"}


@lru_cache(maxsize=1024)
def parse_operator(name: str) -> Operator | None:
    """The operator a policy names, or None when it is not one IAM defines (names are matched
    case-insensitively)."""
    qualifier, _, base = name.rpartition(":")
    if qualifier and qualifier.lower() not in _QUALIFIERS:
        return None
    lowered = base.lower()
    if_exists = lowered.endswith("ifexists") and lowered != "ifexists"
    canonical = _CANONICAL.get(lowered[: -len("ifexists")] if if_exists else lowered)
    if canonical is None or (canonical == "Null" and if_exists):  # AWS: IfExists applies to all but Null
        return None
    return Operator(_QUALIFIERS.get(qualifier.lower()) if qualifier else None, canonical, if_exists)


def condition_value_error(operator: str, value: str) -> str | None:
    """Why a policy value cannot be used with this operator (None when it can). Checked when a policy is
    stored, so evaluation never meets a value it cannot read."""
    parsed = parse_operator(operator)
    if parsed is None:
        return f"unknown condition operator '{shown(operator)}'"
    if parsed.base == "Null":
        return None if value.lower() in ("true", "false") else f"Null takes 'true' or 'false', not '{shown(value)}'"
    family = _OPERATORS[parsed.base][0]
    if _FAMILIES[family][0](value) is None:
        return f"'{shown(value)}' is not a valid {family.lower()} value for {parsed.base}"
    return None


def normalize_context(keys: Mapping[str, Any]) -> dict[str, Any]:
    return {key.lower(): value for key, value in keys.items()}


def _as_list(raw: Any) -> list[Any]:
    if raw is _MISSING or raw is None:
        return []
    if isinstance(raw, (list, tuple, set, frozenset)):
        return list(raw)
    return [raw]


def clause_holds(condition: Condition, context: Mapping[str, Any], unknown: bool) -> bool:
    operator = parse_operator(condition.operator)
    if operator is None:
        return unknown
    request = _as_list(context.get(condition.key.lower(), _MISSING))
    if operator.base == "Null":
        return any((value.lower() == "true") == (not request) for value in condition.values)
    family, compare, negated = _OPERATORS[operator.base]
    to_policy, to_request = _FAMILIES[family]
    policy = [converted for converted in map(to_policy, condition.values) if converted is not None]

    def positive(value: Any) -> bool:
        converted = to_request(value)
        if converted is None:
            return False
        try:
            return any(compare(converted, wanted) for wanted in policy)
        except TypeError:  # e.g. an IPv6 address against an IPv4 network answers False, never raises
            return False

    if operator.qualifier == "ForAllValues":
        return all(positive(value) != negated for value in request)
    if operator.qualifier == "ForAnyValue":
        return any(positive(value) != negated for value in request)
    if not request:
        return operator.if_exists or negated
    return any(positive(value) for value in request) != negated


def conditions_hold(conditions: Iterable[Condition], context: Mapping[str, Any], *, unknown: bool) -> bool:
    """All clauses hold. ``unknown`` is what a clause with an operator IAM does not define counts as:
    callers pass False for Allow statements and True for Deny statements, so an operator we cannot read
    never grants access and never silently switches a deny off (fail closed both ways)."""
    return all(clause_holds(condition, context, unknown) for condition in conditions)
