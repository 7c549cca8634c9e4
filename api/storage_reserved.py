"""The one shape of a caller's input that keyledger refuses although AWS accepts it: a map whose keys are exactly
``_type_`` and ``_data_``, and those two tag keys (decision 184). ``WireModel.parse_request`` calls it on a parsed
request that could hold one."""
from __future__ import annotations

from typing import Any

from domain.errors import ValidationError

# The event store's JSON transcoder (eventsourcing) reads any object whose keys are exactly "_type_" and "_data_"
# as a typed value (a datetime, a UUID, ...) or fails on an unknown type. A caller's map of that form (an
# encryption context, a grant's constraints), stored in an event or an audit record, would come back as something
# else, or not at all: the record would fail `audit verify` and every reader of the log. Such input is refused
# before any work, and so are the two tag keys, which a key's tags (a map in its events) could combine into that
# form across calls (docs/decisions.md 184).
STORAGE_RESERVED_KEYS = frozenset({"_type_", "_data_"})


def refuse_storage_reserved(value: Any, where: str = "") -> None:
    if isinstance(value, dict):
        if value.keys() == STORAGE_RESERVED_KEYS:
            raise ValidationError(f"{where or 'The request'} is a map whose keys are exactly '_type_' and '_data_', "
                                  "a form keyledger's event store reserves; add or rename a key.")
        for name, item in value.items():
            tag_keys = [item] if name == "TagKey" else item if name == "TagKeys" and isinstance(item, list) else []
            if any(isinstance(k, str) and k in STORAGE_RESERVED_KEYS for k in tag_keys):
                raise ValidationError("The tag keys '_type_' and '_data_' are reserved by keyledger's event store; "
                                      "choose another tag key.")
            refuse_storage_reserved(item, f"{where}.{name}" if where else name)
    elif isinstance(value, list):
        for item in value:
            refuse_storage_reserved(item, where)
