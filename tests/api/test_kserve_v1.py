"""KServe's V1 protocol over HTTP: ``:predict``, the seed's ``/infer``, readiness."""

from __future__ import annotations

import secrets
import time

import numpy as np
import pytest

from openmaas.demo.tiny_llm import tiny_llm_archive
from tests.accounts import Factory
from tests.conftest import Platform
from tests.models import classifier
from tests.serving.helpers import deploy, register, register_estimator


@pytest.fixture(scope="module")
def models(platform: Platform, tmp_path_factory: pytest.TempPathFactory) -> dict:
    directory = tmp_path_factory.mktemp("kserve")
    suffix = secrets.token_hex(3)
    names = {"clf": f"v1clf_{suffix}", "tiny": f"v1tiny_{suffix}"}
    model = classifier(features=3)
    register_estimator(platform.admin, names["clf"], model, directory)
    deploy(platform.admin, names["clf"], endpoint_name=names["clf"])
    register(platform.admin, names["tiny"], tiny_llm_archive(directory), runtime="transformers")
    deploy(platform.admin, names["tiny"], endpoint_name=names["tiny"])
    return {**names, "model": model}


def test_predict_with_instances_and_with_columns(platform: Platform, models: dict) -> None:
    rows = np.random.default_rng(3).normal(size=(3, 3))
    answer = platform.admin.post(
        f"/v1/models/{models['clf']}:predict", json={"instances": rows.tolist()}
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["model_name"] == models["clf"] and body["model_version"] == "1"
    predictions = body["predictions"]
    assert [p["predict"] for p in predictions] == models["model"].predict(rows).tolist()
    np.testing.assert_allclose(
        [p["predict_proba"] for p in predictions], models["model"].predict_proba(rows)
    )
    columns = platform.admin.post(
        f"/v1/models/{models['clf']}/infer", json={"inputs": rows[0].tolist()}
    )
    assert columns.status_code == 200, columns.text
    assert columns.json()["outputs"]["predict"] == predictions[0]["predict"]


def test_a_language_model_takes_text_instances(platform: Platform, models: dict) -> None:
    answer = platform.admin.post(
        f"/v1/models/{models['tiny']}:predict",
        json={"instances": ["Once upon", "a time"], "parameters": {"max_tokens": 3}},
    )
    assert answer.status_code == 200, answer.text
    predictions = answer.json()["predictions"]
    assert len(predictions) == 2 and all(isinstance(p, str) and p for p in predictions)
    named = platform.admin.post(
        f"/v1/models/{models['tiny']}/infer",
        json={"inputs": {"text": "Hello"}, "parameters": {"max_tokens": 2}},
    )
    assert named.status_code == 200, named.text
    assert isinstance(named.json()["outputs"], str)


def test_readiness(platform: Platform, models: dict) -> None:
    for name in (models["clf"], models["tiny"]):
        ready = platform.admin.get(f"/v1/models/{name}")
        assert ready.status_code == 200, ready.text
        assert ready.json()["name"] == name and ready.json()["ready"] is True
    listed = platform.admin.get("/v1/models").json()
    assert {models["clf"], models["tiny"]} <= set(listed["models"])
    assert models["clf"] not in {m["id"] for m in listed["data"]}  # OpenAI's list: text only
    assert platform.admin.get("/v1/models/ghost").status_code == 404


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b"{", 400),
        (b"[]", 400),
        (b'{"instances": []}', 400),
        (b'{"instances": [[1, 2, 3]], "inputs": [1, 2, 3]}', 400),
        (b'{"instances": [[1, 2], [3]]}', 400),
        (b'{"instances": [[1, 2]]}', 400),
        (b'{"instances": [{"a": 1}, [1, 2, 3]]}', 400),
        (b'{"instances": [["x", "y", "z"]]}', 400),
        (b'{"inputs": [1, 2, 3], "parameters": 5}', 400),
    ],
)
def test_bad_bodies_are_kserve_errors(
    platform: Platform, models: dict, body: bytes, status: int
) -> None:
    for path in (f"/v1/models/{models['clf']}:predict", f"/v1/models/{models['clf']}/infer"):
        answer = platform.admin.post(
            path, content=body, headers={"Content-Type": "application/json"}
        )
        assert answer.status_code == status, (path, answer.text)
        assert set(answer.json()) == {"error"} and isinstance(answer.json()["error"], str)


def test_keys_plans_and_metering(platform: Platform, models: dict, make: Factory) -> None:
    anonymous = platform.anonymous.post(
        f"/v1/models/{models['clf']}:predict", json={"instances": [[0, 0, 0]]}
    )
    assert anonymous.status_code == 401 and set(anonymous.json()) == {"error"}
    ghost = platform.admin.post("/v1/models/ghost:predict", json={"instances": [[0, 0, 0]]})
    assert ghost.status_code == 404 and set(ghost.json()) == {"error"}
    developer, _app, key = make.key_for(make.plan(models=[models["clf"]], requests_per_minute=50))
    headers = {"Authorization": f"Bearer {key}"}
    refused = platform.anonymous.post(
        f"/v1/models/{models['tiny']}:predict", json={"instances": ["x"]}, headers=headers
    )
    assert refused.status_code == 403
    for _ in range(2):
        allowed = platform.anonymous.post(
            f"/v1/models/{models['clf']}:predict", json={"instances": [[0, 0, 0]]}, headers=headers
        )
        assert allowed.status_code == 200, allowed.text
        assert "X-RateLimit-Limit" in allowed.headers  # the plan's limits, as on every protocol
    deadline = time.monotonic() + 15
    query = {"group_by": "model,protocol"}
    while True:
        rows = developer.client.get("/usage", params=query).json()["usage"]
        found = {(r["model"], r["protocol"]): r for r in rows}.get((models["clf"], "kserve_v1"))
        if (found and found["requests"] >= 2) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert found is not None and found["requests"] == 2
