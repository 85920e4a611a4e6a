"""``/routes``: ModelRoute resources (seed 003), as JSON or YAML documents; admins only."""

from __future__ import annotations

from typing import Any

import yaml
from fastapi import APIRouter, Depends, Request, Response

from openmaas.api.deps import AdminDep, PlatformDep, require_admin
from openmaas.api.wire import json_response, read_json
from openmaas.domain.errors import BadRequest

router = APIRouter(prefix="/routes", tags=["routing"], dependencies=[Depends(require_admin)])

_DOCUMENT = {
    "content": {
        "application/json": {"schema": {"type": "object"}},
        "application/yaml": {"schema": {"type": "string"}},
    },
    "required": True,
    "description": "A ModelRoute document (apiVersion, kind, metadata, spec)",
}


async def _document(request: Request) -> Any:
    """The body as JSON, or as YAML when the content type says so."""
    content_type = request.headers.get("content-type", "")
    if "yaml" not in content_type:
        return await read_json(request)
    body = await request.body()
    try:
        return yaml.safe_load(body.decode("utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise BadRequest(f"the body is not valid YAML: {exc}", code="invalid_yaml") from exc


@router.get("")
async def list_routes(platform: PlatformDep) -> dict[str, Any]:
    routing = platform.routing
    return {"routes": [routing.describe(route) for route in routing.table.by_name.values()]}


@router.post("", status_code=201, openapi_extra={"requestBody": _DOCUMENT})
async def create_route(request: Request, admin: AdminDep, platform: PlatformDep) -> Response:
    created = await platform.routing.apply(await _document(request), admin)
    return json_response(created, status_code=201)


@router.get("/{name}")
async def get_route(name: str, platform: PlatformDep) -> dict[str, Any]:
    return platform.routing.describe(platform.routing.find(name))


@router.put("/{name}", openapi_extra={"requestBody": _DOCUMENT})
async def replace_route(
    name: str, request: Request, admin: AdminDep, platform: PlatformDep
) -> dict[str, Any]:
    return await platform.routing.apply(await _document(request), admin, replace=name)


@router.delete("/{name}", status_code=204)
async def delete_route(name: str, admin: AdminDep, platform: PlatformDep) -> Response:
    await platform.routing.delete(name, admin)
    return Response(status_code=204)
