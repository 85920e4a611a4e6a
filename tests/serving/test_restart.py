"""Deployments are stored: a restarted platform serves them again, with nothing redone."""

from __future__ import annotations

from pathlib import Path

import httpx

from openmaas.app import create_app
from tests.conftest import ADMIN_KEY, make_settings
from tests.models import classifier
from tests.servers import running
from tests.serving.helpers import deploy, register_estimator


def test_deployments_survive_a_restart(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "data")
    headers = {"Authorization": f"Bearer {ADMIN_KEY}"}
    body = {"model_name": "survivor", "input": [0.1, 0.2, 0.3]}
    with (
        running(create_app(settings)) as server,
        httpx.Client(base_url=server.url, headers=headers, timeout=30) as client,
    ):
        register_estimator(client, "survivor", classifier(), tmp_path)
        deploy(client, "survivor", endpoint_name="survivor_ep", max_batch_size=8)
        before = client.post("/predict", json=body).json()["prediction"]
        deploy(client, "survivor", endpoint_name="gone")
        client.post("/deployments/undeploy", json={"endpoint_name": "gone"}).raise_for_status()

    with (
        running(create_app(settings)) as server,
        httpx.Client(base_url=server.url, headers=headers, timeout=30) as client,
    ):
        active = client.get("/deployments", params={"status": "active"}).json()["deployments"]
        (restored,) = [d for d in active if d["model_name"] == "survivor"]
        assert restored["endpoint_name"] == "survivor_ep"
        assert restored["config"]["max_batch_size"] == 8
        assert client.post("/predict", json=body).json()["prediction"] == before
        assert client.post("/predict/gone", json={"input": [0.1, 0.2, 0.3]}).status_code == 404
