"""Aliases moved on one worker reach every worker: ``openmaas serve --workers 2``."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.conftest import ADMIN_KEY
from tests.models import classifier
from tests.servers import free_port, wait_ready
from tests.serving.helpers import deploy, register_estimator

ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
ROW = [0.5, 0.8, 0.2]
# Long enough that both moves of a swap land between two syncs of the other worker.
SYNC_SECONDS = 3.0
NOT_YET = ("version_not_deployed", "model_not_deployed")


def _served_versions(url: str, model: str, alias: str, tries: int = 24) -> set[int | None]:
    """The versions ``model@alias`` answered with, each request on a new connection (so
    both workers answer some of them); None for a worker that does not know the alias yet."""
    seen: set[int | None] = set()
    for _ in range(tries):
        response = httpx.post(
            f"{url}/predict",
            json={"model_name": model, "version": alias, "input": ROW},
            headers=ADMIN,
            timeout=60,
        )
        if response.status_code == 404:
            # The model or its alias not known yet to a worker that has not synced.
            assert response.json()["code"] in NOT_YET, response.text
            seen.add(None)
            continue
        assert response.status_code == 200, response.text
        seen.add(int(response.json()["version"]))
    return seen


def _await_versions(url: str, model: str, wanted: dict[str, int]) -> None:
    deadline = time.monotonic() + 4 * SYNC_SECONDS + 10
    while True:
        served = {alias: _served_versions(url, model, alias) for alias in wanted}
        if all(served[alias] == {version} for alias, version in wanted.items()):
            return
        assert time.monotonic() < deadline, f"still served {served}, wanted {wanted}"
        time.sleep(0.5)


def test_an_alias_swap_reaches_every_worker(tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENMAAS_", "PROMETHEUS_"))}
    env.update(
        OPENMAAS_ADMIN_KEY=ADMIN_KEY,
        OPENMAAS_LOG_LEVEL="warning",
        OPENMAAS_SYNC_INTERVAL_S=str(SYNC_SECONDS),
    )
    command = [sys.executable, "-m", "openmaas.cli", "serve", "--no-demo", "--workers", "2"]
    command += ["--port", str(port), "--data-dir", str(tmp_path / "data")]
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(process, url, timeout=180)  # two workers start on a busy machine
        with httpx.Client(base_url=url, headers=ADMIN, timeout=60) as admin:
            model = "swapped"
            for seed in (0, 1):
                register_estimator(admin, model, classifier(seed=seed), tmp_path)
                deploy(admin, model, version=seed + 1, endpoint_name=f"{model}-v{seed + 1}")
            for alias, version in (("champion", 1), ("challenger", 2)):
                response = admin.put(f"/models/{model}/aliases/{alias}", json={"version": version})
                assert response.status_code == 200, response.text
            _await_versions(url, model, {"champion": 1, "challenger": 2})

            # One change: both aliases move between two syncs; the count of aliases and
            # the sum of their versions stay the same.
            for alias, version in (("champion", 2), ("challenger", 1)):
                response = admin.put(f"/models/{model}/aliases/{alias}", json={"version": version})
                assert response.status_code == 200, response.text
            _await_versions(url, model, {"champion": 2, "challenger": 1})
    finally:
        process.terminate()
        process.communicate(timeout=30)
