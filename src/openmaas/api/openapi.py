"""OpenAPI that lists every active endpoint with its own request schema.

``/predict/{endpoint}`` is one parameterised route (nothing is added to the router at
run time), yet each deployment shows up in the API docs with the schema of its model's
signature: seed 004's "each endpoint appears in OpenAPI docs" without dynamic routes.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from openmaas.domain.models import TensorSpec
from openmaas.serving.endpoints import Endpoint, EndpointTable

_JSON_TYPES = {"BOOL": "boolean", "BYTES": "string"}


def _value_schema(spec: TensorSpec) -> dict[str, Any]:
    if spec.datatype in _JSON_TYPES:
        scalar: dict[str, Any] = {"type": _JSON_TYPES[spec.datatype]}
    elif spec.datatype.startswith("FP"):
        scalar = {"type": "number"}
    else:
        scalar = {"type": "integer"}
    row: dict[str, Any] = scalar
    for size in reversed(spec.shape[1:]):
        row = {"type": "array", "items": row}
        if size > 0:
            row.update(minItems=size, maxItems=size)
    return {
        "description": f"{spec.datatype} {list(spec.shape)}: one example or a list of them",
        "anyOf": [row, {"type": "array", "items": row}],
    }


def _operation(endpoint: Endpoint) -> dict[str, Any]:
    specs = endpoint.version.signature.inputs
    if len(specs) == 1:
        input_schema = _value_schema(specs[0])
    else:
        input_schema = {
            "type": "object",
            "properties": {spec.name: _value_schema(spec) for spec in specs},
            "required": [spec.name for spec in specs],
        }
    deployment = endpoint.deployment
    return {
        "post": {
            "tags": ["endpoints"],
            "summary": f"{deployment.model_name} v{deployment.version}",
            "operationId": f"predict_{endpoint.name}",
            "description": endpoint.version.description or f"Deployment {endpoint.name!r}.",
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "properties": {"input": input_schema},
                            "required": ["input"],
                        }
                    }
                },
            },
            "responses": {
                "200": {"description": "The prediction, and every output of the model."},
                "404": {"description": "The endpoint is not deployed."},
            },
            "security": [{"APIKey": []}],
        }
    }


def install_openapi(app: FastAPI, table: EndpointTable) -> Callable[[], dict[str, Any]]:
    cache: dict[str, Any] = {}

    def openapi() -> dict[str, Any]:
        if "base" not in cache:
            cache["base"] = get_openapi(
                title=app.title, version=app.version, description=app.description, routes=app.routes
            )
        key = tuple(sorted((e.name, e.deployment.id) for e in table.by_name.values()))
        if cache.get("key") != key:
            schema = copy.deepcopy(cache["base"])
            for endpoint in sorted(table.by_name.values(), key=lambda e: e.name):
                schema["paths"][f"/predict/{endpoint.name}"] = _operation(endpoint)
            schema.setdefault("components", {})["securitySchemes"] = {
                "APIKey": {"type": "http", "scheme": "bearer"}
            }
            cache.update(key=key, schema=schema)
        return cache["schema"]

    app.openapi = openapi  # type: ignore[method-assign]
    return openapi
