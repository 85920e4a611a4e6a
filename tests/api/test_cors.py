"""CORS: configured origins get preflights answered and headers on every response."""

from __future__ import annotations

import httpx
import pytest

from openmaas.app import create_app
from tests.accounts import ROW
from tests.conftest import ADMIN_KEY, make_settings
from tests.models import classifier
from tests.servers import running
from tests.serving.helpers import deploy, register_estimator


def test_preflight_and_headers(tmp_path_factory: pytest.TempPathFactory) -> None:
    directory = tmp_path_factory.mktemp("cors")
    settings = make_settings(directory, cors_origins=["https://app.example"])
    admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
    body = {"model_name": "clf", "input": ROW}
    with running(create_app(settings)) as server, httpx.Client(base_url=server.url) as client:
        with httpx.Client(base_url=server.url, headers=admin) as admin_client:
            register_estimator(admin_client, "clf", classifier(), directory)
            deploy(admin_client, "clf", endpoint_name="clf")
        preflight = client.options(
            "/predict",
            headers={
                "Origin": "https://app.example",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization, content-type",
            },
        )
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == "https://app.example"
        assert "POST" in preflight.headers["access-control-allow-methods"]
        assert "authorization" in preflight.headers["access-control-allow-headers"].lower()

        refused = client.options(
            "/predict",
            headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
        )
        assert refused.status_code == 400
        assert "access-control-allow-origin" not in refused.headers

        # Errors carry the headers too, so the page can read why it was refused.
        response = client.post("/predict", json=body, headers={"Origin": "https://app.example"})
        assert response.status_code == 401
        assert response.headers["access-control-allow-origin"] == "https://app.example"
        ok = client.post(
            "/predict",
            json=body,
            headers={"Origin": "https://app.example", "Authorization": f"Bearer {ADMIN_KEY}"},
        )
        assert ok.status_code == 200
        assert "x-ratelimit-limit" in ok.headers["access-control-expose-headers"].lower()


def test_no_origins_no_cors(tmp_path_factory: pytest.TempPathFactory) -> None:
    settings = make_settings(tmp_path_factory.mktemp("nocors"))
    with running(create_app(settings)) as server:
        response = httpx.get(f"{server.url}/health/live", headers={"Origin": "https://x.example"})
        assert "access-control-allow-origin" not in response.headers
