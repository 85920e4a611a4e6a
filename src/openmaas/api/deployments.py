"""Deployment management (admin only): deploy, undeploy and list at run time."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict, Field

from openmaas.api.deps import PlatformDep, require_admin
from openmaas.api.errors import MANAGEMENT_ERRORS
from openmaas.api.json_body import JsonBodyRoute
from openmaas.domain.deployments import DeploymentConfig
from openmaas.domain.errors import NotFound, Unprocessable

router = APIRouter(
    responses=MANAGEMENT_ERRORS,
    route_class=JsonBodyRoute,
    prefix="/deployments",
    tags=["deployments"],
    dependencies=[Depends(require_admin)],
)


class DeployRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())
    model_name: str = Field(min_length=1, max_length=128)
    version: int | str | None = Field(None, description="A number, an alias or 'latest'")
    endpoint_name: str | None = Field(None, description="Defaults to <model>-v<version>")
    max_batch_size: int = 1
    max_wait_ms: float = 2.0
    max_concurrency: int = 64
    timeout_s: float = 30.0
    warm: bool = Field(True, description="Load now rather than on first request")
    wait: bool = Field(True, description="Answer once loaded (else 202 while deploying)")
    options: dict[str, Any] = Field(default_factory=dict)
    max_prompt_characters: int | None = Field(
        None, ge=1, le=2**31 - 1, description="Longest prompt in characters (language models)"
    )
    max_prompt_tokens: int | None = Field(
        None, ge=1, le=2**31 - 1, description="Most prompt tokens (language models)"
    )
    max_rows: int | None = Field(
        None, ge=1, le=2**31 - 1, description="Most rows in one tensor request"
    )
    engine: Literal["local", "ray"] = Field(
        "local", description="local: in the gateway; ray: on the Ray Serve cluster"
    )
    num_replicas: int | None = Field(
        None, ge=1, le=1024, description="Ray: a fixed number of replicas"
    )
    autoscaling: dict[str, Any] | None = Field(
        None, description="Ray: min_replicas, max_replicas, target_ongoing_requests"
    )
    ray_actor_options: dict[str, Any] | None = Field(
        None, description="Ray: num_cpus and memory (bytes) each replica reserves"
    )


class UndeployRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())
    endpoint_name: str | None = None
    model_name: str | None = None
    version: int | str | None = None


@router.post("/deploy", status_code=201)
async def deploy(body: DeployRequest, platform: PlatformDep) -> dict[str, Any]:
    config = DeploymentConfig(
        max_batch_size=body.max_batch_size,
        max_wait_ms=body.max_wait_ms,
        max_concurrency=body.max_concurrency,
        timeout_s=body.timeout_s,
        warm=body.warm,
        options=body.options,
        max_prompt_characters=body.max_prompt_characters,
        max_prompt_tokens=body.max_prompt_tokens,
        max_rows=body.max_rows,
        engine=body.engine,
        num_replicas=body.num_replicas,
        autoscaling=body.autoscaling,
        ray_actor_options=body.ray_actor_options,
    )
    deployment = await platform.serving.deploy(
        model_name=body.model_name,
        version=body.version,
        endpoint_name=body.endpoint_name,
        config=config,
        wait=body.wait,
    )
    if deployment["status"] == "failed":
        await platform.serving.undeploy(endpoint_name=deployment["endpoint_name"])
        raise Unprocessable(
            f"the model could not be loaded: {deployment['error']}",
            code="deployment_failed",
            details={"deployment": deployment},
        )
    return deployment


@router.post("/undeploy")
async def undeploy(body: UndeployRequest, platform: PlatformDep) -> dict[str, Any]:
    undeployed = await platform.serving.undeploy(
        endpoint_name=body.endpoint_name, model_name=body.model_name, version=body.version
    )
    return {"undeployed": undeployed}


@router.get("")
async def list_deployments(
    platform: PlatformDep,
    status: str | None = Query(None, description="deploying, active, failed or undeployed"),
    model_name: str | None = None,
) -> dict[str, Any]:
    items = await platform.serving.list(include_undeployed=status in (None, "undeployed"))
    if status:
        items = [item for item in items if item["status"] == status]
    if model_name:
        items = [item for item in items if item["model_name"] == model_name]
    return {"deployments": items}


@router.get("/{endpoint_name}")
async def get_deployment(endpoint_name: str, platform: PlatformDep) -> dict[str, Any]:
    endpoint = platform.serving.table.by_name.get(endpoint_name)
    if endpoint is None:
        raise NotFound(f"no endpoint {endpoint_name!r} is deployed", code="endpoint_not_found")
    return await platform.serving.describe(endpoint)
