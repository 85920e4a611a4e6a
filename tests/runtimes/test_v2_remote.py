"""The Open Inference Protocol remote runtime against a small V2 server on loopback."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from openmaas.domain.errors import BadGateway, BadRequest, GatewayTimeout, ServiceUnavailable
from openmaas.runtimes import ArtifactSpec, runtime_for_filename
from openmaas.runtimes.v2_remote import V2RemoteRuntime
from openmaas.testing import LoopbackServer
from openmaas.testing.loopback import free_port

METADATA = {
    "name": "echo",
    "platform": "test",
    "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 2]}],
    "outputs": [{"name": "x_out", "datatype": "FP32", "shape": [-1, 2]}],
}


def _v2_server() -> FastAPI:
    """Echoes every input as ``<name>_out``; some model names misbehave."""
    app = FastAPI()

    @app.get("/v2/models/{name}")
    @app.get("/v2/models/{name}/versions/{version}")
    async def metadata(name: str, version: str | None = None) -> JSONResponse:
        if name == "missing":
            return JSONResponse({"error": "no such model"}, status_code=404)
        return JSONResponse({**METADATA, "name": name, "versions": [version or "1"]})

    @app.post("/v2/models/{name}/infer")
    @app.post("/v2/models/{name}/versions/{version}/infer")
    async def infer(name: str, request: Request, version: str | None = None) -> JSONResponse:
        body = await request.json()
        if name == "boom":
            return JSONResponse({"error": "the model exploded"}, status_code=500)
        if name == "picky":
            return JSONResponse({"error": "input x has the wrong shape"}, status_code=400)
        if name == "slow":
            await asyncio.sleep(3)
        if name == "garbled":
            return JSONResponse({"outputs": [{"name": "y", "datatype": "FP32", "shape": [3]}]})
        outputs = [{**tensor, "name": f"{tensor['name']}_out"} for tensor in body["inputs"]]
        wanted = {o["name"] for o in body.get("outputs", [])}
        if wanted:
            outputs = [o for o in outputs if o["name"] in wanted]
        return JSONResponse({"model_name": name, "model_version": version, "outputs": outputs})

    return app


@pytest.fixture(scope="module")
def v2_url() -> Iterator[str]:
    with LoopbackServer(_v2_server()) as server:
        yield server.url


def _runtime(directory: Path, base_url: str, **settings: Any) -> V2RemoteRuntime:
    path = directory / f"{uuid.uuid4().hex}.v2.json"
    path.write_text(json.dumps({"base_url": base_url, **settings}))
    return V2RemoteRuntime(ArtifactSpec(path=path))


def _infer(runtime: V2RemoteRuntime, inputs: dict[str, np.ndarray], outputs: Any = None) -> Any:
    async def run() -> Any:
        await runtime.load()
        try:
            return await runtime.infer(inputs, outputs)
        finally:
            await runtime.unload()

    return asyncio.run(run())


def test_metadata_comes_from_the_upstream(tmp_path: Path, v2_url: str) -> None:
    runtime = _runtime(tmp_path, v2_url, model="echo", version="2")
    _infer(runtime, {"x": np.zeros((1, 2), dtype=np.float32)})
    assert runtime.metadata().inputs[0].shape == (-1, 2)
    assert runtime.metadata().outputs[0].name == "x_out"


def test_every_datatype_travels_both_ways(tmp_path: Path, v2_url: str) -> None:
    inputs = {
        "bool": np.array([[True, False]]),
        "u8": np.array([0, 255], dtype=np.uint8),
        "u16": np.array([65535], dtype=np.uint16),
        "u32": np.array([2**32 - 1], dtype=np.uint32),
        "u64": np.array([2**63], dtype=np.uint64),
        "i8": np.array([-128, 127], dtype=np.int8),
        "i16": np.array([-32768], dtype=np.int16),
        "i32": np.array([[-(2**31)], [7]], dtype=np.int32),
        "i64": np.array([-(2**62)], dtype=np.int64),
        "f16": np.array([0.5, -1.25], dtype=np.float16),
        "f32": np.array([[1.5, 2.5], [3.5, 4.5]], dtype=np.float32),
        "f64": np.array([np.pi], dtype=np.float64),
        "text": np.array([["héllo", "wörld"]], dtype=object),
        "raw": np.array([b"bytes", b"\xc3\xa9"], dtype=object),
    }
    result = _infer(_runtime(tmp_path, v2_url, model="echo"), inputs)
    for name, value in inputs.items():
        echoed = result[f"{name}_out"]
        assert echoed.shape == value.shape, name
        if name == "raw":
            assert echoed.tolist() == ["bytes", "é"]
        elif name == "text":
            assert echoed.dtype == object and echoed.tolist() == value.tolist()
        else:
            assert echoed.dtype == value.dtype, name
            np.testing.assert_array_equal(echoed, value)


def test_output_selection(tmp_path: Path, v2_url: str) -> None:
    inputs = {"a": np.array([1.0]), "b": np.array([2.0])}
    result = _infer(_runtime(tmp_path, v2_url, model="echo"), inputs, ["b_out"])
    assert list(result) == ["b_out"]


def test_upstream_failures(tmp_path: Path, v2_url: str, caplog: pytest.LogCaptureFixture) -> None:
    """Failures are told in our words; the upstream's address and text stay in the log."""
    x = {"x": np.zeros((1, 2), dtype=np.float32)}
    host = v2_url.removeprefix("http://")
    with pytest.raises(BadGateway) as error:
        _infer(_runtime(tmp_path, v2_url, model="boom"), x)
    assert error.value.code == "upstream_error"
    assert "exploded" not in error.value.message and host not in error.value.message
    reference = error.value.details["reference"]
    assert reference in error.value.message
    logged = [r.getMessage() for r in caplog.records if reference in r.getMessage()]
    assert logged and "exploded" in logged[0] and host in logged[0]
    with pytest.raises(BadRequest) as rejected:
        _infer(_runtime(tmp_path, v2_url, model="picky"), x)
    assert "wrong shape" in rejected.value.message  # the client's own fault is explained
    with pytest.raises(BadGateway):
        _infer(_runtime(tmp_path, v2_url, model="garbled"), x)
    with pytest.raises(BadGateway):
        _infer(_runtime(tmp_path, v2_url, model="missing"), x)
    started = time.monotonic()
    with pytest.raises(GatewayTimeout) as slow:
        _infer(_runtime(tmp_path, v2_url, model="slow", timeout=0.3), x)
    assert time.monotonic() - started < 2
    assert host not in slow.value.message
    down = f"127.0.0.1:{free_port()}"
    with pytest.raises(ServiceUnavailable) as unreachable:
        _infer(_runtime(tmp_path, f"http://{down}", model="echo"), x)
    assert down not in unreachable.value.message
    assert "Connect" not in unreachable.value.message  # no library exception text
    with pytest.raises(BadRequest):
        _infer(_runtime(tmp_path, v2_url, model="echo"), {"raw": np.array([b"\xff"], dtype=object)})


def test_inspect_needs_a_model_name(tmp_path: Path) -> None:
    assert runtime_for_filename("triton.v2.json") is V2RemoteRuntime
    V2RemoteRuntime.inspect(_runtime(tmp_path, "http://triton:8000", model="m").spec)
    with pytest.raises(BadRequest):
        V2RemoteRuntime.inspect(_runtime(tmp_path, "http://triton:8000").spec)
