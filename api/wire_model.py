"""KMS JSON 1.1 request parsing/validation and response serialization, driven by botocore's KMS model.

Shapes compile once into closures, so a request costs one walk of its body. Blob and ``sensitive``
values are never echoed in a message."""
from __future__ import annotations

import binascii
import json
import re
from datetime import datetime, timezone
from enum import Enum
from typing import Any, Callable

import botocore.session
import orjson
import pybase64

from api.answer_json import Base64, emit
from api.limits import MAX_JSON_DEPTH
from api.storage_reserved import refuse_storage_reserved
from api.wire_errors import MISSING, deeper_than, render_path, too_deep, type_error, validation_error
from domain.errors import KmsError, SerializationError, UnknownOperationError, shown

_b64decode, _b64encode = pybase64.b64decode, pybase64.b64encode

Parser = Callable[[Any, Any, list], Any]  # (json value, path, violations) -> parsed value
Serializer = Callable[[Any], Any]
_INT_RANGE = {"integer": (-(2**31), 2**31 - 1), "long": (-(2**63), 2**63 - 1)}  # Java int/long, as AWS


def _str_len(v: str, path: Any) -> int:
    if v.isascii():  # O(1) in CPython: the common case skips the encode
        return len(v)
    try:  # AWS counts Java String length (UTF-16 units); a lone surrogate would break every later UTF-8 encode
        return len(v.encode("utf-16-le")) // 2
    except UnicodeEncodeError:
        raise SerializationError(f"Member '{render_path(path, False)}' contains an unpaired UTF-16 surrogate") from None


def _parse_time(v: Any, path: Any, errs: list) -> datetime:
    try:
        if type(v) in (int, float):
            return datetime.fromtimestamp(v, timezone.utc)
        if type(v) is str:
            dt = datetime.fromisoformat(v)
            return dt.replace(tzinfo=timezone.utc) if dt.tzinfo is None else dt.astimezone(timezone.utc)
    except (ValueError, OverflowError, OSError):
        pass
    raise SerializationError(f"Member '{render_path(path, False)}' must be epoch seconds or an ISO 8601 timestamp")


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not valid JSON")  # Python's json would otherwise accept NaN/Infinity


_DECODER = json.JSONDecoder(parse_constant=_reject_constant)  # json.loads would build one per call


def _redacted(shape: Any, seen: set) -> bool:
    # A list or map holding a secret is a secret too: its echoed toString would show the elements.
    if shape.type_name == "blob" or shape.metadata.get("sensitive"):
        return True
    seen.add(shape.name)
    kids = (shape.members.values() if shape.type_name == "structure" else [shape.member] if shape.type_name == "list"
            else [shape.key, shape.value] if shape.type_name == "map" else [])
    return any(k.name not in seen and _redacted(k, seen) for k in kids)


class WireModel:
    def __init__(self) -> None:
        self._model = botocore.session.get_session().get_service_model("kms")
        self._ops = frozenset(self._model.operation_names)
        self._shape_cache: dict[tuple[str, str], Callable] = {}
        self._op_cache: dict[tuple[str, str], Callable] = {}

    @property
    def service_model(self) -> Any:
        """botocore's KMS model, for what else is derived from it (api/body_limits.py)."""
        return self._model

    def has_operation(self, name: str) -> bool:
        return name in self._ops

    def operation_shape(self, operation: str, way: str) -> Any:
        op = self._model.operation_model(operation)
        return op.input_shape if way == "in" else op.output_shape

    def parse_request(self, operation: str, body: bytes) -> dict[str, Any]:
        """The request's members, validated against the model; or the refusal AWS would answer with.

        The body is read by orjson (decision 273): 2-3 times faster than the standard library on a 4 KiB Plaintext,
        and the only difference in what it reads is that an integer beyond 64 bits becomes a float. So orjson's
        reading is used only when the request it gives is valid: an integer member must be an int and a timestamp
        that large overflows either way, so such a value is always refused, and unknown members are dropped. Every
        body orjson refuses (NaN, a lone surrogate, a byte-order mark, UTF-16...) and every request refused after
        its reading is read again by the standard library (``parse_request_exactly``), and refused, or accepted, as
        that reading is: the answer to every body is the standard library's. A refused body costs two readings."""
        if operation not in self._ops:
            raise UnknownOperationError(f"Unknown operation {shown(operation)!r}")
        if not body or not body.strip():
            return self._validated(operation, body, {})
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            return self.parse_request_exactly(operation, body)
        try:
            return self._validated(operation, body, data)
        except KmsError:
            return self.parse_request_exactly(operation, body)

    def parse_request_exactly(self, operation: str, body: bytes) -> dict[str, Any]:
        """``parse_request`` with the body read by the standard library's decoder: what defines the answer."""
        if operation not in self._ops:
            raise UnknownOperationError(f"Unknown operation {shown(operation)!r}")
        data: Any = {}
        if body and body.strip():
            try:
                data = _DECODER.decode(body.decode(json.detect_encoding(body), "surrogatepass"))
            except UnicodeDecodeError:
                raise SerializationError("Request body is not valid UTF-8") from None
            except json.JSONDecodeError as e:  # its msg names the position, never the content
                raise SerializationError(f"Request body is not valid JSON: {e.msg} at position {e.pos}") from None
            except RecursionError:
                raise too_deep() from None
            except ValueError as e:  # NaN or an infinity: its message names which
                raise SerializationError(f"Request body is not valid JSON: {e}") from None
        return self._validated(operation, body, data)

    def _validated(self, operation: str, body: bytes, data: Any) -> dict[str, Any]:
        # A walk of the parsed containers: about 1 us for a usual body, where counting the body's brackets to skip
        # it cost 3 (two scans of every byte of a 4 KiB Plaintext); a hostile body's walk costs what parsing it did.
        if type(data) in (dict, list) and deeper_than(data, MAX_JSON_DEPTH):
            raise too_deep()
        if type(data) is not dict:
            raise type_error(None, "", data)
        errs: list = []
        out = self._for_operation("in", operation)(data, None, errs)
        if errs:
            raise validation_error(errs)
        # The common body is not walked, and not searched for the names either: a one-byte search is a memchr
        # (0.2 us on a 4 KiB Encrypt), the three searches for the names and the escape 12 us (decision 253).
        if (b"_" in body and (b"_type_" in body or b"_data_" in body)) or (b"\\" in body and b"\\u" in body):
            refuse_storage_reserved(out)
        return out

    def response_body(self, operation: str, output: dict[str, Any]) -> bytes:
        """The response as JSON bytes: what ``json.dumps`` writes for the serialized output, with blobs' base64
        put in as is instead of scanned for characters to escape (it has none; a 4 KiB blob is most of it)."""
        out: list[bytes] = []
        emit(self._for_operation("out", operation)(output), out)
        return b"".join(out)

    def _for_operation(self, way: str, operation: str) -> Callable:
        fn = self._op_cache.get((way, operation))
        if fn is None:
            op = self._model.operation_model(operation)
            shape = op.input_shape if way == "in" else op.output_shape
            fn = self._op_cache[(way, operation)] = (
                self._compiled(way, shape) if shape is not None else _no_output if way == "out" else lambda *a: {})
        return fn

    def _compiled(self, way: str, shape: Any) -> Callable:
        # Keyed by shape name: KMS members carry no constraint traits of their own, only documentation.
        key = (way, shape.name)
        fn = self._shape_cache.get(key)
        if fn is None:
            cell: list = []
            self._shape_cache[key] = lambda *a: cell[0](*a)  # a recursive shape can refer to itself mid-build
            fn = self._shape_cache[key] = (self._build_parser if way == "in" else self._build_serializer)(shape)
            cell.append(fn)
        return fn

    def _build_parser(self, shape: Any) -> Parser:
        t, meta = shape.type_name, shape.metadata
        lo, hi, pat = meta.get("min"), meta.get("max"), meta.get("pattern")
        enum = frozenset(shape.enum) if getattr(shape, "enum", None) else None
        regex = re.compile(pat, re.ASCII) if pat else None  # Java's \w and \s are ASCII-only; matches() is full
        redact, kind = _redacted(shape, set()), "value" if t in _INT_RANGE else "length"

        def check(v: Any, n: int, path: Any, errs: list) -> None:
            if lo is not None and n < lo:
                errs.append((v, path, redact, f"Member must have {kind} greater than or equal to {lo}"))
            if hi is not None and n > hi:
                errs.append((v, path, redact, f"Member must have {kind} less than or equal to {hi}"))
            if enum is not None and v not in enum:
                errs.append((v, path, redact, f"Member must satisfy enum value set: [{', '.join(shape.enum)}]"))
            if regex is not None and regex.fullmatch(v) is None:
                errs.append((v, path, redact, f"Member must satisfy regular expression pattern: {pat}"))

        def typed(want: type, label: str, convert: Callable) -> Parser:
            def parse(v: Any, path: Any, errs: list) -> Any:
                if type(v) is not want:
                    raise type_error(path, label, v)
                return convert(v, path, errs)
            return parse

        if t == "structure":
            required = set(shape.required_members)
            members = [(n, self._compiled("in", s), n in required) for n, s in shape.members.items()]

            def structure(v: dict, path: Any, errs: list) -> dict:
                out = {}
                for name, fn, req in members:  # unknown members are ignored (and dropped), as AWS does
                    x = v.get(name)
                    if x is not None:
                        out[name] = fn(x, (path, name), errs)
                    elif req:
                        errs.append((MISSING, (path, name), False, "Member must not be null"))
                return out
            return typed(dict, "an object", structure)
        if t == "list":
            item = self._compiled("in", shape.member)

            def array(v: list, path: Any, errs: list) -> list:
                out = [item(x, (path, i), errs) for i, x in enumerate(v)]
                check(out, len(out), path, errs)
                return out
            return typed(list, "an array", array)
        if t == "map":
            key, value = self._compiled("in", shape.key), self._compiled("in", shape.value)

            def mapping(v: dict, path: Any, errs: list) -> dict:
                out = {}
                for k, x in v.items():
                    p = (path, (k,))
                    out[key(k, p, errs)] = value(x, p, errs)
                check(out, len(out), path, errs)
                return out
            return typed(dict, "an object", mapping)
        if t == "string":
            def string(v: str, path: Any, errs: list) -> str:
                check(v, _str_len(v, path), path, errs)
                return v
            return typed(str, "a string", string)
        if t == "blob":
            def blob(v: str, path: Any, errs: list) -> bytes:
                try:  # Python tolerates excess '=' ("YWJj=") where Jackson would not
                    if len(v) % 4 or v.find("=", 0, len(v) - 2) != -1:
                        raise ValueError
                    b = _b64decode(v, validate=True)
                except (binascii.Error, ValueError):
                    raise SerializationError(f"Member '{render_path(path, False)}' is not valid base64") from None
                check(b, len(b), path, errs)
                return b
            return typed(str, "a base64-encoded string", blob)
        if t in _INT_RANGE:
            floor, ceil = _INT_RANGE[t]

            def integer(v: int, path: Any, errs: list) -> int:
                if not floor <= v <= ceil:  # Jackson fails to bind these before any validation runs
                    raise SerializationError(f"Member '{render_path(path, False)}' is out of range for a Java {t}")
                check(v, v, path, errs)
                return v
            return typed(int, "an integer", integer)
        if t == "boolean":
            return typed(bool, "a boolean", lambda v, path, errs: v)
        if t == "timestamp":
            return _parse_time
        raise NotImplementedError(f"shape type {t} ({shape.name}) does not occur in the KMS model")

    def _build_serializer(self, shape: Any) -> Serializer:
        t = shape.type_name
        if t == "structure":
            members = {n: self._compiled("out", s) for n, s in shape.members.items()}

            def structure(v: dict) -> dict:
                out = {}
                for k, x in v.items():
                    if x is not None:
                        fn = members.get(k)
                        if fn is None:
                            raise AssertionError(f"{shape.name} has no member {k!r}: response drifted from the model")
                        out[k] = fn(x)
                return out
            return structure
        if t == "list":
            item = self._compiled("out", shape.member)
            return lambda v: [item(x) for x in v]
        if t == "map":
            value = self._compiled("out", shape.value)
            return lambda v: {k: value(x) for k, x in v.items()}
        if t == "blob":
            return lambda v: Base64(_b64encode(v))
        if t == "timestamp":
            return _ser_time
        return _ser_string if t == "string" else lambda v: v


def _no_output(v: dict) -> dict:
    extra = [k for k, x in v.items() if x is not None]
    if extra:
        raise AssertionError(f"operation has no output shape, got members {extra}")
    return {}


def _ser_string(v: Any) -> str:
    if type(v) is str:
        return v
    if isinstance(v, Enum) and isinstance(v.value, str):  # domain enums (key state, spec) go out as their value
        return v.value
    raise AssertionError(f"expected a string, got {type(v).__name__}")


def _ser_time(v: Any) -> float:
    if isinstance(v, datetime):  # naive is taken as UTC; .timestamp() would otherwise read it as local time
        return (v if v.tzinfo else v.replace(tzinfo=timezone.utc)).timestamp()
    raise AssertionError(f"expected a datetime, got {type(v).__name__}")
