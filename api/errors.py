"""The one place where errors become AWS wire responses."""
from __future__ import annotations

import json

from domain.errors import InternalError, KmsError

CONTENT_TYPE = "application/x-amz-json-1.1"
INTERNAL_MESSAGE = "The service could not complete the request because of an internal error. Retry the request."
# The last word on a message's length, whatever built it: messages show callers' values only as short
# prefixes (domain.errors.shown), but a message listing many of them (a validation error per member) is cut here.
MAX_MESSAGE_CHARS = 1024


def bounded_message(message: str) -> str:
    return message if len(message) <= MAX_MESSAGE_CHARS else message[:MAX_MESSAGE_CHARS] + "…"


def error_body(error: KmsError) -> bytes:
    return json.dumps({"__type": error.code, "message": bounded_message(error.message)}).encode("utf-8")


INTERNAL_ERROR_BODY = error_body(InternalError(INTERNAL_MESSAGE))
