"""Resource tag rules as AWS KMS applies them."""
from __future__ import annotations

from typing import Iterable, Mapping

from domain.errors import LimitExceededError, TagError, shown

MAX_TAGS_PER_KEY = 50


def validate_tag_keys(keys: Iterable[str]) -> None:
    for key in keys:
        if key.lower().startswith("aws:"):
            raise TagError(f"Tag key '{shown(key)}' is not allowed: the 'aws:' prefix is reserved for AWS.")


def merged_tags(current: Mapping[str, str], new: Mapping[str, str]) -> dict[str, str]:
    validate_tag_keys(new)
    merged = {**current, **new}
    if len(merged) > MAX_TAGS_PER_KEY:
        raise LimitExceededError(f"A key can have at most {MAX_TAGS_PER_KEY} tags; this request would make {len(merged)}.")
    return merged
