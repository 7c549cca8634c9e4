"""The largest valid request body of each KMS operation, derived from botocore's model.

A member's largest JSON spelling, at its maximum in the model and with every character escaped the costliest
way JSON allows:
* a string of at most n UTF-16 units: ``"`` + 6n + ``"`` (each unit as ``\\uXXXX``; a character outside the
  BMP is a surrogate pair, two units, ``\\uXXXX\\uXXXX``); an enum, its longest value so spelled;
* a blob of at most n bytes: its base64, 4·⌈n/3⌉ characters, counted twice over (``\\/`` is how some JSON
  encoders, PHP's for one, write every "/");
* an integer, its longest decimal (11 characters for a Java int, 20 for a long); a boolean 5; a timestamp 32;
* a structure, every member at once, each with its name (escaped too), ``": "`` and ``", "`` (botocore's separators);
* a list, its maximum count of elements; where the model has none: Tags and TagKeys 50 (the tags a key can
  have, domain/keys/tags.py) and a list of enum values one of each value;
* a map: an EncryptionContext's keys and values total at most 8192 UTF-8 bytes (domain/crypto/encryption_
  context.py; AWS documents no limit), a grant constraint's at most 8 pairs and 384 characters
  (domain/keys/grants.py, after AWS's "Using grant constraints"), worst spelled.
Plus ``SLACK_BYTES`` for members a newer model has and ours lacks (they are ignored, as AWS ignores them).
Whitespace between tokens needs no allowance of its own: a pretty-printed request spends on indentation far
less than the six bytes per character the escaping bound allows for text it writes plainly.

``python -m api.body_limits`` prints the table docs/settings.md quotes.
"""
from __future__ import annotations

import math
from typing import Any

from domain.crypto.encryption_context import MAX_CONTEXT_BYTES
from domain.keys.grants import MAX_CONSTRAINT_CHARS, MAX_CONSTRAINT_PAIRS
from domain.keys.tags import MAX_TAGS_PER_KEY

SLACK_BYTES = 4096
ESCAPED_UNIT = 6  # \uXXXX: the longest JSON spelling of one UTF-16 unit (and of one ASCII character)
_NUMBER_DIGITS = {"integer": 11, "long": 20}
_UNBOUNDED_LISTS = {"TagList": MAX_TAGS_PER_KEY, "TagKeyList": MAX_TAGS_PER_KEY}
_CONSTRAINT_MEMBERS = ("GrantConstraints", "EncryptionContextEquals"), ("GrantConstraints", "EncryptionContextSubset")


def _string(units: int) -> int:
    return 2 + ESCAPED_UNIT * units


def _map_of_pairs(total_units: int, max_pairs: int) -> int:
    """Pairs whose keys and values total ``total_units``; keys are never empty. Each pair costs
    ``"k": "v", `` (eight bytes) plus its escaped text, so the worst case is as many pairs as allowed, each
    as short as allowed, with the units left over in one of them."""
    pairs = min(max_pairs, total_units)
    return 2 + pairs * 8 + ESCAPED_UNIT * total_units


def _encryption_context() -> int:
    # UTF-8 bytes, not units: an ASCII character is one byte and escapes to six, the worst ratio.
    return _map_of_pairs(MAX_CONTEXT_BYTES, MAX_CONTEXT_BYTES)


def _grant_constraint() -> int:
    # 384 characters; one outside the BMP is one character to the domain but two units to JSON.
    return _map_of_pairs(2 * MAX_CONSTRAINT_CHARS, MAX_CONSTRAINT_PAIRS)


def largest_json(shape: Any, parent: str | None = None, member: str | None = None) -> int:
    """The longest JSON a valid value of ``shape`` can be written as (see the module docstring)."""
    t, meta = shape.type_name, shape.metadata
    if t == "structure":
        return 2 + sum(_string(len(name)) + 4 + largest_json(child, shape.name, name)
                       for name, child in shape.members.items())
    if t == "list":
        count = meta.get("max")
        if count is None:
            enum = getattr(shape.member, "enum", None)
            count = len(enum) if enum else _UNBOUNDED_LISTS.get(shape.name)
        if count is None:
            raise ValueError(f"list {shape.name} has no maximum length: give it a documented bound")
        return 2 + count * (largest_json(shape.member) + 2)
    if t == "map":
        if (parent, member) in _CONSTRAINT_MEMBERS:
            return _grant_constraint()
        if shape.name == "EncryptionContextType":
            return _encryption_context()
        raise ValueError(f"map {shape.name} has no documented bound")
    if t == "string":
        enum = getattr(shape, "enum", None)
        if enum:
            return _string(max(len(value) for value in enum))
        if meta.get("max") is None:
            raise ValueError(f"string {shape.name} has no maximum length: give it a documented bound")
        return _string(meta["max"])
    if t == "blob":
        return 2 + 2 * 4 * math.ceil(meta["max"] / 3)
    if t in _NUMBER_DIGITS:
        return _NUMBER_DIGITS[t]
    if t == "boolean":
        return 5
    if t == "timestamp":
        return 32
    raise ValueError(f"shape type {t} ({shape.name}) is not in the KMS model")


def derived_body_limits(service_model: Any) -> dict[str, int]:
    """Every operation of the model: the largest valid body, plus SLACK_BYTES."""
    out = {}
    for name in service_model.operation_names:
        shape = service_model.operation_model(name).input_shape
        out[name] = (largest_json(shape) if shape is not None else 2) + SLACK_BYTES
    return out


def main() -> None:
    import botocore.session

    limits = derived_body_limits(botocore.session.get_session().get_service_model("kms"))
    width = max(map(len, limits))
    for name, limit in sorted(limits.items(), key=lambda item: (-item[1], item[0])):
        print(f"{name:<{width}}  {limit:>9,}")
    print(f"{'(largest: the default KEYLEDGER_MAX_BODY_BYTES)':<{width}}  {max(limits.values()):>9,}")


if __name__ == "__main__":
    main()
