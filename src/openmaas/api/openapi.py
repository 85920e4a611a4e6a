"""``/openapi.json`` with each deployment's own operations, and the docs pages, offline.

Every deployment shows up in the API description under the routes it answers, with the
request schema of its model's signature: tensor models under ``/predict/{endpoint}`` and
``/v2/models/{endpoint}/infer``, language and embedding models under ``/v2`` and as the
``model`` of the ``/v1`` operations. Seed 004's "each endpoint appears in OpenAPI docs",
without adding routes at run time.

Deployment names are shown only to a caller the platform knows (an API key, or a portal
session), and only those the caller's plan lets it call; anyone else gets the generic
description. ``/docs`` (Swagger UI) and ``/redoc`` load their scripts from the installed
``fastapi-offline`` package, never from a CDN, so they work without internet.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from importlib.resources import files
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.openapi.utils import get_openapi
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel
from starlette.responses import HTMLResponse

from openmaas.access import credential_from_headers
from openmaas.access.sessions import SESSION_COOKIE
from openmaas.api.endpoint_schemas import predict_operation, v2_operation
from openmaas.api.openai_schemas import ChatRequest, CompletionRequest, EmbeddingRequest
from openmaas.api.wire import json_response
from openmaas.platform import Platform
from openmaas.portal.catalogue import allowed_models
from openmaas.serving.endpoints import Endpoint
from openmaas.serving.language_tensors import speaks_text

OPENAPI_URL = "/openapi.json"
DOCS_ASSETS = "/docs/assets"
_OPENAI_BODIES: dict[str, type[BaseModel]] = {
    "/v1/chat/completions": ChatRequest,
    "/v1/completions": CompletionRequest,
    "/v1/embeddings": EmbeddingRequest,
}
Visible = Callable[[str], bool]
# The docs pages reach nothing but this server: ReDoc's footer logo from its CDN, for one,
# is refused by the browser before any request is made.
_DOCS_POLICY = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self' data:; worker-src 'self' blob:; connect-src 'self'"
)


class DeploymentOpenAPI:
    """The generic description, built once, and each deployment's operations, cached."""

    def __init__(self, app: FastAPI, platform: Platform) -> None:
        self.app = app
        self.platform = platform
        self._base: dict[str, Any] | None = None
        self._operations: dict[tuple[int, object], dict[str, Any]] = {}

    def base(self) -> dict[str, Any]:
        if self._base is None:
            app = self.app
            schema = get_openapi(
                title=app.title, version=app.version, description=app.description, routes=app.routes
            )
            components = schema.setdefault("components", {})
            components["securitySchemes"] = {"APIKey": {"type": "http", "scheme": "bearer"}}
            _add_openai_bodies(schema)
            self._base = schema
        return self._base

    def _endpoint_paths(self, endpoint: Endpoint) -> dict[str, Any]:
        key = (endpoint.deployment.id, endpoint.version.signature)
        found = self._operations.get(key)
        if found is None:
            found = {f"/v2/models/{endpoint.name}/infer": v2_operation(endpoint)}
            if not speaks_text(endpoint):
                found[f"/predict/{endpoint.name}"] = predict_operation(endpoint)
            self._operations[key] = found
        return found

    def describe(self, visible: Visible | None) -> dict[str, Any]:
        """The description a caller sees: with the deployments ``visible`` lets through."""
        base = self.base()
        if visible is None:
            return base
        endpoints = sorted(self.platform.serving.table.by_name.values(), key=lambda e: e.name)
        live = {(e.deployment.id, e.version.signature) for e in endpoints}
        for stale in set(self._operations) - live:
            del self._operations[stale]
        paths = dict(base["paths"])
        language: set[str] = set()
        for endpoint in endpoints:
            if not visible(endpoint.deployment.model_name):
                continue
            paths.update(self._endpoint_paths(endpoint))
            if speaks_text(endpoint):
                language.update((endpoint.deployment.model_name, endpoint.name))
        schema = {**base, "paths": paths}
        if language:
            schema["components"] = _with_model_examples(base["components"], sorted(language))
        return schema


def _add_openai_bodies(schema: dict[str, Any]) -> None:
    """The ``/v1`` handlers read their bodies themselves: describe them from the models."""
    schemas = schema["components"].setdefault("schemas", {})
    for path, model in _OPENAI_BODIES.items():
        operation = schema["paths"].get(path, {}).get("post")
        if operation is None:
            continue
        described = model.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(described.pop("$defs", {}))
        schemas[model.__name__] = described
        operation["requestBody"] = {
            "required": True,
            "content": {
                "application/json": {"schema": {"$ref": f"#/components/schemas/{model.__name__}"}}
            },
        }


def _with_model_examples(components: dict[str, Any], names: list[str]) -> dict[str, Any]:
    """The ``/v1`` request schemas with the caller's language models as ``model`` examples."""
    schemas = dict(components["schemas"])
    for model in _OPENAI_BODIES.values():
        described = schemas.get(model.__name__)
        if described is None:
            continue
        described = copy.deepcopy(described)
        described["properties"]["model"]["examples"] = names
        schemas[model.__name__] = described
    return {**components, "schemas": schemas}


async def visible_to(platform: Platform, request: Request) -> Visible | None:
    """Which models the caller may call; None for a caller the platform does not know.

    A key that is not valid is a 401, as anywhere else: the caller meant to be known.
    """
    key = credential_from_headers(request.headers)
    if key is not None:
        identity = platform.access.identify_key(key)
        if identity.principal.is_admin:
            return lambda _name: True
        if identity.key is not None and identity.key.application_id is not None:
            return platform.gate.model_filter(request.headers)
        return await allowed_models(platform, identity.principal)
    found = await platform.access.identify_session_now(request.cookies.get(SESSION_COOKIE))
    if found is None:
        return None
    return await allowed_models(platform, found[0])


def install_openapi(app: FastAPI, platform: Platform) -> DeploymentOpenAPI:
    """``/openapi.json``, ``/docs`` and ``/redoc`` (create the app with these URLs unset)."""
    described = DeploymentOpenAPI(app, platform)
    app.openapi = described.base  # type: ignore[method-assign]
    assets = files("fastapi_offline") / "static"
    app.mount(DOCS_ASSETS, StaticFiles(directory=str(assets)), name="docs-assets")

    @app.get(OPENAPI_URL, include_in_schema=False)
    async def openapi_json(request: Request) -> Response:
        return json_response(described.describe(await visible_to(platform, request)))

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return _offline(
            get_swagger_ui_html(
                openapi_url=f"{root}{OPENAPI_URL}",
                title=f"{app.title} - API",
                oauth2_redirect_url=f"{root}/docs/oauth2-redirect",
                swagger_js_url=f"{root}{DOCS_ASSETS}/swagger-ui-bundle.js",
                swagger_css_url=f"{root}{DOCS_ASSETS}/swagger-ui.css",
                swagger_favicon_url=f"{root}{DOCS_ASSETS}/favicon.png",
                swagger_ui_parameters={"persistAuthorization": True},
            )
        )

    @app.get("/docs/oauth2-redirect", include_in_schema=False)
    async def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @app.get("/redoc", include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return _offline(
            get_redoc_html(
                openapi_url=f"{root}{OPENAPI_URL}",
                title=f"{app.title} - API",
                redoc_js_url=f"{root}{DOCS_ASSETS}/redoc.standalone.js",
                redoc_favicon_url=f"{root}{DOCS_ASSETS}/favicon.png",
                with_google_fonts=False,
            )
        )

    return described


def _offline(page: HTMLResponse) -> HTMLResponse:
    page.headers["Content-Security-Policy"] = _DOCS_POLICY
    return page
