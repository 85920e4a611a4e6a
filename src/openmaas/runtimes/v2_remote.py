"""A model on an Open Inference Protocol server (KServe, Triton, MLServer) as a tensor runtime.

The artifact is a ``*.v2.json`` file (keys in ``upstream``): ``base_url`` is the server's
root (``http://triton:8000``), ``model`` the model's name there, and the optional
``version`` its version. Loading reads the model's metadata for the signature; inference
posts V2 JSON to ``{base_url}/v2/models/{model}[/versions/{version}]/infer``.

Tensors travel as JSON: numbers flat in row-major order, BOOL as booleans, BYTES as UTF-8
strings (V2's JSON form has no raw bytes), FP16 as numbers.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

import numpy as np

from openmaas.domain.errors import BadGateway, BadRequest, OpenMaaSError, ServiceUnavailable
from openmaas.domain.models import Signature
from openmaas.incidents import reported
from openmaas.runtimes.base import ArtifactSpec, TensorRuntime, Tensors
from openmaas.runtimes.tensors import DATATYPE_TO_DTYPE, datatype_of
from openmaas.runtimes.upstream import (
    Endpoint,
    UpstreamClient,
    client_for,
    endpoint_of,
    json_body,
    raise_for_status,
)


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise BadRequest(
                "BYTES tensors sent upstream must be UTF-8", code="invalid_input"
            ) from exc
    return str(value)


def encode_tensor(name: str, array: np.ndarray) -> dict[str, Any]:
    datatype = datatype_of(array)
    flat = array.reshape(-1)
    if datatype == "BYTES":
        data: list[Any] = [_text(value) for value in flat.tolist()]
    else:
        data = flat.tolist()
    return {"name": name, "shape": list(array.shape), "datatype": datatype, "data": data}


def decode_tensor(tensor: Any) -> tuple[str, np.ndarray]:
    try:
        name = str(tensor["name"])
        datatype = str(tensor["datatype"]).upper()
        shape = [int(d) for d in tensor["shape"]]
        dtype = DATATYPE_TO_DTYPE[datatype]
        array = np.asarray(tensor["data"], dtype=dtype).reshape(shape)
    except (KeyError, TypeError, ValueError) as exc:
        raise reported(
            BadGateway,
            "the upstream server sent a malformed tensor",
            code="upstream_error",
            detail=f"{exc!r} in {str(tensor)[:200]}",
        ) from exc
    return name, array


class V2RemoteRuntime(TensorRuntime):
    name = "v2"
    suffixes = (".v2.json",)

    def __init__(self, spec: ArtifactSpec) -> None:
        super().__init__(spec)
        self._endpoint: Endpoint | None = None
        self._client: UpstreamClient | None = None

    @classmethod
    def inspect(cls, spec: ArtifactSpec) -> Signature:
        # Registering does not contact the server; loading reads its metadata.
        endpoint_of(spec, model_required=True)
        return spec.signature

    @property
    def _path(self) -> str:
        assert self._endpoint is not None and self._endpoint.model is not None
        path = f"/v2/models/{quote(self._endpoint.model, safe='')}"
        version = self._endpoint.settings.get("version")
        return f"{path}/versions/{quote(str(version), safe='')}" if version else path

    async def load(self) -> None:
        endpoint = endpoint_of(self.spec, model_required=True)
        client = client_for(endpoint)
        self._endpoint = endpoint
        try:
            if self.signature.empty:
                response = await client.request("GET", self._path)
                raise_for_status(response, endpoint)
                metadata = json_body(response)
                try:
                    self.signature = Signature.from_dict(
                        {"inputs": metadata.get("inputs"), "outputs": metadata.get("outputs")}
                    )
                except (OpenMaaSError, AttributeError) as exc:
                    raise BadGateway(
                        "the upstream server sent bad model metadata", code="upstream_error"
                    ) from exc
        except BaseException:
            await client.aclose()
            raise
        self._client = client

    async def unload(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    @property
    def ready(self) -> bool:
        return self._client is not None

    async def infer(self, inputs: Tensors, outputs: Sequence[str] | None = None) -> Tensors:
        if self._client is None or self._endpoint is None:
            raise ServiceUnavailable("the model is not loaded", code="not_loaded")
        body: dict[str, Any] = {
            "inputs": [encode_tensor(name, np.asarray(value)) for name, value in inputs.items()]
        }
        if outputs:
            body["outputs"] = [{"name": name} for name in outputs]
        response = await self._client.request("POST", f"{self._path}/infer", body)
        raise_for_status(response, self._endpoint)
        answer = json_body(response)
        tensors = answer.get("outputs") if isinstance(answer, dict) else None
        if not isinstance(tensors, list):
            raise BadGateway("the upstream answer has no outputs", code="upstream_error")
        return dict(decode_tensor(tensor) for tensor in tensors)
