"""Opaque Marker/NextMarker tokens for the List* operations."""
from __future__ import annotations

import base64
from typing import Any, Callable, Sequence, TypeVar

from domain.errors import InvalidMarkerError

T = TypeVar("T")
DEFAULT_LIMIT = 100


def decode_marker(marker: str | None) -> str | None:
    if marker is None:
        return None
    try:
        value = base64.urlsafe_b64decode(marker.encode("ascii") + b"==").decode("utf-8")
    except (ValueError, UnicodeError):
        raise InvalidMarkerError("The Marker is not valid: pass the NextMarker of a previous response unchanged.") from None
    if not value.startswith("m1:"):
        raise InvalidMarkerError("The Marker is not valid: pass the NextMarker of a previous response unchanged.")
    return value[3:]


def page(fetch: Callable[[int, str | None], Sequence[T]], limit: int | None, marker: str | None,
         sort_key: Callable[[T], str], render: Callable[[T], Any], member: str) -> dict[str, Any]:
    """Fetches limit+1 items after the marker, to know whether the listing is truncated."""
    limit = limit or DEFAULT_LIMIT
    items = list(fetch(limit + 1, decode_marker(marker)))
    truncated = len(items) > limit
    items = items[:limit]
    out: dict[str, Any] = {member: [render(i) for i in items], "Truncated": truncated}
    if truncated:
        token = base64.urlsafe_b64encode(("m1:" + sort_key(items[-1])).encode("utf-8")).decode("ascii").rstrip("=")
        out["NextMarker"] = token
    return out
