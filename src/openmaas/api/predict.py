"""``POST /predict`` (model named in the body) and ``POST /predict/{endpoint}`` (seed 004)."""

from __future__ import annotations

from typing import Any

import numpy as np
from fastapi import APIRouter, Request, Response

from openmaas.api.admission import Call, dispatch
from openmaas.api.deps import PlatformDep
from openmaas.api.errors import INFERENCE_ERRORS
from openmaas.api.wire import json_response, read_json
from openmaas.domain.errors import BadRequest
from openmaas.domain.models import version_selector
from openmaas.runtimes import Tensors
from openmaas.serving.endpoints import Endpoint
from openmaas.serving.tensors import conform

router = APIRouter(tags=["inference"], responses=INFERENCE_ERRORS)


def _array(value: Any, name: str) -> np.ndarray:
    try:
        array = np.asarray(value)
    except (ValueError, TypeError) as exc:
        raise BadRequest(
            f"input {name!r} is not a rectangular array", code="invalid_input"
        ) from exc
    if array.dtype.kind == "O" or array.size == 0:
        raise BadRequest(
            f"input {name!r} must be a number, a list of numbers or a list of equal-length rows",
            code="invalid_input",
        )
    return array


def tensors_from_payload(endpoint: Endpoint, payload: Any) -> tuple[Tensors, bool]:
    """Request tensors and whether the caller sent one unbatched example."""
    specs = endpoint.version.signature.inputs
    if isinstance(payload, dict) and (len(specs) != 1 or set(payload) <= {s.name for s in specs}):
        raw = {str(name): _array(value, str(name)) for name, value in payload.items()}
    else:
        raw = {specs[0].name if specs else "input": _array(payload, "input")}
    return conform(endpoint.version.signature, raw, add_batch_dim=True), _is_single(specs, raw)


def _is_single(specs: Any, raw: Tensors) -> bool:
    """One example without its batch dimension: a scalar, or a flat row of features.

    A flat list for a one-feature model is a batch of values (``[1, 2, 3]`` → three).
    """
    if len(specs) != 1:
        return False
    shape = specs[0].shape
    value = next(iter(raw.values()))
    if value.ndim == 0:
        return True
    one_feature_column = len(shape) == 2 and shape[1] == 1
    return value.ndim == len(shape) - 1 and not one_feature_column


def plain(value: Any) -> Any:
    """A tensor, or one row of it, as JSON values (BYTES as text)."""
    array = np.asarray(value)
    if array.dtype.kind == "S":
        array = np.char.decode(array, "utf-8", "replace")
    elif array.dtype.kind == "O":
        array = np.vectorize(_text, otypes=[object])(array) if array.size else array
    return array.tolist()


def _text(item: Any) -> Any:
    return item.decode("utf-8", "replace") if isinstance(item, bytes) else item


def _answer(endpoint: Endpoint, outputs: Tensors, single: bool) -> dict[str, Any]:
    values = {name: plain(value[0] if single else value) for name, value in outputs.items()}
    first = next(iter(values.values()))
    return {
        "model_name": endpoint.deployment.model_name,
        "version": endpoint.deployment.version,
        "endpoint": endpoint.name,
        "prediction": first,
        "outputs": values,
    }


async def _predict(platform: Any, endpoint: Endpoint, payload: Any, protocol: str) -> Response:
    if "input" not in payload:
        raise BadRequest("the body needs an 'input'", code="missing_input")
    inputs, single = tensors_from_payload(endpoint, payload["input"])
    platform.serving.input_limits.check_rows(endpoint.deployment.config, inputs)
    outputs = await platform.serving.dataplane.infer(endpoint, inputs, protocol=protocol)
    return json_response(_answer(endpoint, outputs, single))


@router.post("/predict")
async def predict(request: Request, platform: PlatformDep) -> Response:
    """Universal endpoint: ``{"model_name", "version"?, "input"}`` → ``{"prediction"}``."""
    payload = await read_json(request)
    if not isinstance(payload, dict) or not isinstance(payload.get("model_name"), str):
        raise BadRequest("the body is an object with a 'model_name' string", code="invalid_request")
    version = payload.get("version")
    if (version is not None and not isinstance(version, int | str)) or isinstance(version, bool):
        raise BadRequest("'version' is a number or an alias", code="invalid_version")
    selector = version_selector(version) if version is not None else None
    if selector == "latest":
        selector = None

    table = platform.serving.table
    name = payload["model_name"]

    def lookup() -> Endpoint:
        return table.for_model(name, selector)

    async def run(call: Call, endpoint: Endpoint) -> Response:
        return await _predict(platform, endpoint, payload, "predict")

    # A version names one of a model's versions, never a route.
    return await dispatch(
        platform, request, name, "predict", lookup, run, model=name, routable=selector is None
    )


@router.post("/predict/{endpoint_name}")
async def predict_endpoint(endpoint_name: str, request: Request, platform: PlatformDep) -> Response:
    """One deployment's endpoint: ``{"input": ...}`` → ``{"prediction": ...}``."""
    payload = await read_json(request)
    if not isinstance(payload, dict):
        raise BadRequest("the body is an object with an 'input'", code="invalid_request")
    table = platform.serving.table

    async def run(call: Call, endpoint: Endpoint) -> Response:
        return await _predict(platform, endpoint, payload, "predict")

    return await dispatch(
        platform, request, endpoint_name, "predict", lambda: table.endpoint(endpoint_name), run
    )
