"""How the wire model (api/wire_model.py) words a refused request: member paths, Java-style values as AWS
echoes them, validation messages, nesting depth. A caller's value is shown only as a short prefix
(domain.errors.shown), and a message lists at most ``LISTED_VIOLATIONS`` violations."""
from __future__ import annotations

from typing import Any

from api.limits import MAX_JSON_DEPTH
from domain.errors import SHOWN_CHARS, SerializationError, ValidationError, shown

MISSING = object()  # the "value" of a missing required member
_JSON_TYPES = {str: "string", list: "array", dict: "object", bool: "boolean", int: "number", float: "number",
               type(None): "null"}


def render_path(path: Any, aws: bool) -> str:
    # Paths are (parent, segment) cons cells, cheap to build while walking and rendered only on error.
    # A segment is a member name, a list index, or a 1-tuple holding a map key (user data: shown as a prefix).
    segs = []
    while path is not None:
        path, seg = path
        segs.append(seg)
    out = ""
    for seg in reversed(segs):
        if isinstance(seg, int):
            out += f".{seg + 1}.member" if aws else f"[{seg}]"
        elif isinstance(seg, tuple):  # a map key: the caller's text, so only its prefix
            out += f".{shown(seg[0], 32)}" if aws else f"[{shown(seg[0], 32)!r}]"
        else:
            out += "." + (seg[:1].lower() + seg[1:] if aws else seg)
    return out[1:]


def type_error(path: Any, want: str, v: Any) -> SerializationError:
    got = _JSON_TYPES.get(type(v), type(v).__name__)
    if path is None:
        return SerializationError(f"Request body must be a JSON object, got {got}")
    return SerializationError(f"Member '{render_path(path, False)}' must be {want}, got {got}")


def java_text(v: Any, room: int = SHOWN_CHARS + 1) -> str:
    # Java toString style, which is what AWS echoes for lists and maps; rendered only as far as an error message
    # shows it (``room`` characters), so a huge value costs no more than a small one.
    if isinstance(v, (list, dict)):
        out, items = "[" if isinstance(v, list) else "{", v if isinstance(v, list) else v.items()
        for i, item in enumerate(items):
            if len(out) > room:
                break
            text = java_text(item, room - len(out)) if isinstance(v, list) else (
                f"{str(item[0])[:room]}={java_text(item[1], room - len(out))}")
            out += (", " if i else "") + text
        return out + ("]" if isinstance(v, list) else "}")
    return str(v)[:room]


LISTED_VIOLATIONS = 8  # a message names this many; a request can break a rule thousands of times


def validation_error(errs: list) -> ValidationError:
    parts = []
    for value, path, redact, rule in errs[:LISTED_VIOLATIONS]:
        where = render_path(path, True)
        head = (f"Value null at '{where}'" if value is MISSING else
                f"Value at '{where}'" if redact else f"Value '{shown(java_text(value))}' at '{where}'")
        parts.append(f"{head} failed to satisfy constraint: {rule}")
    n = len(errs)
    more = f"; and {n - len(parts)} more" if n > len(parts) else ""
    return ValidationError(f"{n} validation error{'' if n == 1 else 's'} detected: " + "; ".join(parts) + more)


def deeper_than(value: Any, limit: int) -> bool:
    if type(value) is dict and limit >= 1:  # the usual body, an object of text and numbers: no walk to set up
        for child in value.values():
            if type(child) in (dict, list):
                break
        else:
            return False
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return True
        children = item.values() if type(item) is dict else item
        stack.extend((child, depth + 1) for child in children if type(child) in (dict, list))
    return False


def too_deep() -> SerializationError:
    return SerializationError(f"Request body nests arrays and objects more than {MAX_JSON_DEPTH} deep; no KMS "
                              "request nests more than 3.")
