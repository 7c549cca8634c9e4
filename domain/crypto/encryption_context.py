"""Canonical encryption context: the exact bytes bound as AAD.

Pairs are sorted by the UTF-8 bytes of their key, and every key and value is length-prefixed, so
``{"ab": "c"}`` and ``{"a": "bc"}`` can never produce the same bytes (separator-free concatenation,
as some emulators do, lets them collide). An absent context and ``{}`` are the same, as in AWS.
"""
from __future__ import annotations

import struct
from typing import Mapping

from domain.errors import ValidationError, shown

MAX_CONTEXT_BYTES = 8192
_NO_PAIRS = struct.pack(">I", 0)  # an absent or empty context: what the loop below makes of no pairs


def canonical_encryption_context(context: Mapping[str, str] | None) -> bytes:
    if not context:
        return _NO_PAIRS
    # The keys of a mapping are distinct, so sorting the pairs sorts them by key.
    items = sorted((k.encode("utf-8"), v.encode("utf-8")) for k, v in context.items())
    if sum(len(k) + len(v) for k, v in items) > MAX_CONTEXT_BYTES:
        raise ValidationError(
            f"Encryption context is too large: its keys and values may total at most {MAX_CONTEXT_BYTES} bytes."
        )
    out = [struct.pack(">I", len(items))]
    for key, value in items:
        out.append(struct.pack(">I", len(key)) + key + struct.pack(">I", len(value)) + value)
    return b"".join(out)


def validate_encryption_context(context: Mapping[str, str] | None) -> None:
    for key, value in (context or {}).items():
        if not key:
            raise ValidationError("Encryption context keys must not be empty.")
        if not isinstance(value, str):
            raise ValidationError(f"Encryption context value for '{shown(key)}' must be a string.")
    canonical_encryption_context(context)
