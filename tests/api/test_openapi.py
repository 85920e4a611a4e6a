"""Each deployment's OpenAPI description against the demo, checked with a JSON-schema validator.

Seed 004's example requests validate against the published schemas and are served; and
for a range of inputs the schema and the server agree on which are valid. Deployment
names are shown only to a caller the platform knows.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from jsonschema import Draft202012Validator

from openmaas.app import create_app
from tests.conftest import make_settings
from tests.servers import running

DEMO_NAMES = ("binary_classifier", "quadratic_predictor", "tiny-chat", "all-minilm-l6-v2")


@dataclass
class Demo:
    url: str
    admin: httpx.Client
    anonymous: httpx.Client
    developer_key: str


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    data = tmp_path_factory.mktemp("demo")
    with running(create_app(make_settings(data, demo=True))) as server:
        key = (data / "demo-admin-key").read_text().strip()
        headers = {"Authorization": f"Bearer {key}"}
        with (
            httpx.Client(base_url=server.url, headers=headers, timeout=120) as admin,
            httpx.Client(base_url=server.url, timeout=120) as anonymous,
        ):
            deadline = time.monotonic() + 120
            while True:  # the demo deploys without waiting for the models to load
                listed = admin.get("/deployments", params={"status": "active"}).json()
                active = {d["endpoint_name"] for d in listed["deployments"]}
                if set(DEMO_NAMES) <= active or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
            assert set(DEMO_NAMES) <= active
            developer_key = (data / "demo-dev1-key").read_text().strip()
            yield Demo(server.url, admin, anonymous, developer_key)


def _operation_schema(document: dict[str, Any], path: str) -> Draft202012Validator:
    """A validator for an operation's JSON body, with the document's components for $refs."""
    body = document["paths"][path]["post"]["requestBody"]["content"]["application/json"]
    schema = {**body["schema"], "components": document.get("components", {})}
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def test_anonymous_callers_see_no_deployment_names(demo: Demo) -> None:
    described = demo.anonymous.get("/openapi.json")
    assert described.status_code == 200
    text = described.text
    assert not [name for name in DEMO_NAMES if name in text]
    assert "/predict/{endpoint_name}" in described.json()["paths"]
    wrong_key = demo.anonymous.get("/openapi.json", headers={"Authorization": "Bearer om_nope"})
    assert wrong_key.status_code == 401


def test_each_deployment_under_the_routes_it_answers(demo: Demo) -> None:
    paths = demo.admin.get("/openapi.json").json()["paths"]
    for tensor in ("binary_classifier", "quadratic_predictor"):
        assert f"/predict/{tensor}" in paths and f"/v2/models/{tensor}/infer" in paths
    for text in ("tiny-chat", "all-minilm-l6-v2"):
        assert f"/predict/{text}" not in paths  # /predict does not answer language models
        assert f"/v2/models/{text}/infer" in paths
    described = demo.admin.get("/openapi.json").json()
    chat = described["components"]["schemas"]["ChatRequest"]["properties"]["model"]
    assert {"tiny-chat", "all-minilm-l6-v2"} <= set(chat["examples"])
    assert "binary_classifier" not in chat["examples"]


SEED_004 = {
    "binary_classifier": {"input": [0.5, 0.8, 0.2]},
    "quadratic_predictor": {"input": 2.5},
}


def test_the_seeds_requests_validate_and_are_served(demo: Demo) -> None:
    described = demo.admin.get("/openapi.json").json()
    for endpoint, request in SEED_004.items():
        validator = _operation_schema(described, f"/predict/{endpoint}")
        assert not list(validator.iter_errors(request)), endpoint
        answer = demo.admin.post(f"/predict/{endpoint}", json=request)
        assert answer.status_code == 200, answer.text
    universal = {"model_name": "binary_classifier", "version": "1", "input": [0.5, 0.8, 0.2]}
    assert demo.admin.post("/predict", json=universal).status_code == 200
    chat = {"model": "tiny-chat", "messages": [{"role": "user", "content": "Hello"}]}
    embed = {"model": "all-minilm-l6-v2", "input": "Hello"}
    for path, request in (("/v1/chat/completions", chat), ("/v1/embeddings", embed)):
        validator = _operation_schema(described, path)
        assert not list(validator.iter_errors(request)), path
        answer = demo.admin.post(
            path, json={**request, "max_tokens": 4} if "messages" in request else request
        )
        assert answer.status_code == 200, answer.text
    v2 = {
        "inputs": [{"name": "input", "shape": [1, 3], "datatype": "FP64", "data": [0.5, 0.8, 0.2]}]
    }
    assert not list(
        _operation_schema(described, "/v2/models/binary_classifier/infer").iter_errors(v2)
    )
    assert demo.admin.post("/v2/models/binary_classifier/infer", json=v2).status_code == 200


CANDIDATES: dict[str, list[Any]] = {
    "quadratic_predictor": [
        2.5,
        -1,
        [2.5],
        [1, 2, 3],
        [[2.5]],
        [[1], [2]],
        [[1, 2]],
        [[[1]]],
        [],
        [[]],
        "2.5",
        ["a"],
        [True],
        True,
        None,
        {"input": 2.5},
        {"input": [1, 2]},
        {"x": 2.5},
        {},
    ],
    "binary_classifier": [
        [0.5, 0.8, 0.2],
        [[0.5, 0.8, 0.2], [0.1, 0.2, 0.3]],
        [1, 2, 3],
        [0.5, 0.8],
        [[0.5, 0.8]],
        0.5,
        [[[0.5, 0.8, 0.2]]],
        {"input": [0.5, 0.8, 0.2]},
        {"input": [[0.5, 0.8, 0.2]]},
        {"other": [0.5, 0.8, 0.2]},
        ["a", "b", "c"],
        [None, 1, 2],
    ],
}


@pytest.mark.parametrize("endpoint", sorted(CANDIDATES))
def test_the_schema_and_the_server_agree(demo: Demo, endpoint: str) -> None:
    validator = _operation_schema(demo.admin.get("/openapi.json").json(), f"/predict/{endpoint}")
    disagreements = []
    for value in CANDIDATES[endpoint]:
        request = {"input": value}
        valid = not list(validator.iter_errors(request))
        answer = demo.admin.post(f"/predict/{endpoint}", json=request)
        assert answer.status_code in (200, 400), (value, answer.text)
        if valid != (answer.status_code == 200):
            disagreements.append((json.dumps(value), valid, answer.status_code))
    assert not disagreements, disagreements


def test_a_developer_sees_what_their_plan_allows(demo: Demo) -> None:
    seen = demo.anonymous.get(
        "/openapi.json", headers={"Authorization": f"Bearer {demo.developer_key}"}
    ).json()["paths"]
    assert "/predict/binary_classifier" in seen  # dev1's "pro" plan allows every model
    plan = {"name": "classifier-only", "models": ["binary_classifier"]}
    assert demo.admin.post("/plans", json=plan).status_code == 201
    applications = demo.admin.get("/applications").json()["applications"]
    app = next(a for a in applications if a["name"] == "dev1-app")
    moved = demo.admin.patch(f"/applications/{app['id']}", json={"plan": "classifier-only"})
    assert moved.status_code == 200, moved.text
    deadline = time.monotonic() + 10
    while True:
        paths = demo.anonymous.get(
            "/openapi.json", headers={"Authorization": f"Bearer {demo.developer_key}"}
        ).json()["paths"]
        if "/predict/quadratic_predictor" not in paths or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert "/predict/binary_classifier" in paths and "/predict/quadratic_predictor" not in paths
