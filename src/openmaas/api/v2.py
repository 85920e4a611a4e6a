"""The Open Inference Protocol (KServe V2): every deployed model behind one route."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse

from openmaas import __version__
from openmaas.access import credential_from_headers
from openmaas.api.admission import Call, dispatch, reserve_tokens
from openmaas.api.deps import PlatformDep, require_admin
from openmaas.api.errors import INFERENCE_ERRORS, MANAGEMENT_ERRORS
from openmaas.api.v2_codec import HEADER_LENGTH, InferRequest, encode_output, parse_request
from openmaas.api.wire import json_response
from openmaas.domain.errors import BadRequest, NotFound, ServiceUnavailable
from openmaas.domain.models import version_selector
from openmaas.platform import Platform
from openmaas.runtimes import Tensors
from openmaas.runtimes.language import LanguageRuntime
from openmaas.serving.endpoints import Endpoint
from openmaas.serving.language_tensors import infer_text, speaks_text
from openmaas.serving.tensors import conform

router = APIRouter(prefix="/v2", tags=["open inference protocol"], responses=INFERENCE_ERRORS)
repository = APIRouter(
    prefix="/v2/repository",
    tags=["open inference protocol"],
    dependencies=[Depends(require_admin)],
    responses=MANAGEMENT_ERRORS,
)


def _selector(version: str | None) -> int | str | None:
    if version is None:
        return None
    return version_selector(version)


def _endpoint(platform: Platform, name: str, version: str | None) -> Endpoint:
    return platform.serving.table.resolve(name, _selector(version))


@router.get("")
@router.get("/", include_in_schema=False)
async def server_metadata() -> dict[str, Any]:
    return {
        "name": "openmaas",
        "version": __version__,
        "extensions": ["model_repository", "binary_tensor_data"],
    }


@router.get("/health/live")
async def server_live() -> dict[str, bool]:
    return {"live": True}


@router.get("/health/ready")
async def server_ready(platform: PlatformDep) -> JSONResponse:
    """Ready as ``/readyz`` is: 503 (``{"ready": false}``) until the database answers with
    its schema at head and the start-up loads are done, and while stopping."""
    readiness = await platform.health.readiness()
    return JSONResponse(
        {"ready": readiness.ready, "status": readiness.status, "checks": readiness.checks},
        status_code=200 if readiness.ready else 503,
    )


def _known_caller(platform: Platform, request: Request) -> None:
    """401 before any lookup: an unknown and a deployed model look the same to a stranger."""
    platform.access.identify_key(credential_from_headers(request.headers))


async def _metadata(platform: Platform, request: Request, name: str, version: str | None) -> Any:
    _known_caller(platform, request)
    endpoint = _endpoint(platform, name, version)
    await platform.gate.admit(request.headers, endpoint.deployment.model_name)
    versions = platform.serving.table.by_model.get(endpoint.deployment.model_name, {})
    signature = endpoint.version.signature
    return {
        "name": name,
        "versions": [str(v) for v in sorted(versions)],
        "platform": endpoint.deployment.runtime,
        "inputs": [spec.to_dict() for spec in signature.inputs],
        "outputs": [spec.to_dict() for spec in signature.outputs],
    }


@router.get("/models/{name}")
async def model_metadata(name: str, request: Request, platform: PlatformDep) -> Any:
    return await _metadata(platform, request, name, None)


@router.get("/models/{name}/versions/{version}")
async def version_metadata(name: str, version: str, request: Request, platform: PlatformDep) -> Any:
    return await _metadata(platform, request, name, version)


async def _ready(platform: Platform, request: Request, name: str, version: str | None) -> Any:
    _known_caller(platform, request)
    endpoint = _endpoint(platform, name, version)
    await platform.gate.admit(request.headers, endpoint.deployment.model_name)
    state, reason = platform.serving.model_state(endpoint)
    if state not in ("loaded", "available"):
        because = f": {reason}" if reason else ""
        raise ServiceUnavailable(
            f"model {name!r} is not ready here ({state}{because})",
            code="model_not_ready",
            details={"state": state},
        )
    return {"name": name, "ready": True, "state": state}


@router.get("/models/{name}/ready")
async def model_ready(name: str, request: Request, platform: PlatformDep) -> Any:
    return await _ready(platform, request, name, None)


@router.get("/models/{name}/versions/{version}/ready")
async def version_ready(name: str, version: str, request: Request, platform: PlatformDep) -> Any:
    return await _ready(platform, request, name, version)


async def infer(platform: Platform, request: Request, name: str, version: str | None) -> Response:
    """One V2 inference; called by the routes below and by the hot path (``hot_path.py``)."""
    body = await request.body()
    parsed = parse_request(body, request.headers.get(HEADER_LENGTH))

    async def run(call: Call, endpoint: Endpoint) -> Response:
        return await _run(platform, call, endpoint, parsed, name)

    return await dispatch(
        platform,
        request,
        name,
        "v2",
        lambda: _endpoint(platform, name, version),
        run,
        routable=version is None,
    )


async def run_tensors(
    platform: Platform,
    call: Call,
    endpoint: Endpoint,
    inputs: Tensors,
    outputs: list[str] | None,
    parameters: Mapping[str, Any],
    *,
    protocol: str,
) -> Tensors:
    """Named tensors in, named tensors out, from a tensor model or a language model.

    A language model's tokens are metered like those of its own API.
    """
    known_outputs = {spec.name for spec in endpoint.version.signature.outputs}
    for output in outputs or ():
        if known_outputs and output not in known_outputs:
            raise BadRequest(
                f"unknown output {output!r}; the model has {sorted(known_outputs)}",
                code="unknown_output",
            )
    platform.serving.input_limits.check_rows(endpoint.deployment.config, inputs)
    inputs = conform(endpoint.version.signature, inputs)
    if speaks_text(endpoint):

        async def reserve(
            runtime: LanguageRuntime, body: dict[str, Any], choices: int, embedding: bool
        ) -> int | None:
            asked = body.get("max_tokens")
            return await reserve_tokens(
                platform,
                call,
                runtime,
                body,
                choices=choices,
                asked=asked if isinstance(asked, int) else None,
                embedding=embedding,
            )

        text = await infer_text(
            platform.serving.dataplane,
            endpoint,
            inputs,
            parameters,
            protocol=protocol,
            reserve=reserve,
        )
        call.input_tokens, call.output_tokens = text.input_tokens, text.output_tokens
        return text.outputs
    return await platform.serving.dataplane.infer(endpoint, inputs, outputs, protocol=protocol)


async def _run(
    platform: Platform, call: Call, endpoint: Endpoint, parsed: InferRequest, name: str
) -> Response:
    result = await run_tensors(
        platform,
        call,
        endpoint,
        parsed.inputs,
        parsed.outputs,
        parsed.parameters,
        protocol="v2",
    )
    tensors, blobs = [], []
    for output_name, value in result.items():
        tensor, blob = encode_output(output_name, value, parsed.binary(output_name))
        tensors.append(tensor)
        blobs.append(blob)
    answer: dict[str, Any] = {
        "model_name": name,
        "model_version": str(endpoint.deployment.version),
        "outputs": tensors,
    }
    if parsed.id is not None:
        answer["id"] = parsed.id
    if parsed.parameters:
        answer["parameters"] = parsed.parameters
    binary_part = b"".join(blobs)
    if not binary_part:
        return json_response(answer)
    return _binary_response(answer, binary_part)


def _binary_response(answer: dict[str, Any], binary_part: bytes) -> Response:
    import orjson

    header = orjson.dumps(answer)
    return Response(
        header + binary_part,
        media_type="application/octet-stream",
        headers={"Inference-Header-Content-Length": str(len(header))},
    )


@router.post("/models/{name}/infer")
async def model_infer(name: str, request: Request, platform: PlatformDep) -> Response:
    return await infer(platform, request, name, None)


@router.post("/models/{name}/versions/{version}/infer")
async def version_infer(
    name: str, version: str, request: Request, platform: PlatformDep
) -> Response:
    return await infer(platform, request, name, version)


@repository.post("/index")
async def repository_index(platform: PlatformDep) -> list[dict[str, Any]]:
    models, _ = await platform.registry.list_models(limit=100_000)
    deployed = platform.serving.table.by_model
    entries = []
    for model in models:
        versions = deployed.get(model.name, {})
        entries.append(
            {
                "name": model.name,
                "version": str(max(versions)) if versions else str(model.latest_version or ""),
                "state": "READY" if versions else "UNAVAILABLE",
                "reason": "" if versions else "not deployed",
            }
        )
    return entries


@repository.post("/models/{name}/load")
async def repository_load(name: str, platform: PlatformDep) -> dict[str, Any]:
    if platform.serving.table.by_model.get(name):
        return {"name": name, "state": "READY"}
    from openmaas.domain.deployments import DeploymentConfig

    deployment = await platform.serving.deploy(
        model_name=name, version=None, endpoint_name=None, config=DeploymentConfig()
    )
    if deployment["status"] == "failed":
        await platform.serving.undeploy(endpoint_name=deployment["endpoint_name"])
        raise ServiceUnavailable(
            f"loading {name!r} failed: {deployment['error']}", code="load_failed"
        )
    return {"name": name, "state": "READY"}


@repository.post("/models/{name}/unload")
async def repository_unload(name: str, platform: PlatformDep) -> dict[str, Any]:
    if not platform.serving.table.by_model.get(name):
        raise NotFound(f"model {name!r} is not loaded", code="model_not_deployed")
    await platform.serving.undeploy(model_name=name)
    return {"name": name, "state": "UNAVAILABLE"}
