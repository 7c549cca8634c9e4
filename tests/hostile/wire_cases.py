"""Requests generated from botocore's KMS model (the one api/wire_model.py loads): for every member of every
operation's input shape, nested ones included, a document that is valid except for that member, which holds
a value of the wrong JSON type."""
from __future__ import annotations

import json
import random
from dataclasses import dataclass
from typing import Any, Iterator

import botocore.session

from tests.hostile.values import wrong_values
from tests.servers import ACCOUNT_ID

ITEM, VALUE = "[]", "{}"  # path steps into a list's item and a map's value
ROOT_ARN = f"arn:aws:iam::{ACCOUNT_ID}:root"
ADMIN_POLICY = json.dumps({"Version": "2012-10-17", "Statement": [
    {"Sid": "Admin", "Effect": "Allow", "Principal": {"AWS": ROOT_ARN}, "Action": "kms:*", "Resource": "*"}]})
# Valid-looking values by member name; anything that names a key names the sacrificial key (see Targets).
_BY_NAME: dict[str, Any] = {
    "AliasName": "alias/hostile-wire", "GrantId": "0" * 64, "GrantToken": "hostile-token",
    "Policy": ADMIN_POLICY, "PolicyName": "default", "GranteePrincipal": ROOT_ARN, "RetiringPrincipal": ROOT_ARN,
    "Principal": ROOT_ARN, "TagKey": "hostile", "TagValue": "value", "Name": "hostile", "Marker": None,
    "CustomKeyStoreId": "cks-1234567890abcdef0", "CustomKeyStoreName": "hostile", "Description": "hostile",
}
_KEY_MEMBERS = {"KeyId", "TargetKeyId", "DestinationKeyId", "SourceKeyId"}
# Enum values that cost the server nothing to act on (no RSA key generation if a request were accepted).
_CHEAP = ("SYMMETRIC_DEFAULT", "ECC_NIST_P256", "ENCRYPT_DECRYPT", "AES_256", "RSAES_OAEP_SHA_256",
          "RSA_AES_KEY_WRAP_SHA_256", "RSA_2048", "ECDSA_SHA_256", "HMAC_SHA_256", "AWS_KMS", "RAW", "DIGEST")


@dataclass(frozen=True)
class MemberCase:
    """One member of one operation, given one wrong value."""
    operation: str
    path: tuple[str, ...]
    type_name: str
    value: Any
    label: str
    required: bool

    def describe(self) -> str:
        return f"{self.operation} {'.'.join(self.path)} ({self.type_name}) = {self.label}"


class WireCatalog:
    """The member cases in a fixed order, and the documents that carry them."""

    def __init__(self, sacrificial_key_id: str) -> None:
        self.model = botocore.session.get_session().get_service_model("kms")  # what api/wire_model.py loads
        self.key_id = sacrificial_key_id
        self.operations = sorted(op for op in self.model.operation_names if self.input_shape(op) is not None)

    def input_shape(self, operation: str) -> Any:
        return self.model.operation_model(operation).input_shape

    def member_paths(self) -> Iterator[tuple[str, tuple[str, ...], Any, bool]]:
        """(operation, path, shape, required) of every member, depth first."""
        for operation in self.operations:
            yield from _walk(operation, self.input_shape(operation), (), frozenset())

    def cases(self) -> list[MemberCase]:
        return [MemberCase(operation, path, shape.type_name, value, label, required)
                for operation, path, shape, required in self.member_paths()
                for value, label in wrong_values(shape.type_name)
                if label != "null" or required]  # null is how an optional member is left out: not wrong

    def base_document(self, operation: str) -> dict[str, Any]:
        return self.valid(self.input_shape(operation), "")

    def document(self, case: MemberCase) -> dict[str, Any]:
        document = self.base_document(case.operation)
        _put(self, self.input_shape(case.operation), document, case.path, case.value)
        return document

    def valid(self, shape: Any, name: str, rng: random.Random | None = None) -> Any:
        """A valid-looking value for a member named ``name`` (required members only, for structures)."""
        kind = shape.type_name
        if kind == "structure":
            return {member: self.valid(shape.members[member], member, rng) for member in shape.required_members}
        if kind == "list":
            return [self.valid(shape.member, name.rstrip("s"), rng)]
        if kind == "map":
            return {"hostile": self.valid(shape.value, name, rng)}
        if kind == "blob":
            return "AQID" if shape.metadata.get("min", 1) <= 3 else "AQID" * (shape.metadata["min"] // 3 + 1)
        if kind in ("integer", "long"):
            return max(shape.metadata.get("min", 1), 1)
        if kind == "boolean":
            return False
        if kind == "timestamp":
            return 1_800_000_000
        if name in _KEY_MEMBERS:
            return self.key_id
        if name in _BY_NAME and _BY_NAME[name] is not None:
            return _BY_NAME[name]
        enum = list(getattr(shape, "enum", None) or [])
        if enum:
            cheap = [value for value in _CHEAP if value in enum]
            return cheap[0] if cheap else enum[0]
        return "a" * max(shape.metadata.get("min", 1), 1)


def _walk(operation: str, shape: Any, path: tuple[str, ...], seen: frozenset) -> Iterator:
    if shape.type_name != "structure" or shape.name in seen:
        return
    required = set(shape.required_members)
    for member, child in shape.members.items():
        here = path + (member,)
        yield operation, here, child, member in required
        inner, step = child, here
        while inner.type_name in ("list", "map"):  # into list items and map values, and what they hold
            inner, step = (inner.member, step + (ITEM,)) if inner.type_name == "list" else (inner.value, step + (VALUE,))
            yield operation, step, inner, True
        yield from _walk(operation, inner, step, seen | {shape.name})


def _put(catalog: WireCatalog, shape: Any, container: Any, path: tuple[str, ...], value: Any) -> None:
    """Sets the member at ``path`` to ``value``, creating valid parents on the way."""
    step, rest = path[0], path[1:]
    if step == ITEM:
        child_shape, key = shape.member, 0
        if not container:
            container.append(None)
    elif step == VALUE:
        child_shape, key = shape.value, "hostile"
    else:
        child_shape, key = shape.members[step], step
    if not rest:
        container[key] = value
        return
    current = container[0] if isinstance(container, list) else container.get(key)
    if current is None:
        kind = child_shape.type_name
        current = [] if kind == "list" else {} if kind == "map" else catalog.valid(child_shape, step)
        container[key] = current
    _put(catalog, child_shape, current, rest, value)
