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


def _view(value: Any, shape: Any) -> Any:
    if value is None or _secret(shape):
        return None
    if shape.type_name == "structure":
        out = {}
        for name, member in shape.members.items():
            if name in value:
                shown = _view(value[name], member)
                if shown is not None:
                    out[_camel(name)] = shown
        return out
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
