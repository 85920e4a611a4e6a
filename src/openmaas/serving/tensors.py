"""Fitting request tensors to a model's signature: names, datatypes and shapes."""

from __future__ import annotations

import numpy as np

from openmaas.domain.errors import BadRequest
from openmaas.domain.models import Signature, TensorSpec
from openmaas.runtimes import Tensors
from openmaas.runtimes.tensors import DATATYPE_TO_DTYPE

_NUMERIC_KINDS = "iuf"


def conform(signature: Signature, inputs: Tensors, *, add_batch_dim: bool = False) -> Tensors:
    """Check and cast the inputs; ``add_batch_dim`` lets one unbatched row through."""
    if not inputs:
        raise BadRequest("the request has no inputs", code="missing_input")
    specs = signature.inputs
    if not specs:
        return inputs
    if len(specs) == 1 and len(inputs) == 1:
        # One input: its name is a formality (MLServer and KServe accept any).
        value = next(iter(inputs.values()))
        return {specs[0].name: _fit(specs[0], value, add_batch_dim)}
    expected = {spec.name for spec in specs}
    unknown = sorted(set(inputs) - expected)
    if unknown:
        raise BadRequest(
            f"unknown input {unknown[0]!r}; the model takes {sorted(expected)}",
            code="unknown_input",
        )
    missing = sorted(expected - set(inputs))
    if missing:
        raise BadRequest(f"missing input {missing[0]!r}", code="missing_input")
    return {spec.name: _fit(spec, inputs[spec.name], add_batch_dim) for spec in specs}


def _fit(spec: TensorSpec, value: np.ndarray, add_batch_dim: bool) -> np.ndarray:
    value = _cast(spec, value)
    shape = spec.shape
    if add_batch_dim:
        value = _batched(shape, value)
    if value.ndim != len(shape) or any(
        want != -1 and want != got for want, got in zip(shape, value.shape, strict=True)
    ):
        raise BadRequest(
            f"input {spec.name!r} has shape {list(value.shape)}; the model expects "
            f"{list(shape)} (-1 is any size)",
            code="shape_mismatch",
        )
    return value


def _batched(shape: tuple[int, ...], value: np.ndarray) -> np.ndarray:
    if value.ndim == 0:
        value = value.reshape((1,))
    if len(shape) == 2 and shape[1] == 1 and value.ndim == 1:
        return value.reshape((-1, 1))  # a flat list for a one-feature model is a column
    if value.ndim == len(shape) - 1:
        return value.reshape((1, *value.shape))
    return value


def _cast(spec: TensorSpec, value: np.ndarray) -> np.ndarray:
    wanted = DATATYPE_TO_DTYPE[spec.datatype]
    kind = value.dtype.kind
    if spec.datatype == "BYTES":
        if kind not in "OUS":
            raise _mismatch(spec, value)
        return value
    if spec.datatype == "BOOL":
        if kind != "b":
            raise _mismatch(spec, value)
        return value
    if kind not in _NUMERIC_KINDS:
        raise _mismatch(spec, value)
    if wanted.kind in "iu":
        # JSON has one number type: 3.0 is an integer, 3.5 is not; and a value that does
        # not fit the type is refused rather than wrapped around (-1 is no UINT8).
        if kind == "f" and not (
            bool(np.all(np.isfinite(value))) and bool(np.all(value == np.floor(value)))
        ):
            raise _mismatch(spec, value)
        limits = np.iinfo(wanted)
        if value.size and (value.min() < limits.min or value.max() > limits.max):
            raise BadRequest(
                f"input {spec.name!r} holds a value that does not fit {spec.datatype}",
                code="datatype_mismatch",
            )
    return value.astype(wanted, copy=False)


def _mismatch(spec: TensorSpec, value: np.ndarray) -> BadRequest:
    return BadRequest(
        f"input {spec.name!r} holds {value.dtype} values; the model expects {spec.datatype}",
        code="datatype_mismatch",
    )
