"""An answer's JSON, spelled exactly as ``json.dumps`` spells it (decision 49), from what the wire model's
serializers make (api/wire_model.py): a blob's base64 is put in as is rather than scanned for escapes it cannot
hold, and a structure's usual members are written in place with each member name spelled once."""
from __future__ import annotations

import json
from json.encoder import encode_basestring_ascii as _json_string  # json.dumps's spelling of a str
from typing import Any


class Base64(bytes):
    """A serialized blob: its base64 text as ASCII bytes, which need no JSON escaping."""


_MEMBER_NAMES: dict[str, bytes] = {}  # a member's name as json.dumps spells it, with the ": " after it


def _member_name(name: Any) -> bytes:
    spelled = _MEMBER_NAMES.get(name) if type(name) is str else None
    if spelled is None:
        spelled = (_json_string(name) if type(name) is str else json.dumps(name)).encode("ascii") + b": "
        if type(name) is str and len(_MEMBER_NAMES) < 4096:  # the model's names; a map's keys are callers' and many
            _MEMBER_NAMES[name] = spelled
    return spelled


def emit(value: Any, out: list[bytes]) -> None:
    kind = type(value)
    if kind is Base64:
        out += (b'"', value, b'"')
    elif kind is dict:
        separator = b"{"
        for name, member in value.items():
            out += (separator, _member_name(name))
            separator = b", "
            member_kind = type(member)  # the usual members written here, not by a call each
            if member_kind is Base64:
                out += (b'"', member, b'"')
            elif member_kind is str:
                out.append(_json_string(member).encode("ascii"))
            else:
                emit(member, out)
        out.append(b"}" if separator == b", " else b"{}")
    elif kind is list:
        out.append(b"[")
        for i, member in enumerate(value):
            if i:
                out.append(b", ")
            emit(member, out)
        out.append(b"]")
    elif kind is str:  # what json.dumps does with a str, without its two Python calls
        out.append(_json_string(value).encode("ascii"))
    else:  # number, bool, None: json's own spelling
        out.append(json.dumps(value).encode("ascii"))
