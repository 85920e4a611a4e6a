"""KServe's V1 protocol and seed 003's gateway path: adapters over the same data plane.

* ``POST /v1/models/{name}:predict``: KServe V1 (TensorFlow Serving's REST form),
  ``{"instances": [...]}`` (one row each) to ``{"predictions": [...]}``, or the
  columnar ``{"inputs": ...}`` to ``{"outputs": ...}``.
* ``POST /v1/models/{name}/infer``: the path seed 003 tests its routes with, taking the
  same two bodies; ``{"inputs": {"text": "Hello"}}`` names the inputs, one example each.
* ``GET /v1/models/{name}``: readiness (shared with OpenAI's retrieve-model, see
  ``openai_api``).

``{name}`` is a ModelRoute, an endpoint or a model, as everywhere; keys, plans, routing
(headers, query and path rules included) and metering are the same code as for every
other protocol. Errors take KServe's shape, ``{"error": "..."}``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from fastapi import APIRouter, Request, Response

from openmaas.api.admission import Call, dispatch
from openmaas.api.deps import PlatformDep
from openmaas.api.errors import INFERENCE_ERRORS
from openmaas.api.predict import plain, tensors_from_payload
from openmaas.api.v2 import run_tensors
from openmaas.api.wire import json_response, read_json
from openmaas.domain.errors import BadRequest
from openmaas.platform import Platform
from openmaas.runtimes import Tensors
from openmaas.serving.endpoints import Endpoint

router = APIRouter(prefix="/v1", tags=["kserve v1"], responses=INFERENCE_ERRORS)

PROTOCOL = "kserve_v1"
_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"description": "A malformed body or input that does not fit the model."},
    401: {"description": "No valid API key."},
    403: {"description": "The key's plan does not allow this model."},
    404: {"description": "No route, endpoint or model of that name is deployed."},
    413: {"description": "The body is too large."},
    422: {"description": "The model failed on this input."},
    429: {"description": "A limit of the key's plan is reached."},
    502: {"description": "An upstream server failed."},
    503: {"description": "The model cannot be loaded, or an upstream server is unavailable."},
    504: {"description": "The model did not answer in time."},
}
_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "description": "'instances' (a list, one row each) or 'inputs' (columnar)",
                    "properties": {
                        "instances": {"type": "array", "minItems": 1},
                        "inputs": {},
                        "parameters": {"type": "object"},
                    },
                },
                "examples": {
                    "seed 003": {"value": {"inputs": {"text": "Hello"}}},
                    "instances": {"value": {"instances": [[0.5, 0.8, 0.2]]}},
                },
            }
        },
    }
}


def _instances(endpoint: Endpoint, instances: Any) -> Tensors:
    """Rows to tensors: ``[row, row]``, or ``[{"a": .., "b": ..}, ...]`` for named inputs."""
    if not isinstance(instances, list) or not instances:
        raise BadRequest("'instances' is a non-empty list, one row each", code="invalid_request")
    specs = endpoint.version.signature.inputs
    if all(isinstance(row, dict) for row in instances):
        names = list(instances[0])
        if not names or any(list(row) != names for row in instances):
            raise BadRequest(
                "every instance names the same inputs, in the same order", code="invalid_request"
            )
        columns = {name: [row[name] for row in instances] for name in names}
    elif any(isinstance(row, dict) for row in instances):
        raise BadRequest("instances are all rows or all objects", code="invalid_request")
    else:
        columns = {specs[0].name if specs else "input": instances}
    tensors = {}
    for name, column in columns.items():
        try:
            value = np.asarray(column)
        except (ValueError, TypeError) as exc:
            raise BadRequest(
                f"input {name!r}: rows of unequal length", code="invalid_input"
            ) from exc
        if value.dtype.kind == "O":
            raise BadRequest(f"input {name!r}: rows of unequal length", code="invalid_input")
        spec = next((s for s in specs if s.name == name), specs[0] if len(specs) == 1 else None)
        if spec is not None and len(spec.shape) == 2 and spec.shape[1] == 1 and value.ndim == 1:
            value = value.reshape(-1, 1)  # one value a row for a one-feature model
        tensors[name] = value
    return tensors


def _named_formally(endpoint: Endpoint, given: Any) -> Any:
    """KServe and MLServer take any name for a model's only input: so do we here."""
    specs = endpoint.version.signature.inputs
    if (
        len(specs) == 1
        and isinstance(given, dict)
        and len(given) == 1
        and specs[0].name not in given
        and not isinstance(next(iter(given.values())), dict)
    ):
        return {specs[0].name: next(iter(given.values()))}
    return given


def _predictions(outputs: Tensors) -> list[Any]:
    if len(outputs) == 1:
        return list(plain(next(iter(outputs.values()))))
    columns = {name: plain(value) for name, value in outputs.items()}
    rows = len(next(iter(columns.values())))
    return [{name: column[row] for name, column in columns.items()} for row in range(rows)]


async def _serve(platform: Platform, request: Request, name: str) -> Response:
    payload = await read_json(request)
    if not isinstance(payload, dict) or ("instances" in payload) == ("inputs" in payload):
        raise BadRequest(
            "the body is an object with 'instances' (a list of rows) or 'inputs'",
            code="invalid_request",
        )
    parameters = payload.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise BadRequest("'parameters' is an object", code="invalid_request")

    async def run(call: Call, endpoint: Endpoint) -> Response:
        answer: dict[str, Any] = {
            "model_name": endpoint.deployment.model_name,
            "model_version": str(endpoint.deployment.version),
        }
        if "instances" in payload:
            inputs = _instances(endpoint, payload["instances"])
            outputs = await run_tensors(
                platform, call, endpoint, inputs, None, parameters, protocol=PROTOCOL
            )
            answer["predictions"] = _predictions(outputs)
            return json_response(answer)
        given = _named_formally(endpoint, payload["inputs"])
        inputs, single = tensors_from_payload(endpoint, given)
        outputs = await run_tensors(
            platform, call, endpoint, inputs, None, parameters, protocol=PROTOCOL
        )
        values = {key: plain(value[0] if single else value) for key, value in outputs.items()}
        answer["outputs"] = next(iter(values.values())) if len(values) == 1 else values
        return json_response(answer)

    def lookup() -> Endpoint:
        return platform.serving.table.resolve(name)

    return await dispatch(platform, request, name, PROTOCOL, lookup, run, by_path=True)


async def predict(platform: Platform, request: Request, name: str) -> Response:
    """``:predict``; called by the route below and by the hot path (``hot_path.py``)."""
    return await _serve(platform, request, name)


async def infer(platform: Platform, request: Request, name: str) -> Response:
    """Seed 003's ``/infer``; called by the route below and by the hot path."""
    return await _serve(platform, request, name)


@router.post("/models/{name}:predict", responses=_ERRORS, openapi_extra=_BODY)
async def model_predict(name: str, request: Request, platform: PlatformDep) -> Response:
    """KServe V1: ``{"instances": [...]}`` → ``{"predictions": [...]}``."""
    return await predict(platform, request, name)


@router.post("/models/{name}/infer", responses=_ERRORS, openapi_extra=_BODY)
async def model_infer(name: str, request: Request, platform: PlatformDep) -> Response:
    """Seed 003's gateway path: ``{"inputs": {...}}`` or ``{"instances": [...]}``."""
    return await infer(platform, request, name)
