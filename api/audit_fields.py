"""requestParameters / responseElements for audit records, as CloudTrail writes them: lowerCamel member
names, and never a blob (plaintext, ciphertext, data keys, signatures, MACs, import material) or a
member the model marks sensitive. Encryption context is kept, as CloudTrail keeps it."""
from __future__ import annotations

from datetime import datetime
from typing import Any

from api.wire_model import WireModel
from application.audit.records import iso


def _camel(name: str) -> str:
    return name[:1].lower() + name[1:]


# Grant tokens are bearer credentials for a grant; CloudTrail records the grant id, never a token.
_TOKENS = frozenset({"GrantTokenType", "GrantTokenList"})


def _secret(shape: Any) -> bool:
    return shape.type_name == "blob" or shape.name in _TOKENS or bool(
        shape.serialization.get("sensitive") or getattr(shape, "metadata", {}).get("sensitive"))


# What a shape shows, worked out once per shape (the model's shapes live as long as the process): None for a
# secret shape; for a structure, its members that are not secret, each with its recorded (lowerCamel) name.
_SHOWN: dict[Any, Any] = {}
_SCALAR = ()


def _shown(shape: Any) -> Any:
    try:
        return _SHOWN[shape]
    except KeyError:
        pass
    if _secret(shape):
        shown = None
    elif shape.type_name == "structure":
        shown = tuple((name, _camel(name), member) for name, member in shape.members.items() if not _secret(member))
    else:
        shown = _SCALAR
    if len(_SHOWN) >= 4096:  # each WireModel has its own shapes: a process that makes many stays bounded
        _SHOWN.clear()
    _SHOWN[shape] = shown
    return shown


def _view(value: Any, shape: Any) -> Any:
    shown = _shown(shape)
    if value is None or shown is None:
        return None
    if shown:  # a structure
        out = {}
        for name, camel, member in shown:
            if name in value:
                item = _view(value[name], member)
                if item is not None:
                    out[camel] = item
        return out
    if shape.type_name == "structure":  # one with no member to show
        return {}
    if shape.type_name == "list":
        return [_view(v, shape.member) for v in value]
    if isinstance(value, datetime):
        return iso(value)
    return value


def audit_view(wire: WireModel, operation: str, way: str, data: dict[str, Any] | None) -> dict[str, Any] | None:
    shape = wire.operation_shape(operation, way)
    if shape is None or not data:
        return None
    return _view(data, shape) or None
