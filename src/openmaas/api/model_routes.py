"""``/routes``: ModelRoute resources (seed 003), as JSON or YAML documents; admins only.

A route is named by ``metadata.name`` within ``metadata.namespace`` (``default`` when the
document names none); ``?namespace=`` picks the namespace, as ``kubectl -n`` does.
"""

from __future__ import annotations

from typing import Annotated, Any

import yaml
from fastapi import APIRouter, Depends, Query, Request, Response

from openmaas.api.deps import AdminDep, PlatformDep, require_admin
from openmaas.api.errors import MANAGEMENT_ERRORS
from openmaas.api.wire import json_response, read_json
from openmaas.domain.errors import BadRequest, Conflict
from openmaas.domain.routes import DEFAULT_NAMESPACE

router = APIRouter(
    prefix="/routes",
    tags=["routing"],
    dependencies=[Depends(require_admin)],
    responses=MANAGEMENT_ERRORS,
)

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
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        raise BadRequest(f"the body is not valid YAML{where}", code="invalid_yaml") from exc


NamespaceQuery = Annotated[
    str,
    Query(
        max_length=128,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$",
        description="The route's namespace; a document without one is put in it.",
    ),
]


def _in_namespace(document: Any, namespace: str | None) -> Any:
    """A document without ``metadata.namespace`` takes the one the request names."""
    if namespace is not None and isinstance(document, dict):
        metadata = document.get("metadata")
        if isinstance(metadata, dict) and metadata.get("namespace") is None:
            return {**document, "metadata": {**metadata, "namespace": namespace}}
    return document


@router.get("")
async def list_routes(
    platform: PlatformDep,
    namespace: Annotated[
        str | None, Query(max_length=128, description="Only this namespace's routes")
    ] = None,
) -> dict[str, Any]:
    routing = platform.routing
    routes = [r for r in routing.table.routes() if namespace in (None, r.spec.namespace)]
    return {"routes": [routing.describe(route) for route in routes]}


@router.post("", status_code=201, openapi_extra={"requestBody": _DOCUMENT})
async def create_route(
    request: Request,
    admin: AdminDep,
    platform: PlatformDep,
    namespace: Annotated[str | None, Query(max_length=128)] = None,
) -> Response:
    document = _in_namespace(await _document(request), namespace)
    created = await platform.routing.apply(document, admin)
    return json_response(created, status_code=201)


@router.get("/{name}")
async def get_route(
    name: str, platform: PlatformDep, namespace: NamespaceQuery = DEFAULT_NAMESPACE
) -> dict[str, Any]:
    return platform.routing.describe(platform.routing.find(name, namespace))


@router.put("/{name}", openapi_extra={"requestBody": _DOCUMENT})
async def replace_route(
    name: str,
    request: Request,
    admin: AdminDep,
    platform: PlatformDep,
    namespace: NamespaceQuery = DEFAULT_NAMESPACE,
) -> dict[str, Any]:
    document = _in_namespace(await _document(request), namespace)
    spec_namespace = (
        (document.get("metadata") or {}).get("namespace") if isinstance(document, dict) else None
    )
    if spec_namespace not in (None, namespace):
        raise Conflict(
            "metadata.namespace must match the route's namespace", code="route_name_mismatch"
        )
    return await platform.routing.apply(document, admin, replace=name)


@router.delete("/{name}", status_code=204)
async def delete_route(
    name: str, admin: AdminDep, platform: PlatformDep, namespace: NamespaceQuery = DEFAULT_NAMESPACE
) -> Response:
    await platform.routing.delete(name, admin, namespace)
    return Response(status_code=204)
