"""Deployments and the /predict routes, over HTTP against a running server."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import Platform
from tests.models import PYTHON_MODEL, classifier, regressor
from tests.serving.helpers import deploy, register, register_estimator


def _error(response, status: int, code: str | None = None) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    if code:
        assert body["code"] == code, body
    return body


class TestDeployments:
    def test_deploy_predict_undeploy(self, platform: Platform, unique_name: str, tmp_path: Path):
        model = classifier()
        register_estimator(platform.admin, unique_name, model, tmp_path)
        endpoint = f"{unique_name}_prod"
        deployed = deploy(platform.admin, unique_name, endpoint_name=endpoint)
        assert deployed["status"] == "active" and deployed["version"] == 1

        row = [0.5, 0.8, 0.2]
        expected = int(model.predict(np.array([row]))[0])
        by_body = platform.admin.post("/predict", json={"model_name": unique_name, "input": row})
        assert by_body.status_code == 200, by_body.text
        assert by_body.json()["prediction"] == expected
        assert len(by_body.json()["outputs"]["predict_proba"]) == 2
        by_path = platform.admin.post(f"/predict/{endpoint}", json={"input": [row, row]})
        assert by_path.json()["prediction"] == [expected, expected]

        listed = platform.admin.get("/deployments", params={"model_name": unique_name}).json()
        (entry,) = listed["deployments"]
        assert entry["request_count"] == 2 and entry["error_count"] == 0
        assert entry["p50_latency_ms"] is not None and entry["avg_latency_ms"] > 0
        assert entry["deployed_at"]

        undeployed = platform.admin.post("/deployments/undeploy", json={"endpoint_name": endpoint})
        assert undeployed.status_code == 200
        _error(platform.admin.post(f"/predict/{endpoint}", json={"input": row}), 404)
        _error(
            platform.admin.post("/predict", json={"model_name": unique_name, "input": row}),
            404,
            "model_not_deployed",
        )
        history = platform.admin.get("/deployments", params={"status": "undeployed"}).json()
        assert endpoint in {d["endpoint_name"] for d in history["deployments"]}

    def test_versions_side_by_side_and_aliases(
        self, platform: Platform, unique_name: str, tmp_path: Path
    ):
        for seed in (1, 2):
            register_estimator(platform.admin, unique_name, regressor(seed), tmp_path)
        deploy(platform.admin, unique_name, version=1)
        deploy(platform.admin, unique_name, version=2)
        platform.admin.put(f"/models/{unique_name}/aliases/champion", json={"version": 1})
        row = [1.0, 2.0]
        answers = {}
        for version in (1, 2, "1", "champion", None):
            body = {"model_name": unique_name, "input": row}
            if version is not None:
                body["version"] = version
            response = platform.admin.post("/predict", json=body)
            if response.status_code == 404 and version == "champion":
                # Alias changes reach the serving table within the sync interval.
                import time

                time.sleep(1.5)
                response = platform.admin.post("/predict", json=body)
            assert response.status_code == 200, response.text
            answers[version] = response.json()["version"]
        assert answers == {1: 1, 2: 2, "1": 1, "champion": 1, None: 2}
        _error(
            platform.admin.post(
                "/predict", json={"model_name": unique_name, "version": 7, "input": row}
            ),
            404,
            "version_not_deployed",
        )

    def test_deployed_version_cannot_be_deleted(
        self, platform: Platform, unique_name: str, tmp_path: Path
    ):
        register_estimator(platform.admin, unique_name, regressor(), tmp_path)
        deploy(platform.admin, unique_name)
        _error(platform.admin.delete(f"/models/{unique_name}/versions/1"), 409, "version_deployed")
        _error(platform.admin.delete(f"/models/{unique_name}"), 409, "version_deployed")
        platform.admin.post("/deployments/undeploy", json={"model_name": unique_name})
        assert platform.admin.delete(f"/models/{unique_name}").status_code == 204

    def test_deploy_errors(self, platform: Platform, unique_name: str, tmp_path: Path):
        _error(platform.admin.post("/deployments/deploy", json={"model_name": "nope"}), 404)
        register_estimator(platform.admin, unique_name, regressor(), tmp_path)
        deploy(platform.admin, unique_name, endpoint_name=f"{unique_name}_a")
        _error(
            platform.admin.post(
                "/deployments/deploy",
                json={"model_name": unique_name, "endpoint_name": f"{unique_name}_a"},
            ),
            409,
            "endpoint_exists",
        )
        for bad in (
            {"model_name": unique_name, "version": 9},
            {"model_name": unique_name, "endpoint_name": "a/b"},
            {"model_name": unique_name, "max_batch_size": 0},
            {"model_name": unique_name, "timeout_s": -1},
            {"model_name": unique_name, "bogus": 1},
            {"version": 1},
        ):
            response = platform.admin.post("/deployments/deploy", json=bad)
            assert response.status_code in (400, 404, 422), (bad, response.text)
        _error(platform.admin.post("/deployments/undeploy", json={}), 400)
        _error(platform.admin.post("/deployments/undeploy", json={"endpoint_name": "nope"}), 404)
        _error(platform.anonymous.post("/deployments/deploy", json={"model_name": "x"}), 401)
        _error(platform.anonymous.get("/deployments"), 401)

    def test_model_that_raises_and_model_that_fails_to_load(
        self, platform: Platform, unique_name: str, tmp_path: Path
    ):
        raising = tmp_path / "raising.py"
        raising.write_text(
            "class Boom:\n    def predict(self, x):\n        raise ValueError('boom')\n"
        )
        register(platform.admin, unique_name, raising, allow_code="true")
        deploy(platform.admin, unique_name, endpoint_name=f"{unique_name}_boom")
        response = platform.admin.post(f"/predict/{unique_name}_boom", json={"input": [[1.0]]})
        assert response.status_code in (400, 422), response.text
        # What the model's code said stays in the server log, under the reference given.
        assert response.json()["code"] == "model_error"
        assert "boom" not in response.json()["message"]
        assert response.json()["details"]["reference"] in response.json()["message"]

        broken = f"{unique_name}_broken"
        good = tmp_path / "good.py"
        good.write_text(PYTHON_MODEL)
        register(platform.admin, broken, good, allow_code="true")
        # The artifact disappears after registration: loading fails cleanly.
        (platform.settings.artifacts_dir / broken / "1" / "good.py").unlink()
        failed = platform.admin.post("/deployments/deploy", json={"model_name": broken})
        _error(failed, 422, "deployment_failed")
        assert broken not in {
            d["endpoint_name"]
            for d in platform.admin.get("/deployments", params={"status": "active"}).json()[
                "deployments"
            ]
        }


@pytest.fixture(scope="module")
def endpoints(platform: Platform, tmp_path_factory: pytest.TempPathFactory):
    directory = tmp_path_factory.mktemp("predict")
    import secrets

    name = f"quadratic_{secrets.token_hex(3)}"
    from sklearn.linear_model import LinearRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import PolynomialFeatures

    x = np.linspace(-3, 3, 50).reshape(-1, 1)
    model = make_pipeline(PolynomialFeatures(2), LinearRegression()).fit(x, x[:, 0] ** 2)
    register_estimator(platform.admin, name, model, directory)
    deploy(platform.admin, name, endpoint_name=f"{name}_ep")
    return name


class TestPredictInput:
    def test_scalar_and_batches(self, platform: Platform, endpoints: str):
        one = platform.admin.post(f"/predict/{endpoints}_ep", json={"input": 2.5}).json()
        assert one["prediction"] == pytest.approx(6.25, abs=1e-6)
        many = platform.admin.post(f"/predict/{endpoints}_ep", json={"input": [1, 2, 3]}).json()
        assert many["prediction"] == pytest.approx([1, 4, 9], abs=1e-6)
        column = platform.admin.post(f"/predict/{endpoints}_ep", json={"input": [[2]]}).json()
        assert column["prediction"] == pytest.approx([4], abs=1e-6)

    @pytest.mark.parametrize(
        ("body", "status"),
        [
            (b"{", 400),
            (b"", 400),
            (b"[1, 2]", 400),
            (b'{"inputs": 1}', 400),
            (b'{"input": "text"}', 400),
            (b'{"input": [[1, 2], [3]]}', 400),
            (b'{"input": [[1, 2]]}', 400),
            (b'{"input": []}', 400),
            (b'{"input": null}', 400),
            (b'{"input": {"a": 1}}', 400),
            (b'{"input": [true]}', 400),
        ],
    )
    def test_bad_input(self, platform: Platform, endpoints: str, body: bytes, status: int):
        response = platform.admin.post(
            f"/predict/{endpoints}_ep", content=body, headers={"Content-Type": "application/json"}
        )
        assert response.status_code == status, response.text
        assert "code" in response.json()

    def test_universal_route_validation(self, platform: Platform, endpoints: str):
        for body in (
            {"input": 1},
            {"model_name": 3, "input": 1},
            {"model_name": endpoints, "version": True, "input": 1},
            {"model_name": endpoints, "version": [1], "input": 1},
            {"model_name": endpoints},
        ):
            response = platform.admin.post("/predict", json=body)
            assert response.status_code == 400, (body, response.text)
        _error(platform.admin.post("/predict", json={"model_name": "ghost", "input": 1}), 404)

    def test_inference_needs_a_key(self, platform: Platform, endpoints: str):
        _error(platform.anonymous.post(f"/predict/{endpoints}_ep", json={"input": 1}), 401)
        headers = {"Authorization": "Bearer om_nope"}
        response = platform.anonymous.post(
            "/predict", json={"model_name": endpoints, "input": 1}, headers=headers
        )
        _error(response, 401)

    def test_openapi_lists_each_endpoint_with_its_schema(self, platform: Platform, endpoints: str):
        schema = platform.admin.get("/openapi.json").json()
        operation = schema["paths"][f"/predict/{endpoints}_ep"]["post"]
        body = operation["requestBody"]["content"]["application/json"]["schema"]
        assert body["required"] == ["input"]
        assert "FP64" in json.dumps(body["properties"]["input"])
        assert "/predict/{endpoint_name}" in schema["paths"]
        # Deployment names are for callers the platform knows.
        anonymous = platform.anonymous.get("/openapi.json").json()
        assert f"/predict/{endpoints}_ep" not in anonymous["paths"]

    def test_metrics_are_labelled_by_model(self, platform: Platform, endpoints: str):
        platform.admin.post(f"/predict/{endpoints}_ep", json={"input": 1})
        text = platform.admin.get("/metrics").text
        assert (
            f'openmaas_inference_requests_total{{model="{endpoints}",protocol="predict",version="1"}}'
            in text
        )
        assert "openmaas_inference_latency_seconds_bucket" in text
        assert "openmaas_model_loads_total" in text
