"""`api/audit_fields.py: audit_view`, what requestParameters and responseElements show, for every operation of the
model both ways, each with every member filled: lowerCamel names; never a blob, a member the model marks sensitive,
or a grant token; timestamps as CloudTrail spells them. The expectation is written out from the shapes here, as the
rule reads, and compared with what the service records (its view is worked out once per shape)."""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import pytest

from api.audit_fields import audit_view
from api.wire_model import WireModel
from application.audit.records import iso

WIRE = WireModel()
AT = datetime(2026, 12, 7, 12, 30, 5, tzinfo=timezone.utc)


def filled(shape: Any, depth: int = 0) -> Any:
    kind = shape.type_name
    if kind == "structure":
        return {name: filled(member, depth + 1) for name, member in shape.members.items()} if depth < 6 else {}
    if kind == "list":
        return [filled(shape.member, depth + 1), filled(shape.member, depth + 1)]
    if kind == "map":
        return {"context-key": filled(shape.value, depth + 1)}
    return {"blob": b"\x00secret", "timestamp": AT, "integer": 7, "long": 7, "boolean": True}.get(kind, f"text-{shape.name}")


def hidden(shape: Any) -> bool:
    return (shape.type_name == "blob" or shape.name in ("GrantTokenType", "GrantTokenList")
            or bool(shape.serialization.get("sensitive") or getattr(shape, "metadata", {}).get("sensitive")))


def expected(value: Any, shape: Any) -> Any:
    if hidden(shape):
        return None
    if shape.type_name == "structure":
        return {name[0].lower() + name[1:]: expected(value[name], member) for name, member in shape.members.items()
                if name in value and expected(value[name], member) is not None}
    if shape.type_name == "list":
        return [expected(v, shape.member) for v in value]
    return iso(value) if isinstance(value, datetime) else value


def operations() -> list[tuple[str, str]]:
    return [(name, way) for name in WIRE._model.operation_names for way in ("in", "out")]


@pytest.mark.parametrize(("operation", "way"), operations())
def test_every_operation_records_what_the_rule_shows(operation: str, way: str) -> None:
    shape = WIRE.operation_shape(operation, way)
    if shape is None:
        assert audit_view(WIRE, operation, way, {"Anything": "x"}) is None
        return
    value = filled(shape)
    want = expected(value, shape) or None
    assert audit_view(WIRE, operation, way, value) == want
    assert audit_view(WIRE, operation, way, value) == want  # the second time from what was worked out
    assert "secret" not in repr(audit_view(WIRE, operation, way, value))


def test_absent_and_partial_members() -> None:
    assert audit_view(WIRE, "GenerateDataKey", "in", {}) is None
    assert audit_view(WIRE, "GenerateDataKey", "in", {"KeyId": "k", "GrantTokens": ["t"], "DryRun": None}) == {
        "keyId": "k"}
    assert audit_view(WIRE, "GenerateDataKey", "out", {"Plaintext": b"k", "CiphertextBlob": b"c"}) is None
