"""Hostile values: strings, JSON number spellings, base64 that is not, and mangled ciphertext blobs.

Everything is drawn from a ``random.Random`` handed in, so a request is a function of (seed, index)."""
from __future__ import annotations

import base64
import json
import random
from typing import Any

RAW = "\x00@raw@\x00"  # stands for a JSON fragment spliced into the body text after json.dumps (see splice)

# Short strings that break naive code: control characters, lone surrogates (JSON escapes them as \udXXX),
# bidirectional overrides, combining marks, zero-width and non-characters, path and injection classics.
NASTY = (
    "", " ", "\t", "\x00", "a\x00b", "\x00" * 64, "\ud800", "\udfff", "a\ud800b", "\udc00\ud800",
    "\u202eevil\u202c", "\u200f\u200e", "\u2066isolate\u2069", "\ufeff", "\ufffe\uffff", "\u200b" * 20,
    "e\u0301" * 30, "Z\u0351\u0360\u0361\u0362" * 40, "\U0001f600", "\U0001f469\u200d\U0001f469\u200d\U0001f467",
    "\U0010ffff", "\u0000\u0001\u001f\u007f\u0080\u009f", "\r\nX-Injected: 1", "\n" * 50, "\\", "\"", "'",
    "%00%0d%0a", "../../../../etc/passwd", "' OR '1'='1' --", "${aws:username}", "${jndi:ldap://x}",
    "%s%n%x{0}{}", "<script>alert(1)</script>", "alias/", "alias/aws/", "arn:aws:kms:", "arn:", "*", "?",
    "alias/\U0001f600", "arn:aws:kms:us-east-1:111122223333:key/\u202e", "null", "true", "[]", "{}",
    "\u0130\u0131\u017f\u212a", "\uff41\uff4c\uff49\uff41\uff53/x", "\u4e2d\u6587\u5b57",
    "\u0627\u0644\u0639\u0631\u0628\u064a\u0629", "\U0001d4b6\U0001d4c1\U0001d4be\U0001d4b6\U0001d4c8",
)


def nasty_string(rng: random.Random) -> str:
    """A short nasty string, or a long one built from them (up to 100,000 characters)."""
    roll = rng.random()
    if roll < 0.6:
        return rng.choice(NASTY)
    piece = rng.choice(NASTY[1:]) or "x"
    length = rng.choice((300, 2049, 8193, 20_000, 100_000)) if roll > 0.9 else rng.randint(2, 300)
    return (piece * (length // len(piece) + 1))[:length]


# Bytes that are not UTF-8: overlong forms, encoded surrogates, truncated sequences, bytes never valid.
BAD_UTF8 = (b"\xc0\xaf", b"\xe0\x80\xaf", b"\xed\xa0\x80", b"\xed\xbf\xbf", b"\xe2\x82", b"\xf0\x9f\x98",
            b"\xff", b"\xfe\xff", b"\xf8\x88\x80\x80\x80", b"\x80", b"\xf4\x90\x80\x80")

# JSON number spellings that are out of a Java int/long's range, not integers, or not JSON at all.
BAD_NUMBERS = (
    "2147483648", "-2147483649", "9223372036854775808", "-9223372036854775809", "18446744073709551616",
    "1e309", "-1e309", "1e-400", "1.5", "1.0", "1e2", "1E+2", "-0.0", "-1", "0", "4294967296",
    "1" + "0" * 5000, "-" + "9" * 20_000, "0.000000000000000000001", "123456789012345678901234567890.5",
    "NaN", "Infinity", "-Infinity", "0x10", "01", "+1", ".5", "1.", "1e", "--1", "1_000", "\u0661",
)

BAD_BASE64 = (
    "not base64!!", "YQ", "YQ=", "YQ===", "Y", "====", "=", "YWJj=", "YW=J", "YWJj\n", " YWJj", "YWJ j",
    "YWJj\x00", "YW\u00e9j", "-_-_", "YWJj-_==", "\U0001f600\U0001f600", "%59%57%4a%6a", "YWJj" * 3 + "*",
    "QUJD\r\nREVG", "AA==AA==", "\\u0041AAA",
)


def bad_base64(rng: random.Random) -> str:
    roll = rng.random()
    if roll < 0.8:
        return rng.choice(BAD_BASE64)
    valid = base64.b64encode(rng.randbytes(rng.randint(1, 9000))).decode()
    spot = rng.randrange(len(valid))
    return valid[:spot] + rng.choice("!*.~ \u00e9\x00") + valid[spot + 1:]  # one bad character somewhere


def mangled_blob(rng: random.Random, blob: bytes) -> tuple[bytes, str]:
    """A changed copy of ``blob`` (never equal to it) and how it was changed."""
    while True:
        out, how = _mangle(rng, blob)
        if out != blob:
            return out, how


def _mangle(rng: random.Random, blob: bytes) -> tuple[bytes, str]:
    kind = rng.choice(("flip", "flip", "truncate", "truncate", "extend", "swap", "zero-header", "splice",
                       "random", "empty-tail", "version", "oversize"))
    data = bytearray(blob)
    if kind == "flip":
        spot = rng.randrange(len(data))
        data[spot] ^= 1 << rng.randrange(8)
        return bytes(data), f"bit flipped at byte {spot}"
    if kind == "truncate":
        cut = rng.randrange(1, len(data))
        return bytes(data[:cut]), f"truncated to {cut} bytes"
    if kind == "extend":
        return bytes(data) + rng.randbytes(rng.randint(1, 64)), "bytes appended"
    if kind == "swap":
        i, j = rng.randrange(len(data)), rng.randrange(len(data))
        data[i], data[j] = data[j], data[i]
        return bytes(data), f"bytes {i} and {j} swapped"
    if kind == "zero-header":
        return bytes(61) + bytes(data[61:]), "header zeroed"
    if kind == "splice":
        cut = rng.randrange(1, len(data))
        return bytes(data[cut:] + data[:cut]), f"rotated by {cut}"
    if kind == "random":
        return rng.randbytes(rng.choice((1, 16, 77, 78, len(data), 6144))), "random bytes"
    if kind == "empty-tail":
        return bytes(data[:61]), "header only"
    if kind == "version":
        data[0] = rng.choice((0, 2, 0x80, 0xFF))
        return bytes(data), f"version byte {data[0]}"
    return bytes(data) * (6145 // len(data) + 1), "over 6144 bytes"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


WRONG_VALUES: tuple[tuple[Any, str], ...] = (
    ("text", "string"), (12, "integer"), (-1, "negative integer"), (1.5, "float"), (True, "boolean"),
    (False, "false"), (None, "null"), ([], "empty array"), (["a", 1, None], "mixed array"), ({}, "empty object"),
    ({"a": {"b": [1]}}, "nested object"), ([[[[[[[[[[]]]]]]]]]], "nested arrays"),
    ("x" * 70_000, "70,000-character string"), (RAW + "1e999", "1e999"), (RAW + "2" * 400, "400-digit integer"),
)
# The labels that are not wrong for a shape type (a blob is a base64 string; a timestamp a number or string).
_RIGHT = {"string": {"string", "70,000-character string"}, "blob": {"string", "70,000-character string"},
          "timestamp": {"integer", "negative integer", "float", "string", "70,000-character string"},
          "integer": {"integer", "negative integer"}, "long": {"integer", "negative integer"},
          "boolean": {"boolean", "false"}, "list": {"empty array", "mixed array", "nested arrays"},
          "map": {"empty object", "nested object"}, "structure": {"empty object", "nested object"}}


def wrong_values(type_name: str) -> list[tuple[Any, str]]:
    """Every JSON value in WRONG_VALUES whose type is not ``type_name`` (botocore's shape type), with its
    label. "null" is among them: it is how a member is left out, so it is wrong only where one is required."""
    return [(value, label) for value, label in WRONG_VALUES if label not in _RIGHT.get(type_name, set())]


def splice(document: Any) -> bytes:
    """``json.dumps(document)`` with every string RAW + fragment replaced by the fragment itself, so numbers
    JSON's encoder would never write (1e999, 400 digits, NaN) reach the server."""
    text = json.dumps(document)
    marker = json.dumps(RAW)[:-1]  # the opening quote and the escaped marker
    if marker not in text:
        return text.encode("utf-8", "surrogatepass")
    out, rest = [], text
    while marker in rest:
        before, _, after = rest.partition(marker)
        fragment, _, rest = after.partition('"')
        out += [before, fragment]
    return ("".join(out) + rest).encode("utf-8", "surrogatepass")
