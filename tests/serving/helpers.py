"""Registering and deploying test models over HTTP."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from tests.models import skops_file


def register(client: httpx.Client, name: str, path: Path, **data: str) -> dict[str, Any]:
    if client.get(f"/models/{name}").status_code == 404:
        assert client.post("/models", json={"name": name}).status_code == 201
    with path.open("rb") as handle:
        response = client.post(
            f"/models/{name}/versions",
            files={"artifact": (path.name, handle, "application/octet-stream")},
            data=data,
        )
    assert response.status_code == 201, response.text
    return response.json()


def register_estimator(client: httpx.Client, name: str, model: object, directory: Path) -> int:
    return int(register(client, name, skops_file(directory, model, f"{name}.skops"))["version"])


def deploy(client: httpx.Client, model_name: str, **fields: Any) -> dict[str, Any]:
    response = client.post("/deployments/deploy", json={"model_name": model_name, **fields})
    assert response.status_code == 201, response.text
    return response.json()
