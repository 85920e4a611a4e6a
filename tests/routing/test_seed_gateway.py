"""Seed 003's usage examples as written: its routes, its curl commands, its gateway path.

The documents below are the seed's own (only the A/B route is named ``test``, the name
its curl commands call); the commands are the seed's, run by curl, with our key added and
``model-gateway`` pointed at the test server.
"""

from __future__ import annotations

import shlex
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import ADMIN_KEY, Platform
from tests.serving.helpers import deploy, register

AB_TEST = """
apiVersion: networking.matrixinfer.ai/v1alpha1
kind: ModelRoute
metadata:
  name: test
  namespace: default
spec:
  routes:
  - match:
      headers:
        version: "v1"
    destination:
      modelServerRef:
        name: model-server-v1
    weight: 80
  - match:
      headers:
        version: "v2"
    destination:
      modelServerRef:
        name: model-server-v2
    weight: 20
  fallback:
    modelServerRef:
      name: model-server-v1
"""

QUERY_PARAMS = """
apiVersion: networking.matrixinfer.ai/v1alpha1
kind: ModelRoute
metadata:
  name: query-param-routing
  namespace: default
spec:
  routes:
  - match:
      queryParams:
        model: "fast"
    destination:
      modelServerRef:
        name: fast-model-server
    timeout: "10s"
  - match:
      queryParams:
        model: "accurate"
    destination:
      modelServerRef:
        name: accurate-model-server
    timeout: "60s"
  - match:
      queryParams:
        beta: "true"
    destination:
      modelServerRef:
        name: beta-model-server
    weight: 100
  fallback:
    modelServerRef:
      name: default-model-server
"""

CANARY = """
apiVersion: networking.matrixinfer.ai/v1alpha1
kind: ModelRoute
metadata:
  name: canary-deployment
  namespace: ml-models
spec:
  routes:
  - match:
      path: "/v1/models/production/*"
    destination:
      modelServerRef:
        name: stable-model-server
    weight: 90
  - match:
      path: "/v1/models/production/*"
    destination:
      modelServerRef:
        name: canary-model-server
    weight: 10
  canary:
    enabled: true
    trafficSplit:
      stable: 90
      canary: 10
    analysis:
      threshold: 95
      interval: "5m"
"""

# Seed 003, "Testing Routes", verbatim.
CURLS = [
    """curl -X POST http://model-gateway/v1/models/test/infer \\
  -H "Content-Type: application/json" \\
  -H "version: v1" \\
  -d '{"inputs": {"text": "Hello"}}'""",
    """curl -X POST http://model-gateway/v1/models/test/infer \\
  -H "Content-Type: application/json" \\
  -H "version: v2" \\
  -d '{"inputs": {"text": "Hello"}}'""",
    """curl -X POST "http://model-gateway/v1/models/test/infer?model=fast" \\
  -H "Content-Type: application/json" \\
  -d '{"inputs": {"text": "Hello"}}'""",
]

SERVER = """
import numpy as np


class Server:
    signature = {{
        "inputs": [{{"name": "text", "datatype": "BYTES", "shape": [-1]}}],
        "outputs": [{{"name": "reply", "datatype": "BYTES", "shape": [-1]}}],
    }}

    def predict(self, text):
        return np.array([f"{name}: " + str(t) for t in text], dtype=object)
"""

SERVERS = [
    "model-server-v1",
    "model-server-v2",
    "fast-model-server",
    "accurate-model-server",
    "beta-model-server",
    "default-model-server",
    "stable-model-server",
    "canary-model-server",
]


@pytest.fixture(scope="module")
def seed_routes(platform: Platform, tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    directory = tmp_path_factory.mktemp("seed003")
    for name in SERVERS:
        source = directory / f"{name}.py"
        source.write_text(SERVER.format(name=name))
        register(platform.admin, name, source, allow_code="true")
        deploy(platform.admin, name, endpoint_name=name)
    for document in (AB_TEST, QUERY_PARAMS, CANARY):
        applied = platform.admin.post(
            "/routes", content=document, headers={"Content-Type": "application/yaml"}
        )
        assert applied.status_code == 201, applied.text
        assert applied.json()["status"]["phase"] == "Active"
    yield
    for document in (AB_TEST, QUERY_PARAMS, CANARY):
        metadata = yaml.safe_load(document)["metadata"]
        platform.admin.delete(f"/routes/{metadata['name']}", params=metadata)


def _curl(platform: Platform, command: str) -> tuple[int, dict[str, str], str]:
    """Runs a seed command with curl: ``model-gateway`` is the test server, plus a key."""
    arguments = shlex.split(command.replace("\\\n", " "))
    assert arguments[0] == "curl"
    port = platform.url.rsplit(":", 1)[1]
    extra = ["--connect-to", f"model-gateway:80:127.0.0.1:{port}", "-s", "-D", "-"]
    extra += ["-H", f"Authorization: Bearer {ADMIN_KEY}"]
    done = subprocess.run(
        ["curl", *extra, *arguments[1:]], capture_output=True, text=True, timeout=60, check=True
    )
    head, _, body = done.stdout.replace("\r\n", "\n").partition("\n\n")
    lines = head.splitlines()
    status = int(lines[0].split()[1])
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return status, headers, body


def _reply(body: str) -> Any:
    import json

    return json.loads(body)["outputs"]


def test_the_seeds_three_curl_commands(platform: Platform, seed_routes: None) -> None:
    status, headers, body = _curl(platform, CURLS[0])
    assert status == 200, body
    assert headers["x-openmaas-route-destination"] == "model-server-v1"
    assert _reply(body) == "model-server-v1: Hello"
    status, headers, body = _curl(platform, CURLS[1])
    assert status == 200, body
    assert headers["x-openmaas-route-destination"] == "model-server-v2"
    assert _reply(body) == "model-server-v2: Hello"
    # No version header: no rule of the A/B route matches, and its fallback answers.
    status, headers, body = _curl(platform, CURLS[2])
    assert status == 200, body
    assert headers["x-openmaas-route-destination"] == "model-server-v1"


def test_the_query_parameter_route(platform: Platform, seed_routes: None) -> None:
    command = CURLS[2].replace("models/test/", "models/query-param-routing/")
    for query, server in (
        ("model=fast", "fast-model-server"),
        ("model=accurate", "accurate-model-server"),
        ("beta=true", "beta-model-server"),
        ("other=1", "default-model-server"),
    ):
        status, headers, body = _curl(platform, command.replace("model=fast", query))
        assert status == 200, body
        assert headers["x-openmaas-route-destination"] == server
        assert _reply(body) == f"{server}: Hello"


def test_the_canary_route_serves_its_path(platform: Platform, seed_routes: None) -> None:
    """``/v1/models/production/*`` names no route: the canary route's path rules take it."""
    seen = set()
    for _ in range(40):
        answer = platform.admin.post(
            "/v1/models/production/infer",
            json={"inputs": {"text": "Hello"}},
            headers={"X-OpenMaaS-Namespace": "ml-models"},
        )
        assert answer.status_code == 200, answer.text
        seen.add(answer.headers["x-openmaas-route-destination"])
    assert "stable-model-server" in seen and seen <= {"stable-model-server", "canary-model-server"}
    elsewhere = platform.admin.post(
        "/v1/models/staging/infer",
        json={"inputs": {"text": "Hello"}},
        headers={"X-OpenMaaS-Namespace": "ml-models"},
    )
    assert elsewhere.status_code == 404 and set(elsewhere.json()) == {"error"}


def test_instances_and_kserve_predict_on_a_route(platform: Platform, seed_routes: None) -> None:
    answer = platform.admin.post(
        "/v1/models/test:predict",
        json={"instances": ["a", "b"]},
        headers={"version": "v2"},
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["predictions"] == ["model-server-v2: a", "model-server-v2: b"]
    same = platform.admin.post(
        "/v1/models/test/infer", json={"instances": ["a"]}, headers={"version": "v2"}
    )
    assert same.json()["predictions"] == ["model-server-v2: a"]
    ready = platform.admin.get("/v1/models/test")
    assert ready.status_code == 200 and ready.json()["ready"] is True


def test_route_status_of_the_seed_documents(platform: Platform, seed_routes: None) -> None:
    listed = platform.admin.get("/routes").json()["routes"]
    names = {(r["metadata"]["namespace"], r["metadata"]["name"]) for r in listed}
    assert {("default", "test"), ("default", "query-param-routing")} <= names
    assert ("ml-models", "canary-deployment") in names
    canary = platform.admin.get("/routes/canary-deployment", params={"namespace": "ml-models"})
    assert canary.status_code == 200 and canary.json()["status"]["activeRoutes"] == 2
    assert platform.admin.get("/routes/canary-deployment").status_code == 404


def test_the_seed_documents_are_the_seeds() -> None:
    """The YAML above is the seed's, where the seed sits beside the repository."""
    here = Path(__file__).resolve()
    found = (next(p.glob("shared/seeds/003_*.txt"), None) for p in here.parents)
    seed = next((path for path in found if path is not None), None)
    if seed is None:
        pytest.skip("seed 003 is not beside this checkout")
    text = seed.read_text()
    assert QUERY_PARAMS.strip() in text and CANARY.strip() in text
    assert AB_TEST.strip().replace("name: test\n", "name: model-ab-test\n") in text
    for command in CURLS:
        assert command in text
