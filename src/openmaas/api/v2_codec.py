"""Open Inference Protocol tensors: JSON (nested or flat data) and the binary extension."""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

from openmaas.domain.errors import BadRequest
from openmaas.domain.models import DATATYPES
from openmaas.runtimes import Tensors
from openmaas.runtimes.tensors import DATATYPE_TO_DTYPE, datatype_of

HEADER_LENGTH = "inference-header-content-length"
# NumPy holds at most 64 dimensions, and no tensor is larger than 2**63 values.
MAX_RANK = 32
MAX_DIMENSION = 2**62
_KINDS = {"BOOL": "b", "BYTES": "OUS"}


@dataclass
class InferRequest:
    id: str | None
    parameters: dict[str, Any]
    inputs: Tensors
    outputs: list[str] | None
    binary_outputs: set[str] = field(default_factory=set)
    json_outputs: set[str] = field(default_factory=set)
    """Outputs whose own ``binary_data: false`` overrides ``binary_data_output: true``."""
    all_binary: bool = False

    def binary(self, output: str) -> bool:
        """Whether the binary-data extension carries this output."""
        if output in self.binary_outputs:
            return True
        return self.all_binary and output not in self.json_outputs


def _fail(message: str, code: str = "invalid_tensor") -> BadRequest:
    return BadRequest(message, code=code)


def parse_request(body: bytes, header_length: str | None) -> InferRequest:
    binary = b""
    if header_length is not None:
        try:
            size = int(header_length)
        except ValueError as exc:
            raise _fail("Inference-Header-Content-Length is not a number") from exc
        if not 0 <= size <= len(body):
            raise _fail("Inference-Header-Content-Length is past the end of the body")
        body, binary = body[:size], body[size:]
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(
            f"the body is not valid JSON (line {exc.lineno}, column {exc.colno})",
            code="invalid_json",
        ) from exc
    if not isinstance(document, dict):
        raise _fail("the body is an inference request object", "invalid_request")
    raw_inputs = document.get("inputs")
    if not isinstance(raw_inputs, list) or not raw_inputs:
        raise _fail("'inputs' is a non-empty list of tensors", "invalid_request")
    parameters = document.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise _fail("'parameters' is an object", "invalid_request")
    offset = 0
    inputs: Tensors = {}
    for raw in raw_inputs:
        name, array, offset = _decode_input(raw, binary, offset)
        if name in inputs:
            raise _fail(f"input {name!r} appears twice")
        inputs[name] = array
    if offset != len(binary):
        raise _fail("the binary data does not match the inputs' binary_data_size")
    request_id = document.get("id")
    outputs, binary_outputs, json_outputs = _requested_outputs(document.get("outputs"))
    return InferRequest(
        id=str(request_id) if request_id is not None else None,
        parameters=parameters,
        inputs=inputs,
        outputs=outputs,
        binary_outputs=binary_outputs,
        json_outputs=json_outputs,
        all_binary=bool(parameters.get("binary_data_output", False)),
    )


def _requested_outputs(raw: Any) -> tuple[list[str] | None, set[str], set[str]]:
    """The outputs asked for, those asked in binary and those asked in JSON explicitly."""
    if raw is None:
        return None, set(), set()
    if not isinstance(raw, list) or not all(isinstance(o, dict) and "name" in o for o in raw):
        raise _fail("'outputs' is a list of objects with a 'name'", "invalid_request")
    names = [str(o["name"]) for o in raw]
    binary: set[str] = set()
    plain: set[str] = set()
    for output in raw:
        parameters = output.get("parameters")
        if isinstance(parameters, dict) and "binary_data" in parameters:
            chosen = binary if parameters["binary_data"] else plain
            chosen.add(str(output["name"]))
    return names, binary, plain


def _decode_input(raw: Any, binary: bytes, offset: int) -> tuple[str, np.ndarray, int]:
    if not isinstance(raw, dict):
        raise _fail("each input is an object with name, shape, datatype and data")
    name, shape, datatype = raw.get("name"), raw.get("shape"), raw.get("datatype")
    if not isinstance(name, str) or not name:
        raise _fail("an input has no name")
    if (
        not isinstance(shape, list)
        or len(shape) > MAX_RANK
        or not all(
            isinstance(d, int) and not isinstance(d, bool) and 0 <= d <= MAX_DIMENSION
            for d in shape
        )
    ):
        raise _fail(f"input {name!r}: shape is a list of at most {MAX_RANK} non-negative integers")
    if datatype not in DATATYPES:
        raise _fail(f"input {name!r}: unknown datatype {datatype!r}", "invalid_datatype")
    count = math.prod(shape)
    parameters = raw.get("parameters") or {}
    size = parameters.get("binary_data_size") if isinstance(parameters, dict) else None
    if size is not None:
        if not isinstance(size, int) or size < 0 or offset + size > len(binary):
            raise _fail(f"input {name!r}: binary_data_size is past the end of the body")
        flat = _from_binary(name, datatype, binary[offset : offset + size], count)
        offset += size
    else:
        if "data" not in raw:
            raise _fail(f"input {name!r} has no data")
        flat = _from_json(name, datatype, raw["data"])
    if flat.size != count:
        raise _fail(
            f"input {name!r}: {flat.size} values do not fill shape {shape}", "shape_mismatch"
        )
    try:
        return name, flat.reshape(shape), offset
    except (ValueError, OverflowError) as exc:  # an empty tensor with a dimension too large
        raise _fail(
            f"input {name!r}: shape {shape} cannot hold a tensor", "shape_mismatch"
        ) from exc


def _from_json(name: str, datatype: str, data: Any) -> np.ndarray:
    if datatype == "BYTES":
        try:
            flat = np.asarray(data, dtype=object).reshape(-1)
        except (ValueError, TypeError) as exc:
            raise _fail(f"input {name!r}: data is not a rectangular array") from exc
        if not all(isinstance(v, str | bytes) for v in flat):
            raise _fail(f"input {name!r}: BYTES data are strings", "datatype_mismatch")
        return flat
    try:
        values = np.asarray(data)
    except (ValueError, TypeError) as exc:
        raise _fail(f"input {name!r}: data is not a rectangular array") from exc
    kind = values.dtype.kind
    if kind in "fO" and datatype in _EXACT and values.size:
        values = _exact_integers(name, datatype, data)
        kind = values.dtype.kind
    ok = kind in _KINDS.get(datatype, "iuf" if datatype.startswith("FP") else "iu")
    if values.size and not ok:
        raise _fail(f"input {name!r}: the data are not {datatype} values", "datatype_mismatch")
    dtype = DATATYPE_TO_DTYPE[datatype]
    if values.size and dtype.kind in "iu" and values.dtype.kind in "iu":
        limits = np.iinfo(dtype)
        if values.min() < limits.min or values.max() > limits.max:
            raise _fail(f"input {name!r}: a value does not fit {datatype}", "datatype_mismatch")
    try:
        return values.astype(dtype).reshape(-1)
    except (OverflowError, ValueError) as exc:
        raise _fail(
            f"input {name!r}: a value does not fit {datatype}", "datatype_mismatch"
        ) from exc


_EXACT = frozenset({"INT64", "UINT64"})


def _exact_integers(name: str, datatype: str, data: Any) -> np.ndarray:
    """64-bit integers read as the Python integers JSON gave, never through floats.

    NumPy turns a list holding a number past 2**63 (``18446744073709551615``) into
    float64, which cannot hold it; each value is checked and converted exactly instead.
    """
    try:
        objects = np.asarray(data, dtype=object)
    except (ValueError, TypeError) as exc:
        raise _fail(f"input {name!r}: data is not a rectangular array") from exc
    flat = objects.reshape(-1).tolist()
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in flat):
        # orjson reads integers past 2**64 as floats: too large, not fractional.
        if all(isinstance(v, int | float) and float(v).is_integer() for v in flat):
            raise _fail(f"input {name!r}: a value does not fit {datatype}", "datatype_mismatch")
        raise _fail(f"input {name!r}: the data are not {datatype} values", "datatype_mismatch")
    try:
        return np.array(flat, dtype=DATATYPE_TO_DTYPE[datatype]).reshape(objects.shape)
    except OverflowError as exc:
        raise _fail(
            f"input {name!r}: a value does not fit {datatype}", "datatype_mismatch"
        ) from exc


def _from_binary(name: str, datatype: str, blob: bytes, count: int) -> np.ndarray:
    if datatype != "BYTES":
        dtype = DATATYPE_TO_DTYPE[datatype]
        if len(blob) != count * dtype.itemsize:
            raise _fail(f"input {name!r}: binary size does not match shape", "shape_mismatch")
        return np.frombuffer(blob, dtype=dtype.newbyteorder("<")).astype(dtype)
    items, position = [], 0
    while position < len(blob):
        if position + 4 > len(blob):
            raise _fail(f"input {name!r}: truncated BYTES element")
        (length,) = struct.unpack_from("<I", blob, position)
        position += 4
        if position + length > len(blob):
            raise _fail(f"input {name!r}: truncated BYTES element")
        items.append(blob[position : position + length])
        position += length
    return np.asarray(items, dtype=object)


def encode_output(name: str, value: np.ndarray, binary: bool) -> tuple[dict[str, Any], bytes]:
    datatype = datatype_of(value)
    tensor: dict[str, Any] = {"name": name, "datatype": datatype, "shape": list(value.shape)}
    if binary:
        if datatype == "BYTES":
            parts = []
            for item in value.reshape(-1):
                data = item if isinstance(item, bytes) else str(item).encode()
                parts.append(struct.pack("<I", len(data)) + data)
            blob = b"".join(parts)
        else:
            blob = np.ascontiguousarray(value).astype(value.dtype.newbyteorder("<")).tobytes()
        tensor["parameters"] = {"binary_data_size": len(blob)}
        return tensor, blob
    flat = value.reshape(-1)
    if datatype == "BYTES":
        tensor["data"] = [
            v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for v in flat
        ]
    else:
        tensor["data"] = flat.tolist()
    return tensor, b""
