"""Mapping between Open Inference Protocol datatypes and NumPy dtypes."""

from __future__ import annotations

import numpy as np

from openmaas.domain.errors import BadRequest

DATATYPE_TO_DTYPE: dict[str, np.dtype] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype(np.uint8),
    "UINT16": np.dtype(np.uint16),
    "UINT32": np.dtype(np.uint32),
    "UINT64": np.dtype(np.uint64),
    "INT8": np.dtype(np.int8),
    "INT16": np.dtype(np.int16),
    "INT32": np.dtype(np.int32),
    "INT64": np.dtype(np.int64),
    "FP16": np.dtype(np.float16),
    "FP32": np.dtype(np.float32),
    "FP64": np.dtype(np.float64),
    "BYTES": np.dtype(np.object_),
}


# Every response tensor is named by its dtype; a dictionary finds the common ones at once.
_DATATYPE_OF_DTYPE = {dtype: name for name, dtype in DATATYPE_TO_DTYPE.items() if name != "BYTES"}


def datatype_of(array: np.ndarray) -> str:
    kind = array.dtype
    if kind.kind in ("U", "S", "O"):
        return "BYTES"
    found = _DATATYPE_OF_DTYPE.get(kind)
    if found is not None:
        return found
    for name, dtype in DATATYPE_TO_DTYPE.items():
        if dtype == kind and name != "BYTES":
            return name
    raise BadRequest(f"unsupported tensor dtype {kind}", code="unsupported_datatype")


def datatype_of_numpy(dtype: np.dtype) -> str:
    return datatype_of(np.empty(0, dtype=dtype))
