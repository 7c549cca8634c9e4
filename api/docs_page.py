"""``/docs``: Swagger UI for the /v1 query API, served entirely from the package (api/static/swagger-ui,
swagger-ui-dist with its licence), so it works on a machine without internet; and the OpenAPI document
with the SigV4 security scheme every /v1 route needs (README, "Calling /v1")."""
from __future__ import annotations

from importlib import resources
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.openapi.utils import get_openapi
from starlette.responses import HTMLResponse
from starlette.staticfiles import StaticFiles

STATIC_PREFIX = "/static"
SIGV4 = {
    "type": "apiKey", "in": "header", "name": "Authorization",
    "description": "AWS Signature Version 4, service `kms`, a region keyledger serves, signed with a keyledger access "
                   "key: the same signature as a KMS call (`X-Amz-Date` and, with a body, `X-Amz-Content-Sha256` "
                   "signed too). Browsers cannot sign, so \"Try it out\" needs a signed request from a tool: see "
                   "README, \"Calling /v1\" (botocore's SigV4Auth, or `curl --aws-sigv4`).",
    "x-amazon-apigateway-authtype": "awsSigv4",
}


def static_files() -> StaticFiles:
    return StaticFiles(directory=str(resources.files("api").joinpath("static")))


def install_docs(app: FastAPI) -> None:
    """The app must be made with ``docs_url=None, redoc_url=None`` (their pages load from a CDN)."""
    app.mount(STATIC_PREFIX, static_files(), name="static")

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            schema.setdefault("components", {}).setdefault("securitySchemes", {})["sigv4"] = SIGV4
            for path, operations in schema.get("paths", {}).items():
                if path.startswith("/v1"):
                    for operation in operations.values():
                        operation["security"] = [{"sigv4": []}]
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json", title=f"{app.title}: /v1 query API",
            swagger_js_url=f"{STATIC_PREFIX}/swagger-ui/swagger-ui-bundle.js",
            swagger_css_url=f"{STATIC_PREFIX}/swagger-ui/swagger-ui.css",
            swagger_favicon_url=f"{STATIC_PREFIX}/swagger-ui/favicon-32x32.png",
            # No badge from validator.swagger.io: nothing on this page may leave the machine.
            swagger_ui_parameters={"validatorUrl": None})
