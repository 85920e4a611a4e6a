"""The serving core under load: cache bounds, single loads, batching, draining, timeouts."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
from sklearn.linear_model import LinearRegression

from openmaas.app import create_app
from tests.conftest import ADMIN_KEY, make_settings
from tests.models import skops_file
from tests.servers import running
from tests.serving.helpers import deploy, register

SLOW_MODEL = """
import time


class Slow:
    def predict(self, x):
        time.sleep(float(x[0][0]))
        return x[:, 0]
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    # Room for three small models: far fewer than are deployed below.
    settings = make_settings(tmp_path_factory.mktemp("load"), model_cache_bytes=3 * 1024 * 1024 + 1)
    with running(create_app(settings)) as server:
        headers = {"Authorization": f"Bearer {ADMIN_KEY}"}
        with httpx.Client(base_url=server.url, headers=headers, timeout=60) as client:
            yield client


class PerThread:
    """An httpx client for each thread: one client's pool shared by many threads can close
    a connection under another thread's read."""

    def __init__(self, server: httpx.Client) -> None:
        self.server = server
        self.local = threading.local()
        self.clients: list[httpx.Client] = []

    def __call__(self) -> httpx.Client:
        client = getattr(self.local, "client", None)
        if client is None:
            server = self.server
            client = httpx.Client(base_url=str(server.base_url), headers=server.headers, timeout=60)
            self.local.client = client
            self.clients.append(client)
        return client

    def close(self) -> None:
        for client in self.clients:
            client.close()


def _linear(slope: float) -> LinearRegression:
    x = np.arange(10, dtype=float).reshape(-1, 1)
    return LinearRegression().fit(x, slope * x[:, 0])


def _metric(client: httpx.Client, name: str, model: str | None = None) -> float:
    total = 0.0
    for line in client.get("/metrics").text.splitlines():
        if line.startswith(name) and (model is None or f'model="{model}"' in line):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_a_thousand_deployments_in_a_small_cache(server: httpx.Client, tmp_path: Path) -> None:
    # 100 distinct model versions behind 1,000 endpoints; the cache holds three models.
    models, versions, copies = 50, 2, 10
    paths = {v: skops_file(tmp_path, _linear(v), f"slope{v}.skops") for v in range(1, versions + 1)}

    client = PerThread(server)

    def register_model(index: int) -> None:
        for version in range(1, versions + 1):
            register(client(), f"many{index}", paths[version])
            for copy in range(copies):
                endpoint = f"many{index}-v{version}-{copy}"
                deploy(
                    client(), f"many{index}", version=version, endpoint_name=endpoint, warm=False
                )

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(register_model, range(models)))
    active = server.get("/deployments", params={"status": "active"}).json()["deployments"]
    assert len([d for d in active if d["model_name"].startswith("many")]) == 1000

    def ask(job: tuple[int, int, int]) -> float:
        index, version, copy = job
        path = f"/predict/many{index}-v{version}-{copy}"
        response = client().post(path, json={"input": 2.0})
        assert response.status_code == 200, response.text
        return float(response.json()["prediction"]) / (2.0 * version)

    # Round-robin over the models so that least-recently-used eviction must happen.
    jobs = [(i, v, c) for c in range(copies) for i in range(models) for v in range(1, versions + 1)]
    with ThreadPoolExecutor(16) as pool:
        ratios = list(pool.map(ask, jobs))
    client.close()
    assert np.allclose(ratios, 1.0)
    assert _metric(server, "openmaas_loaded_models ") <= 3
    assert _metric(server, "openmaas_model_loads_total") >= models * versions
    assert _metric(server, "openmaas_model_evictions_total") >= models * versions - 3


def test_concurrent_first_requests_share_one_load(server: httpx.Client, tmp_path: Path) -> None:
    register(server, "single_load", skops_file(tmp_path, _linear(3.0)))
    deploy(server, "single_load", warm=False)
    client = PerThread(server)
    with ThreadPoolExecutor(20) as pool:
        answers = list(
            pool.map(
                lambda _: client().post("/predict/single_load-v1", json={"input": 1.0}), range(20)
            )
        )
    client.close()
    assert all(a.status_code == 200 for a in answers)
    assert _metric(server, "openmaas_model_loads_total", "single_load") == 1


def test_dynamic_batching_merges_concurrent_rows(server: httpx.Client, tmp_path: Path) -> None:
    register(server, "batched", skops_file(tmp_path, _linear(2.0)))
    deploy(server, "batched", max_batch_size=64, max_wait_ms=50)
    barrier = threading.Barrier(64)

    def call(value: int) -> float:
        with httpx.Client(base_url=str(server.base_url), headers=server.headers, timeout=60) as c:
            barrier.wait()
            response = c.post("/predict/batched-v1", json={"input": float(value)})
        assert response.status_code == 200, response.text
        return float(response.json()["prediction"])

    with ThreadPoolExecutor(64) as pool:
        results = list(pool.map(call, range(64)))
    assert np.allclose(results, [2.0 * v for v in range(64)])
    calls = _metric(server, "openmaas_batch_size_count", "batched")
    rows = _metric(server, "openmaas_batch_size_sum", "batched")
    assert rows == 64 and calls < 32, (calls, rows)


def test_timeout_gives_504_and_the_server_stays_up(server: httpx.Client, tmp_path: Path) -> None:
    slow = tmp_path / "slow.py"
    slow.write_text(SLOW_MODEL)
    register(server, "slow", slow, allow_code="true")
    deploy(server, "slow", timeout_s=0.3)
    response = server.post("/predict/slow-v1", json={"input": [[1.0]]})
    assert response.status_code == 504 and response.json()["code"] == "inference_timeout"
    assert server.post("/predict/slow-v1", json={"input": [[0.0]]}).status_code == 200


def test_deploy_and_undeploy_while_requests_run(server: httpx.Client, tmp_path: Path) -> None:
    register(server, "churn", skops_file(tmp_path, _linear(1.0)))
    deploy(server, "churn", endpoint_name="churn")
    statuses: list[int] = []
    stop = threading.Event()

    def hammer() -> None:
        with httpx.Client(base_url=str(server.base_url), headers=server.headers, timeout=10) as c:
            while not stop.is_set():
                statuses.append(c.post("/predict/churn", json={"input": 1.0}).status_code)

    threads = [threading.Thread(target=hammer) for _ in range(8)]
    for thread in threads:
        thread.start()
    try:
        for _ in range(10):
            time.sleep(0.05)
            assert server.post("/deployments/undeploy", json={"endpoint_name": "churn"}).is_success
            time.sleep(0.05)
            deploy(server, "churn", endpoint_name="churn")
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
    assert not any(thread.is_alive() for thread in threads), "a request hung"
    assert statuses and set(statuses) <= {200, 404}, set(statuses)
    assert 200 in statuses and 404 in statuses
    assert re.search(r"openmaas_loaded_models \d", server.get("/metrics").text)
