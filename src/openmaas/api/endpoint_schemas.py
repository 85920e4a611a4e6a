"""Each deployment's request schemas, exactly as its routes read requests.

``/predict/{endpoint}`` takes ``{"input": ...}`` and fits it to the model's signature
(``serving.tensors.conform`` with one example allowed without its batch dimension): the
schema here accepts what that accepts and nothing it refuses, so a client that validates
against the published schema and a server that validates the request agree. Seed 004's
``{"input": 2.5}`` for a one-feature model is one example; ``[2.5, 3.0]`` is a batch.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from openmaas.api.errors import INFERENCE_ERRORS
from openmaas.domain.models import Signature, TensorSpec
from openmaas.serving.endpoints import Endpoint

_JSON_TYPES = {"BOOL": "boolean", "BYTES": "string"}
_NUMERIC: tuple[str, ...] = ("FP16", "FP32", "FP64", "INT8", "INT16", "INT32", "INT64")
_NUMERIC += ("UINT8", "UINT16", "UINT32", "UINT64")


def scalar_schema(datatype: str) -> dict[str, Any]:
    """One value of a datatype as JSON, with the integer types' ranges."""
    if datatype in _JSON_TYPES:
        return {"type": _JSON_TYPES[datatype]}
    if datatype.startswith("FP"):
        return {"type": "number"}
    limits = np.iinfo(np.dtype(datatype.lower()))
    return {"type": "integer", "minimum": int(limits.min), "maximum": int(limits.max)}


def _nested(scalar: dict[str, Any], dims: tuple[int, ...]) -> dict[str, Any]:
    """Arrays nested ``len(dims)`` deep around ``scalar``; -1 is any size (never empty)."""
    schema = scalar
    for size in reversed(dims):
        schema = {"type": "array", "items": schema, "minItems": 1}
        if size > 0:
            schema.update(minItems=size, maxItems=size)
    return schema


def _fits_one(size: int) -> bool:
    return size in (-1, 1)


def value_schema(spec: TensorSpec) -> dict[str, Any]:
    """What ``/predict`` takes for one input: a batch, one example, a scalar, a column."""
    scalar = scalar_schema(spec.datatype)
    shape = spec.shape
    forms: list[dict[str, Any]] = []
    if shape:
        forms.append(_nested(scalar, shape))  # a batch, as the model takes it
    column = len(shape) == 2 and shape[1] == 1
    if column:
        # A flat list for a one-feature model is a column: one value a row.
        forms.append(_nested(scalar, (shape[0],)))
    elif len(shape) >= 2 and _fits_one(shape[0]):
        forms.append(_nested(scalar, shape[1:]))  # one example, without the batch dimension
    if (len(shape) == 1 and _fits_one(shape[0])) or (
        len(shape) == 2 and _fits_one(shape[0]) and _fits_one(shape[1])
    ):
        forms.append(scalar)  # a single value: one example of one feature
    described = f"{spec.datatype} {list(shape)} (-1: any size): a batch or one example"
    if not forms:
        return {"description": described, "not": {}}
    if len(forms) == 1:
        return {**forms[0], "description": described}
    return {"description": described, "anyOf": forms}


def input_schema(signature: Signature) -> dict[str, Any]:
    """The value of ``"input"``: one tensor's value, or an object of every named input."""
    specs = signature.inputs
    if not specs:
        return {"description": "The model declares no signature: any value is passed on."}
    named = {
        "type": "object",
        "properties": {spec.name: value_schema(spec) for spec in specs},
        "required": [spec.name for spec in specs],
        "additionalProperties": False,
    }
    if len(specs) > 1:
        return named
    return {"anyOf": [value_schema(specs[0]), named]}


def predict_operation(endpoint: Endpoint) -> dict[str, Any]:
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
                            "properties": {"input": input_schema(endpoint.version.signature)},
                            "required": ["input"],
                        }
                    }
                },
            },
            "responses": _responses("The prediction, and every output of the model."),
            "security": [{"APIKey": []}],
        }
    }


def _v2_tensor(spec: TensorSpec, *, named: bool) -> dict[str, Any]:
    # V2 casts between numeric types (FP32 data for an FP64 model); text stays text.
    datatypes = list(_NUMERIC) if spec.datatype not in _JSON_TYPES else [spec.datatype]
    return {
        "type": "object",
        "description": f"{spec.name}: {spec.datatype} {list(spec.shape)}",
        "required": ["name", "shape", "datatype"],
        "properties": {
            "name": {"const": spec.name} if named else {"type": "string"},
            "shape": {"type": "array", "items": {"type": "integer", "minimum": 0}},
            "datatype": {"enum": datatypes},
            "data": {"type": "array"},
            "parameters": {"type": "object"},
        },
    }


def v2_operation(endpoint: Endpoint) -> dict[str, Any]:
    """The V2 infer request of one deployment: its input tensors, named and typed."""
    specs = endpoint.version.signature.inputs
    tensors: dict[str, Any] = {"type": "object"}
    if specs:
        named = len(specs) > 1
        items = [_v2_tensor(spec, named=named) for spec in specs]
        tensors = items[0] if len(items) == 1 else {"anyOf": items}
    deployment = endpoint.deployment
    return {
        "post": {
            "tags": ["endpoints"],
            "summary": f"{deployment.model_name} v{deployment.version} (Open Inference Protocol)",
            "operationId": f"v2_infer_{endpoint.name}",
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "required": ["inputs"],
                            "properties": {
                                "id": {"type": "string"},
                                "inputs": {"type": "array", "items": tensors, "minItems": 1},
                                "outputs": {"type": "array", "items": {"type": "object"}},
                                "parameters": {"type": "object"},
                            },
                        }
                    }
                },
            },
            "responses": _responses("The output tensors."),
            "security": [{"APIKey": []}],
        }
    }


def _responses(ok: str) -> dict[str, Any]:
    errors = {str(status): value for status, value in INFERENCE_ERRORS.items()}
    return {"200": {"description": ok}, **errors}
