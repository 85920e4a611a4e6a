"""Management routes of the model registry (admin only)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Depends, File, Form, Query, Response, UploadFile
from pydantic import BaseModel, ConfigDict, Field

from openmaas.api.deps import AdminDep, PlatformDep, require_admin
from openmaas.api.errors import MANAGEMENT_ERRORS
from openmaas.api.json_body import JsonBodyRoute
from openmaas.api.text_guard import check_json, refuse_control_characters
from openmaas.domain.errors import BadRequest
from openmaas.domain.models import MAX_VERSION, ModelRef, Signature, Task
from openmaas.registry import VersionUpload

router = APIRouter(
    responses=MANAGEMENT_ERRORS,
    route_class=JsonBodyRoute,
    prefix="/models",
    tags=["registry"],
    dependencies=[Depends(require_admin)],
)

_CHUNK = 1024 * 1024


class ModelCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=128)
    description: str = ""
    task: Task = Task.OTHER
    tags: list[str] = Field(default_factory=list)


class ModelUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    description: str | None = None
    task: Task | None = None
    tags: list[str] | None = None


class AliasSet(BaseModel):
    model_config = ConfigDict(extra="forbid")
    version: int = Field(ge=1, le=MAX_VERSION)


def _json_field(name: str, raw: str | None) -> Any:
    if raw is None or raw == "":
        return None
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise BadRequest(f"form field {name!r} is not valid JSON", code="invalid_json") from exc
    check_json(value, name)
    return value


async def _chunks(upload: UploadFile) -> AsyncIterator[bytes]:
    while chunk := await upload.read(_CHUNK):
        yield chunk


@router.get("")
async def list_models(
    platform: PlatformDep,
    task: Task | None = None,
    tag: str | None = None,
    q: str | None = Query(None, description="Part of the model name"),
    limit: int = Query(100, ge=1, le=1000),
    offset: int = Query(0, ge=0, le=10**9),
) -> dict[str, Any]:
    models, total = await platform.registry.list_models(
        task=task.value if task else None, tag=tag, search=q, limit=limit, offset=offset
    )
    return {
        "models": [m.to_dict() for m in models],
        "total": total,
        "limit": limit,
        "offset": offset,
    }


@router.get("/stats")
async def model_stats(platform: PlatformDep) -> dict[str, Any]:
    return await platform.registry.stats()


@router.get("/resolve/{ref:path}")
async def resolve_reference(ref: str, platform: PlatformDep) -> dict[str, Any]:
    """The version that ``name``, ``name/3`` or ``name@alias`` names."""
    return (await platform.registry.resolve(ModelRef.parse(ref))).to_dict()


@router.post("", status_code=201)
async def create_model(body: ModelCreate, platform: PlatformDep, admin: AdminDep) -> dict[str, Any]:
    model = await platform.registry.create_model(
        name=body.name,
        description=body.description,
        task=body.task.value,
        tags=body.tags,
        owner=admin.username,
    )
    return model.to_dict()


@router.get("/{name}")
async def get_model(name: str, platform: PlatformDep) -> dict[str, Any]:
    model = await platform.registry.get_model(name)
    versions = await platform.registry.list_versions(name)
    return {**model.to_dict(), "versions": [v.to_dict() for v in versions]}


@router.patch("/{name}")
async def update_model(name: str, body: ModelUpdate, platform: PlatformDep) -> dict[str, Any]:
    changes = body.model_dump(exclude_unset=True, exclude_none=True, mode="json")
    return (await platform.registry.update_model(name, changes)).to_dict()


@router.delete("/{name}", status_code=204)
async def delete_model(name: str, platform: PlatformDep) -> Response:
    await platform.registry.delete_model(name)
    return Response(status_code=204)


@router.post("/{name}/versions", status_code=201)
async def register_version(
    name: str,
    platform: PlatformDep,
    artifact: UploadFile = File(..., description="The model file (.skops, .onnx, .py, ...)"),
    runtime: str | None = Form(None, description="Runtime name; guessed from the file name"),
    description: str = Form(""),
    metrics: str | None = Form(None, description="JSON object of metric name to number"),
    signature: str | None = Form(None, description="JSON {inputs: [...], outputs: [...]}"),
    options: str | None = Form(None, description="JSON object of runtime options"),
    allow_code: bool = Form(False, description="Allow formats that run code (pickle, Python)"),
) -> dict[str, Any]:
    # Multipart bodies pass the control character guard unread: their text fields here.
    for field, text in (("filename", artifact.filename), ("runtime", runtime)):
        refuse_control_characters(text or "", field, multiline=False)
    refuse_control_characters(description, "description")
    options_value = _json_field("options", options)
    if options_value is not None and not isinstance(options_value, dict):
        raise BadRequest("form field 'options' is a JSON object", code="invalid_options")
    upload = VersionUpload(
        filename=artifact.filename or "",
        runtime=runtime or None,
        description=description,
        metrics=_json_field("metrics", metrics),
        signature=Signature.from_dict(_json_field("signature", signature)),
        allow_code=allow_code,
        options=options_value,
    )
    version = await platform.registry.register_version(name, _chunks(artifact), upload)
    return version.to_dict()


@router.get("/{name}/versions")
async def list_versions(name: str, platform: PlatformDep) -> dict[str, Any]:
    versions = await platform.registry.list_versions(name)
    return {"model_name": name, "versions": [v.to_dict() for v in versions]}


@router.get("/{name}/versions/{version}")
async def get_version(name: str, version: str, platform: PlatformDep) -> dict[str, Any]:
    """``version`` is a number, an alias or ``latest``."""
    return (await platform.registry.resolve(ModelRef.parse(name, version))).to_dict()


@router.delete("/{name}/versions/{version}", status_code=204)
async def delete_version(name: str, version: str, platform: PlatformDep) -> Response:
    await platform.registry.delete_version(ModelRef.parse(name, version))
    return Response(status_code=204)


@router.put("/{name}/aliases/{alias}")
async def set_alias(name: str, alias: str, body: AliasSet, platform: PlatformDep) -> dict[str, Any]:
    version = await platform.registry.set_alias(name, alias, body.version)
    # This process serves ``name@alias`` from its table: it must not wait for the next sync.
    await platform.serving.refresh()
    return version.to_dict()


@router.delete("/{name}/aliases/{alias}", status_code=204)
async def delete_alias(name: str, alias: str, platform: PlatformDep) -> Response:
    await platform.registry.delete_alias(name, alias)
    await platform.serving.refresh()
    return Response(status_code=204)
