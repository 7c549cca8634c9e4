"""Per-operation body limits (api/body_limits.py): every valid request fits its operation's limit, built here
independently at the model's maxima with the costliest escaping, and random valid requests fit too."""
from __future__ import annotations

import json
import math
import subprocess
import sys
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from api.body_limits import SLACK_BYTES, derived_body_limits, largest_json
from api.limits import RequestLimits
from api.wire_model import WireModel
from domain.crypto.encryption_context import MAX_CONTEXT_BYTES
from domain.keys.grants import MAX_CONSTRAINT_CHARS, MAX_CONSTRAINT_PAIRS
from domain.keys.tags import MAX_TAGS_PER_KEY
from tests.servers import ROOT

WIRE = WireModel()
MODEL = WIRE.service_model
LIMITS = derived_body_limits(MODEL)


def largest_value(shape: Any, parent: str | None = None) -> Any:
    """The valid value of ``shape`` whose JSON is longest (patterns aside): every member present, every
    string and list at its maximum, maps as large as the domain accepts them."""
    t, meta = shape.type_name, shape.metadata
    if t == "structure":
        return {name: largest_value(child, shape.name) for name, child in shape.members.items()}
    if t == "list":
        enum = getattr(shape.member, "enum", None)
        count = meta.get("max") or (len(enum) if enum else MAX_TAGS_PER_KEY)
        return [largest_value(shape.member) for _ in range(count)]
    if t == "map":
        if parent == "GrantConstraints":  # 8 pairs, 384 characters: one-character keys, the rest in one value
            keys = [chr(0x1F600 + i) for i in range(MAX_CONSTRAINT_PAIRS)]  # outside the BMP: two UTF-16 units
            rest = "\U0001F600" * (MAX_CONSTRAINT_CHARS - MAX_CONSTRAINT_PAIRS)
            return {key: rest if i == 0 else "" for i, key in enumerate(keys)}
        # An encryption context of 8192 UTF-8 bytes: the 127 one-byte keys, then distinct two-byte keys.
        keys = [chr(i) for i in range(1, 128)]
        keys += [chr(1 + i // 127) + chr(1 + i % 127) for i in range((MAX_CONTEXT_BYTES - len(keys)) // 2)]
        return dict.fromkeys(keys, "")
    if t == "string":
        enum = getattr(shape, "enum", None)
        return max(enum, key=len) if enum else "x" * meta["max"]
    if t == "blob":
        return "/" * (4 * math.ceil(meta["max"] / 3))  # base64 text; "/" is the character some encoders escape
    if t == "integer":
        return -(2 ** 31)
    if t == "long":
        return -(2 ** 63)
    if t == "boolean":
        return False
    if t == "timestamp":
        return 1.7e9 + 0.123456
    raise AssertionError(t)


def escaped(text: str) -> str:
    """``text`` as a JSON string with every UTF-16 unit written \\uXXXX: valid JSON, and the longest."""
    units = text.encode("utf-16-be")
    return '"' + "".join(f"\\u{units[i]:02x}{units[i + 1]:02x}" for i in range(0, len(units), 2)) + '"'


def worst_json(value: Any) -> bytes:
    """JSON as botocore separates it (", " and ": ") with every character of every string escaped."""
    def write(v: Any) -> str:
        if isinstance(v, dict):
            return "{" + ", ".join(f"{escaped(k)}: {write(x)}" for k, x in v.items()) + "}"
        if isinstance(v, list):
            return "[" + ", ".join(map(write, v)) + "]"
        if isinstance(v, str):
            return escaped(v) if not set(v) <= {"/"} else '"' + v.replace("/", "\\/") + '"'
        return json.dumps(v)
    return write(value).encode("ascii")


def test_every_operation_of_the_model_has_a_limit() -> None:
    assert set(LIMITS) == set(MODEL.operation_names)
    assert all(limit > SLACK_BYTES for limit in LIMITS.values())


@pytest.mark.parametrize("operation", sorted(MODEL.operation_names))
def test_the_largest_valid_request_fits_its_limit(operation: str) -> None:
    shape = MODEL.operation_model(operation).input_shape
    body = worst_json(largest_value(shape)) if shape is not None else b"{}"
    assert len(body) <= LIMITS[operation] - SLACK_BYTES
    if shape is not None:
        assert largest_json(shape) <= 2 * len(body)  # and the bound is not far above what is possible


def test_the_numbers_docs_settings_quotes() -> None:
    assert max(LIMITS.values()) == LIMITS["Decrypt"] == 1_339_301
    assert (LIMITS["Encrypt"], LIMITS["CreateKey"], LIMITS["PutKeyPolicy"], LIMITS["ListKeys"]) == (
        634_123, 962_570, 803_927, 10_697)


def test_python_m_prints_the_table() -> None:
    out = subprocess.run([sys.executable, "-m", "api.body_limits"], cwd=ROOT, capture_output=True, text=True,
                         check=True).stdout
    assert "Decrypt" in out and out.splitlines()[-1].endswith("1,339,301")


def test_the_global_cap_lowers_every_operation_limit() -> None:
    capped = RequestLimits(MODEL, 16384, 100_000)
    assert capped.body_limit("Decrypt") == 100_000 and capped.body_limit("ListKeys") == LIMITS["ListKeys"]
    assert RequestLimits(MODEL, 16384, None).max_body_bytes == LIMITS["Decrypt"]


text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=300)


@settings(max_examples=200, deadline=None)
@given(key_id=st.text(min_size=1, max_size=2048), context=st.dictionaries(text.filter(bool), text, max_size=20),
       plaintext=st.binary(min_size=1, max_size=4096), tokens=st.lists(st.text(min_size=1, max_size=8192), max_size=10))
def test_random_valid_encrypt_requests_fit(key_id: str, context: dict[str, str], plaintext: bytes,
                                           tokens: list[str]) -> None:
    import base64

    if sum(len(k.encode()) + len(v.encode()) for k, v in context.items()) > MAX_CONTEXT_BYTES:
        return
    body = {"KeyId": key_id, "Plaintext": base64.b64encode(plaintext).decode(), "EncryptionContext": context,
            "GrantTokens": tokens, "EncryptionAlgorithm": "SYMMETRIC_DEFAULT", "DryRun": False}
    for encoded in (json.dumps(body).encode(), json.dumps(body, ensure_ascii=False).encode(), worst_json(body),
                    json.dumps(body, indent=4).encode()):
        assert len(encoded) <= LIMITS["Encrypt"]


@settings(max_examples=100, deadline=None)
@given(description=st.text(max_size=8192), policy=st.text(min_size=1, max_size=131072),
       tags=st.lists(st.tuples(st.text(min_size=1, max_size=128), st.text(max_size=256)), max_size=50))
def test_random_valid_create_key_requests_fit(description: str, policy: str, tags: list[tuple[str, str]]) -> None:
    body = {"Description": description, "Policy": policy, "KeySpec": "ECC_SECG_P256K1",
            "Tags": [{"TagKey": k, "TagValue": v} for k, v in tags], "BypassPolicyLockoutSafetyCheck": True}
    assert len(worst_json(body)) <= LIMITS["CreateKey"]
