"""The committer's two JSON spellings of a record, made by orjson where that is provably byte for byte what the
standard library makes (decision 254): the canonical JSON its leaf hashes (domain/audit/chain.py ``canonical``)
and the transcoder's JSON it is stored as (application/audit/rows.py).

Why: the committer shares the GIL with the event loop, and the standard library's C encoder spends 16-18 us on
each spelling of a 1.4 KB record, against 1-3 us for orjson.

When they agree: for a value made only of dicts with ``str`` keys, lists, and ``str``, ``int``, ``bool`` and None
(exact types, no subclasses), orjson's output is the standard library's with the same separators, no ASCII
escaping, and sorted keys where asked (code point order, which is also UTF-8 byte order). orjson refuses what
the standard library would spell or refuse otherwise in such a value: an integer beyond 64 bits, a lone
surrogate. Floats are left to the standard library (their spelling differs, and NaN would become null where
canonical refuses it), and so is every other type (orjson spells datetimes, UUIDs and dataclasses; canonical
refuses them). tests/unit/test_record_json.py holds both to the standard library on generated values.
"""
from __future__ import annotations

import json
from typing import Any, Sequence

import orjson

from domain.audit.chain import canonical

_dumps, _SORT_KEYS, _EncodeError = orjson.dumps, orjson.OPT_SORT_KEYS, orjson.JSONEncodeError
_dict, _list, _str, _int, _bool, _none = dict, list, str, int, bool, type(None)
# The transcoder's settings (eventsourcing.persistence.JSONTranscoder): the spelling the library would store.
_STORED = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, check_circular=False).encode


def plain(value: Any) -> bool:
    """Whether ``value`` holds only dicts with str keys, lists, str, int, bool and None, of exactly those types."""
    kind = type(value)
    if kind is _dict:
        for key, item in value.items():
            if type(key) is not _str:
                return False
            kind = type(item)
            if kind is _dict or kind is _list:
                if not plain(item):
                    return False
            elif kind is not _str and kind is not _int and kind is not _bool and kind is not _none:
                return False
        return True
    if kind is _list:
        return all(plain(item) for item in value)
    return kind is _str or kind is _int or kind is _bool or kind is _none


def plain_records(records: Sequence[dict[str, Any]]) -> list[bool]:
    """``plain`` of each record, said once for both spellings: a plain record stays plain once sealed (an int seq
    and str leaf and chain added)."""
    return [_plain(record) for record in records]


def _plain(record: Any) -> bool:
    try:
        return plain(record)
    except RecursionError:  # nested too deep, or a cycle: the standard library says which
        return False


def canonical_json(record: dict[str, Any], known_plain: bool | None = None) -> bytes:
    """``canonical(record)``: the same bytes, or the same exception. ``known_plain``: what ``plain`` said of it."""
    if _plain(record) if known_plain is None else known_plain:
        try:
            return _dumps(record, option=_SORT_KEYS)
        except _EncodeError:  # an integer beyond 64 bits, a lone surrogate: the standard library decides
            pass
    return canonical(record)


def stored_json(record: dict[str, Any], known_plain: bool | None = None) -> bytes:
    """The transcoder's JSON of ``record`` as UTF-8: the same bytes, or the same exception."""
    if _plain(record) if known_plain is None else known_plain:
        try:
            return _dumps(record)
        except _EncodeError:
            pass
    return _STORED(record).encode("utf-8")
