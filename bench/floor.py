"""The floor for `make bench`: a minimal FastAPI app on the same uvicorn that does AES-256-GCM on the
same request body, with no authentication, no audit and no storage. keyledger's numbers are printed as
ratios to it, so the machine's speed cancels out."""
from __future__ import annotations

import base64
import json
import os
import sys

import uvicorn
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from fastapi import FastAPI, Request
from starlette.responses import Response

app = FastAPI()
_AEAD = AESGCM(os.urandom(32))


@app.post("/")
async def floor(request: Request) -> Response:
    body = json.loads(await request.body())
    data = base64.b64decode(body.get("Plaintext") or body.get("CiphertextBlob") or "AAAA")
    nonce = os.urandom(12)
    sealed = nonce + _AEAD.encrypt(nonce, data, None)
    return Response(json.dumps({"CiphertextBlob": base64.b64encode(sealed).decode()}),
                    media_type="application/x-amz-json-1.1")


if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", access_log=False)
