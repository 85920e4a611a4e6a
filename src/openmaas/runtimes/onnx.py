"""ONNX models through ONNX Runtime (no code runs when an ONNX file loads)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import anyio
import numpy as np

from openmaas.domain.errors import BadRequest
from openmaas.domain.models import Signature, TensorSpec
from openmaas.incidents import reported
from openmaas.runtimes.base import ArtifactSpec, TensorRuntime, Tensors, invalid_artifact

_ONNX_TYPES = {
    "tensor(bool)": "BOOL",
    "tensor(uint8)": "UINT8",
    "tensor(uint16)": "UINT16",
    "tensor(uint32)": "UINT32",
    "tensor(uint64)": "UINT64",
    "tensor(int8)": "INT8",
    "tensor(int16)": "INT16",
    "tensor(int32)": "INT32",
    "tensor(int64)": "INT64",
    "tensor(float16)": "FP16",
    "tensor(float)": "FP32",
    "tensor(double)": "FP64",
    "tensor(string)": "BYTES",
}


def _session(spec: ArtifactSpec) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    # One model among many on a shared machine: don't let it take every core.
    options.intra_op_num_threads = int(spec.options.get("threads", 1))
    try:
        return ort.InferenceSession(
            str(spec.path), sess_options=options, providers=["CPUExecutionProvider"]
        )
    except Exception as exc:
        raise invalid_artifact("not a loadable ONNX model", exc) from exc


def _specs(nodes: Sequence[Any]) -> tuple[TensorSpec, ...]:
    specs = []
    for node in nodes:
        datatype = _ONNX_TYPES.get(node.type)
        if datatype is None:
            continue  # sequences and maps (e.g. skl2onnx's ZipMap) are not tensors
        shape = tuple(d if isinstance(d, int) else -1 for d in node.shape)
        specs.append(TensorSpec(node.name, datatype, shape))
    return tuple(specs)


def _signature_of(session: Any) -> Signature:
    return Signature(inputs=_specs(session.get_inputs()), outputs=_specs(session.get_outputs()))


class OnnxRuntime(TensorRuntime):
    name = "onnx"
    suffixes = (".onnx",)

    def __init__(self, spec: ArtifactSpec) -> None:
        super().__init__(spec)
        self._session: Any = None
        self._input_dtypes: dict[str, np.dtype] = {}

    @classmethod
    def inspect(cls, spec: ArtifactSpec) -> Signature:
        return _signature_of(_session(spec))

    async def load(self) -> None:
        session = await anyio.to_thread.run_sync(_session, self.spec)
        self.signature = _signature_of(session)
        from openmaas.runtimes.tensors import DATATYPE_TO_DTYPE

        self._input_dtypes = {s.name: DATATYPE_TO_DTYPE[s.datatype] for s in self.signature.inputs}
        self._session = session

    async def unload(self) -> None:
        self._session = None

    @property
    def ready(self) -> bool:
        return self._session is not None

    async def infer(self, inputs: Tensors, outputs: Sequence[str] | None = None) -> Tensors:
        return await anyio.to_thread.run_sync(self._run, inputs, outputs)

    def _run(self, inputs: Tensors, outputs: Sequence[str] | None) -> Tensors:
        wanted = list(outputs or [spec.name for spec in self.signature.outputs])
        feeds = {
            name: np.asarray(value, dtype=self._input_dtypes.get(name, value.dtype))
            for name, value in inputs.items()
        }
        try:
            values = self._session.run(wanted, feeds)
        except Exception as exc:
            raise reported(
                BadRequest, "the ONNX model rejected the input", code="infer_failed", detail=exc
            ) from exc
        return {name: np.asarray(value) for name, value in zip(wanted, values, strict=True)}
