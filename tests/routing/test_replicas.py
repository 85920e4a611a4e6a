"""Two server processes sharing PostgreSQL: one route, one canary, one decision per step."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import ADMIN_KEY
from tests.routing.test_model_routes import MODEL, _canary
from tests.servers import free_port, postgres_database, wait_ready

HEADERS = {"Authorization": f"Bearer {ADMIN_KEY}"}


def _start(env: dict[str, str], port: int) -> subprocess.Popen[str]:
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        "--factory",
        "openmaas.app:create_app_from_environment",
    ]
    command += ["--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]
    return subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


@pytest.fixture(scope="module")
def replicas(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[httpx.Client]]:
    # Replicas share a database and, like a shared volume, the artifact store.
    data_dir = tmp_path_factory.mktemp("replicas")
    with postgres_database() as database_url:
        base = {k: v for k, v in os.environ.items() if not k.startswith("OPENMAAS_")}
        env = {
            **base,
            "OPENMAAS_DATABASE_URL": database_url,
            "OPENMAAS_DATA_DIR": str(data_dir),
            "OPENMAAS_ADMIN_KEY": ADMIN_KEY,
            "OPENMAAS_LOG_LEVEL": "warning",
        }
        ports = [free_port(), free_port()]
        processes = [_start(env, port) for port in ports]
        clients = [
            httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=HEADERS, timeout=60)
            for port in ports
        ]
        try:
            for process, client in zip(processes, clients, strict=True):
                wait_ready(process, str(client.base_url))
            yield clients
        finally:
            for client in clients:
                client.close()
            for process in processes:
                process.terminate()
                process.wait(timeout=30)


def _deploy(client: httpx.Client, name: str, value: int, directory: Path) -> None:
    source = directory / f"{name}.py"
    source.write_text(MODEL.format(fail=str(directory / "never"), delay=0.0, value=value))
    assert client.post("/models", json={"name": name}).status_code == 201
    with source.open("rb") as handle:
        uploaded = client.post(
            f"/models/{name}/versions",
            files={"artifact": (source.name, handle)},
            data={"allow_code": "true"},
        )
    assert uploaded.status_code == 201, uploaded.text
    deployed = client.post("/deployments/deploy", json={"model_name": name, "endpoint_name": name})
    assert deployed.status_code == 201, deployed.text


def test_replicas_share_routes_and_decide_each_canary_step_once(
    replicas: list[httpx.Client], tmp_path: Path
) -> None:
    a, b = replicas
    _deploy(a, "replica_stable", 1, tmp_path)
    _deploy(a, "replica_canary", 2, tmp_path)
    document = _canary("replicated", "replica_stable", "replica_canary", 40)
    assert a.post("/routes", json=document).status_code == 201
    # The other replica serves the route and its destinations within about a second.
    started = time.monotonic()
    while b.get("/routes/replicated").json().get("status", {}).get("activeRoutes") != 2:
        assert time.monotonic() - started < 3, "the route did not reach the other replica"
        time.sleep(0.05)
    body = {"model_name": "replicated", "input": [[1.0]]}
    deadline = time.monotonic() + 30
    state = "progressing"
    while state != "promoted":
        assert time.monotonic() < deadline, a.get("/routes/replicated").json()
        for client in (a, b) * 10:
            response = client.post("/predict", json=body)
            assert response.status_code == 200, response.text
        state = a.get("/routes/replicated").json()["status"]["canary"]["state"]
    time.sleep(1.5)  # let every replica run its analysis once more
    views = [client.get("/routes/replicated").json()["status"] for client in (a, b)]
    assert views[0]["revision"] == views[1]["revision"] == 3  # applied, 40 -> 80, promoted
    kinds = [c["type"] for c in views[0]["conditions"]]
    assert kinds == ["Ready", "Accepted", "CanaryProgressing", "CanaryPromoted"], kinds
