"""Every audit record is bounded, whatever the request held: the one place with the numbers.

Free text a caller can lengthen (userAgent, the eventName of an unknown target, errorMessage, and every string
in requestParameters, responseElements and additionalEventData: a Description, a Policy, tag values, alias
names, encryption context keys and values) is cut to a cap and marked: the value ends in ``TRUNCATED_MARK``
and ``additionalEventData.truncatedFields`` names it (CloudTrail likewise marks a field it cut). If the record
could still be larger than its bound, it is measured as stored (canonical JSON) and cut harder; last,
requestParameters and responseElements keep only their short scalars and say ``"omitted": true``.

The trail bounds every record at its entry (application/audit/trail.py) before it is sealed, so what is stored
is what is hashed. Cost on the common path: a walk over the record's free parts and no serialization; the
record is measured only when its characters could, escaped the costliest way, exceed the bound.
"""
from __future__ import annotations

from typing import Any

from domain.audit.chain import canonical

MAX_RECORD_BYTES = 16384  # any record, as stored (canonical JSON, UTF-8)
MAX_UNAUTHENTICATED_RECORD_BYTES = 4096  # a record of a caller that was not identified
FIELD_CHARS = 1024  # a free-text value anywhere in the record
TRUNCATED_MARK = "…[truncated]"
LISTED_TRUNCATIONS = 16  # truncatedFields names at most this many; truncatedFieldCount counts them all
_HARDER = (256, 64)  # caps tried, in turn, on a record still over its bound
# Top-level free text, with a cap of its own where the field never needs FIELD_CHARS.
EVENT_NAME_CHARS, SOURCE_CHARS, REGION_CHARS = 128, 256, 64
_TOP_TEXT = (("userAgent", FIELD_CHARS), ("errorMessage", FIELD_CHARS), ("eventName", EVENT_NAME_CHARS),
             ("sourceIPAddress", SOURCE_CHARS), ("awsRegion", REGION_CHARS))
_NESTED = ("requestParameters", "responseElements")
_FREE = ("requestParameters", "responseElements", "additionalEventData")
_MARKS = ("truncatedFields", "truncatedFieldCount")  # additionalEventData's own bookkeeping, never cut
_WORST_BYTES_PER_CHAR = 6  # canonical JSON keeps non-ASCII as UTF-8 (at most 4 bytes) but escapes control characters
# The fields not walked (eventTime, eventVersion, eventSource, ids, flags, recipientAccountId), the top-level
# names and JSON's punctuation: ASCII the service writes, a byte a character. A resource adds its ARN and framing.
# userIdentity is made by the service from IAM names (ARN paths to 512 characters, names to 64, ASCII), or for a
# caller not identified, from the access key id it claimed (at most 128 characters); it is capped like the rest
# but counted as its most.
_FIXED_BYTES = 640
_RESOURCE_BYTES = 200
_IDENTITY_BYTES, _UNIDENTIFIED_BYTES = 3072, 256
_PATH_CHARS = 48  # a path in truncatedFields: the caller names map keys, so they are cut too


class _Over(Exception):
    """A value longer than the cap: the record needs the walk that cuts."""


def _measure(value: Any, cap: int) -> int:
    """The characters ``value`` holds (a number counts 8); raises _Over at the first string over ``cap``.
    String members are measured in place rather than by a call each: most of a record's values are strings."""
    kind = type(value)
    if kind is str:
        if len(value) > cap:
            raise _Over
        return len(value) + 3
    if kind is dict:
        total = 0
        for key, item in value.items():
            if len(key) > cap:
                raise _Over
            if type(item) is str:
                if len(item) > cap:
                    raise _Over
                total += len(key) + len(item) + 7
            else:
                total += len(key) + 4 + _measure(item, cap)
        return total
    if kind is list:
        return sum(_measure(item, cap) for item in value) + len(value)
    return 8


def _quick(record: dict[str, Any]) -> int | None:
    """The free characters of a record none of whose fields is over its cap (the common case, measured without
    building anything, and unrolled: it runs for every call); None when some field needs cutting."""
    get = record.get
    agent, name, message, source, region = (get("userAgent") or "", get("eventName") or "", get("errorMessage") or "",
                                            get("sourceIPAddress") or "", get("awsRegion") or "")
    try:
        if (len(agent) > FIELD_CHARS or len(message) > FIELD_CHARS or len(name) > EVENT_NAME_CHARS
                or len(source) > SOURCE_CHARS or len(region) > REGION_CHARS):
            return None
        chars = len(agent) + len(name) + len(message) + len(source) + len(region)
    except TypeError:  # a field that is not text: the full walk decides
        return None
    parameters, response, extra = record.get("requestParameters"), record.get("responseElements"), \
        record.get("additionalEventData")
    try:
        if parameters.__class__ is dict:  # a top-level dict of short strings, mostly: measured here
            for key, item in parameters.items():
                if item.__class__ is str:
                    if len(item) > FIELD_CHARS:
                        return None
                    chars += len(key) + len(item) + 7
                else:
                    chars += len(key) + 4 + _measure(item, FIELD_CHARS)
        elif parameters:
            chars += _measure(parameters, FIELD_CHARS)
        if response:
            chars += _measure(response, FIELD_CHARS)
        if extra:
            chars += _measure(extra, FIELD_CHARS)
    except _Over:
        return None
    return chars


def _cut(text: str, cap: int) -> str:
    return text[:cap] + TRUNCATED_MARK


def _bounded(value: Any, cap: int, path: str, truncated: list[str], size: list[int]) -> Any:
    """``value`` with every string (and map key) over ``cap`` characters cut; adds the characters it keeps
    to ``size[0]`` and the paths it cut to ``truncated``. Returns the same object when nothing was cut."""
    kind = type(value)
    if kind is str:
        if len(value) > cap:
            truncated.append(path[:_PATH_CHARS])
            value = _cut(value, cap)
        size[0] += len(value) + 3
        return value
    if kind is dict:
        changed: dict[Any, tuple[Any, Any]] | None = None
        for key, item in value.items():
            new_key = key
            if type(key) is str and len(key) > cap:
                truncated.append(f"{path}.{key}"[:_PATH_CHARS])
                new_key = _cut(key, cap)
                while new_key in value or (changed is not None and any(new_key == k for k, _ in changed.values())):
                    new_key += "~"  # two keys cut to the same prefix stay two entries
            size[0] += len(new_key) + 4
            new_item = _bounded(item, cap, f"{path}.{key}" if len(path) < _PATH_CHARS else path, truncated, size)
            if new_key is not key or new_item is not item:
                changed = changed if changed is not None else {}
                changed[key] = (new_key, new_item)
        if changed is None:
            return value
        return dict(changed.get(k, (k, v)) for k, v in value.items())
    if kind is list:
        out = None
        for i, item in enumerate(value):
            new_item = _bounded(item, cap, f"{path}[{i}]" if len(path) < _PATH_CHARS else path, truncated, size)
            if new_item is not item:
                out = out if out is not None else list(value)
                out[i] = new_item
            size[0] += 1
        return value if out is None else out
    size[0] += 8  # a number, a boolean or null
    return value


def _capped(value: Any, cap: int, path: str, truncated: list[str], size: list[int]) -> Any:
    try:  # the common case: nothing to cut, and measuring is cheaper than the walk that cuts
        size[0] += _measure(value, cap)
        return value
    except _Over:
        return _bounded(value, cap, path, truncated, size)


def _cap_fields(record: dict[str, Any], cap: int, truncated: list[str], identity: bool = False) -> int:
    """Caps every free-text field of ``record`` in place (userIdentity too if ``identity``); returns how many
    bytes the record can take at most."""
    size = [0]
    for name, own_cap in _TOP_TEXT:
        value = record.get(name)
        if type(value) is str:
            limit = min(cap, own_cap)
            if len(value) > limit:
                truncated.append(name)
                value = record[name] = _cut(value, limit)
            size[0] += len(value)
    for name in _NESTED:
        value = record.get(name)
        if value:
            bounded = _capped(value, cap, name, truncated, size)
            if bounded is not value:
                record[name] = bounded
    extra = record.get("additionalEventData")
    if extra:
        if type(extra) is dict:
            free = {k: v for k, v in extra.items() if k not in _MARKS}
            bounded = _capped(free, cap, "additionalEventData", truncated, size)
            if bounded is not free:
                record["additionalEventData"] = {**bounded, **{k: extra[k] for k in _MARKS if k in extra}}
            size[0] += 40 * LISTED_TRUNCATIONS if "truncatedFields" in extra else 0
        else:
            record["additionalEventData"] = _capped(extra, cap, "additionalEventData", truncated, size)
    if identity and record.get("userIdentity"):
        record["userIdentity"] = _bounded(record["userIdentity"], cap, "userIdentity", truncated, [0])
    return (_FIXED_BYTES + _RESOURCE_BYTES * len(record.get("resources") or ())
            + _WORST_BYTES_PER_CHAR * size[0])


def _mark(record: dict[str, Any], truncated: list[str]) -> None:
    extra = dict(record.get("additionalEventData") or {})
    listed = list(dict.fromkeys(extra.get("truncatedFields", []) + truncated))
    extra["truncatedFields"] = listed[:LISTED_TRUNCATIONS]
    extra["truncatedFieldCount"] = max(len(listed), extra.get("truncatedFieldCount", 0))
    record["additionalEventData"] = extra


def _omit(value: Any) -> Any:
    if type(value) is not dict:
        return {"omitted": True}
    kept = {k: v for k, v in value.items() if type(v) in (int, float, bool) or (type(v) is str and len(v) <= 128)}
    kept["omitted"] = True
    return kept


def record_limit(record: dict[str, Any]) -> int:
    identity = record.get("userIdentity")
    identified = type(identity) is dict and ("accountId" in identity or "invokedBy" in identity
                                             or identity.get("type") == "Operator")
    return MAX_RECORD_BYTES if identified else MAX_UNAUTHENTICATED_RECORD_BYTES


def bound_record(record: dict[str, Any]) -> dict[str, Any]:
    """``record`` (changed in place, and returned) within its bound: MAX_RECORD_BYTES, or
    MAX_UNAUTHENTICATED_RECORD_BYTES for a caller that was not identified."""
    limit = record_limit(record)
    identity_bytes = _IDENTITY_BYTES if limit == MAX_RECORD_BYTES else _UNIDENTIFIED_BYTES
    chars = _quick(record)
    if chars is not None and (_FIXED_BYTES + identity_bytes + _RESOURCE_BYTES * len(record.get("resources") or ())
                              + _WORST_BYTES_PER_CHAR * chars) <= limit:
        return record  # nothing to cut, and it cannot be over its bound: the common case
    truncated: list[str] = []
    most = _cap_fields(record, FIELD_CHARS, truncated) + identity_bytes
    if truncated:
        _mark(record, truncated)
        most += 40 * LISTED_TRUNCATIONS
    if most <= limit:
        return record
    size = len(canonical(record))
    for cap in _HARDER:
        if size <= limit:
            return record
        truncated = []
        _cap_fields(record, cap, truncated, identity=True)
        if truncated:
            _mark(record, truncated)
        size = len(canonical(record))
    if size > limit:
        for name in ("requestParameters", "responseElements"):
            if record.get(name):
                record[name] = _omit(record[name])
        extra = record.get("additionalEventData")
        if type(extra) is dict:  # the summary's sources and the like go before the record's own fields
            record["additionalEventData"] = {k: extra[k] for k in _MARKS if k in extra} or None
        size = len(canonical(record))
    if size > limit:  # only the top-level text is left to cut: at most a few hundred characters of it
        for name, _ in _TOP_TEXT:
            if type(record.get(name)) is str and len(record[name]) > 32:
                record[name] = _cut(record[name], 32)
    return record
