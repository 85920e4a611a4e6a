"""The lean inference path answers exactly like the routes it stands in for.

Paths that look almost like inference routes must fall through to FastAPI's routing and
get its JSON errors; the lean path's own errors have the same shapes as the routes'.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import Platform
from tests.models import classifier
from tests.serving.helpers import deploy, register_estimator

ROW = [0.5, 0.8, 0.2]


@pytest.fixture
def endpoint(platform: Platform, unique_name: str, tmp_path: Path) -> str:
    register_estimator(platform.admin, unique_name, classifier(), tmp_path)
    deploy(platform.admin, unique_name, endpoint_name=f"{unique_name}_ep")
    return unique_name


def _v2_body() -> dict:
    return {"inputs": [{"name": "input", "shape": [1, 3], "datatype": "FP64", "data": ROW}]}


def test_every_inference_route_answers_on_the_lean_path(platform: Platform, endpoint: str):
    admin = platform.admin
    assert admin.post("/predict", json={"model_name": endpoint, "input": ROW}).status_code == 200
    assert admin.post(f"/predict/{endpoint}_ep", json={"input": ROW}).status_code == 200
    assert admin.post(f"/v2/models/{endpoint}/infer", json=_v2_body()).status_code == 200
    versioned = admin.post(f"/v2/models/{endpoint}/versions/1/infer", json=_v2_body())
    assert versioned.status_code == 200 and versioned.json()["model_version"] == "1"


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/predict", 405),
        ("GET", "/v2/models/{m}/infer", 405),
        ("PUT", "/v2/models/{m}/versions/1/infer", 405),
        ("POST", "/predict/", 404),
        ("POST", "/predict/{m}_ep/extra", 404),
        ("POST", "/v2/models//infer", 404),
        ("POST", "/v2/models/{m}/versions//infer", 404),
        ("POST", "/v2/models/{m}/infer/more", 404),
        ("POST", "/v1/chat/completions/extra", 404),
        ("POST", "/v3/models/{m}/infer", 404),
    ],
)
def test_near_misses_fall_through_to_routing(
    platform: Platform, endpoint: str, method: str, path: str, status: int
):
    response = platform.admin.request(method, path.format(m=endpoint), json=_v2_body())
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")


def test_errors_keep_each_protocols_shape(platform: Platform, endpoint: str):
    admin = platform.admin
    unknown = admin.post("/predict", json={"model_name": "no_such_model", "input": ROW})
    assert unknown.status_code == 404 and unknown.json()["code"] == "model_not_deployed"
    v2 = admin.post("/v2/models/no_such_model/infer", json=_v2_body())
    assert v2.status_code == 404 and set(v2.json()) >= {"error"}
    openai = admin.post("/v1/chat/completions", json={"model": "no_such_model", "messages": []})
    assert 400 <= openai.status_code < 500
    assert set(openai.json()["error"]) >= {"message", "type", "code"}
    garbage = admin.post(
        f"/v2/models/{endpoint}/infer",
        content=b"{not json",
        headers={"Content-Type": "application/json"},
    )
    assert garbage.status_code == 400 and "error" in garbage.json()


def test_lean_path_keeps_the_policy(platform: Platform, endpoint: str):
    anonymous = platform.anonymous
    response = anonymous.post(f"/v2/models/{endpoint}/infer", json=_v2_body())
    assert response.status_code == 401
    wrong = anonymous.post(
        "/predict",
        json={"model_name": endpoint, "input": ROW},
        headers={"Authorization": "Bearer om_not_a_key"},
    )
    assert wrong.status_code == 401 and wrong.json()["code"]
