"""The one place where errors become AWS wire responses."""
from __future__ import annotations

import json

from domain.errors import InternalError, KmsError

CONTENT_TYPE = "application/x-amz-json-1.1"
INTERNAL_MESSAGE = "The service could not complete the request because of an internal error. Retry the request."


def error_body(error: KmsError) -> bytes:
    return json.dumps({"__type": error.code, "message": error.message}).encode("utf-8")


INTERNAL_ERROR_BODY = error_body(InternalError(INTERNAL_MESSAGE))
