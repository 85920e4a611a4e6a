"""Prometheus series of undeployed models and deleted routes leave ``/metrics``."""

from __future__ import annotations

import secrets
from pathlib import Path

from tests.conftest import Platform
from tests.models import classifier
from tests.routing.documents import route, to
from tests.serving.helpers import deploy, register_estimator

ROW = {"inputs": [{"name": "input", "shape": [1, 3], "datatype": "FP64", "data": [1, 2, 3]}]}


def _series(platform: Platform, name: str) -> list[str]:
    text = platform.admin.get("/metrics").text
    return [
        line
        for line in text.splitlines()
        if not line.startswith("#") and (f'model="{name}"' in line or f'route="{name}"' in line)
    ]


def test_undeployed_models_and_deleted_routes_leave_no_series(
    platform: Platform, tmp_path: Path
) -> None:
    model = f"series_{secrets.token_hex(4)}"
    route_name = f"series-route-{secrets.token_hex(4)}"
    register_estimator(platform.admin, model, classifier(), tmp_path)
    deploy(platform.admin, model, endpoint_name=model)
    answer = platform.admin.post(f"/v2/models/{model}/infer", json=ROW)
    assert answer.status_code == 200, answer.text
    created = platform.admin.post("/routes", json=route(route_name, [to(model)]))
    assert created.status_code == 201, created.text
    body = {"model_name": route_name, "input": [[1, 2, 3]]}
    assert platform.admin.post("/predict", json=body).status_code == 200
    assert _series(platform, model), "the model's series were never there"
    assert _series(platform, route_name), "the route's series were never there"

    assert platform.admin.delete(f"/routes/{route_name}").status_code in (200, 204)
    assert _series(platform, route_name) == []
    assert _series(platform, model), "the model is still deployed: its series stay"

    undeployed = platform.admin.post("/deployments/undeploy", json={"endpoint_name": model})
    assert undeployed.status_code == 200, undeployed.text
    assert _series(platform, model) == []
    # Deployed again, it starts new series.
    deploy(platform.admin, model, endpoint_name=model)
    assert platform.admin.post(f"/v2/models/{model}/infer", json=ROW).status_code == 200
    assert any("openmaas_inference_requests_total" in s for s in _series(platform, model))
