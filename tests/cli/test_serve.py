"""The first README command's core: ``openmaas serve --demo`` in a real process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.servers import free_port, wait_ready


def test_serve_with_demo_registers_the_demo_models(tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENMAAS_")}
    command = [
        sys.executable,
        "-m",
        "openmaas.cli",
        "serve",
        "--demo",
        "--port",
        str(port),
        "--data-dir",
        str(tmp_path),
    ]
    log = tmp_path / "serve.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            command, env=env, stdout=out, stderr=subprocess.STDOUT, text=True
        )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_ready(process, url, timeout=300)  # the demo loads its language models first
        key = (tmp_path / "demo-admin-key").read_text().strip()
        models = httpx.get(f"{url}/models", headers={"Authorization": f"Bearer {key}"}).json()
        names = {m["name"]: m for m in models["models"]}
        assert names["binary_classifier"]["latest_version"] == 1
        assert names["quadratic_predictor"]["latest_version"] == 1
        assert httpx.get(f"{url}/models").status_code == 401
        # The banner's commands work when copied as printed: no box drawn through them.
        output = log.read_text()
        commands = [
            line.strip() for line in output.splitlines() if line.strip().startswith("curl ")
        ]
        assert len(commands) == 2, output
        for command in commands:
            done = subprocess.run(
                ["bash", "-c", command], capture_output=True, text=True, timeout=60, check=True
            )
            answer = json.loads(done.stdout)
            assert "models" in answer or answer["prediction"] == pytest.approx(6.0, abs=0.1)
    finally:
        process.terminate()
        process.wait(timeout=30)
    output = log.read_text()
    assert not set(output) & set("│╭╮╰╯─"), output
    assert url in output and "/docs" in output and key in output
    dev_key = (tmp_path / "demo-dev1-key").read_text().strip()
    assert "dev1 / openshift" in output and dev_key in output


def test_several_workers_pool_their_metrics(tmp_path: Path) -> None:
    """Whichever worker answers the scrape, ``/metrics`` counts every worker's requests."""
    from openmaas.client import Client
    from tests.models import classifier

    port = free_port()
    admin_key = "om_serve_test_admin_key_0123456789"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENMAAS_", "PROMETHEUS_"))}
    env["OPENMAAS_ADMIN_KEY"] = admin_key
    command = [sys.executable, "-m", "openmaas.cli", "serve", "--no-demo", "--workers", "2"]
    command += ["--port", str(port), "--data-dir", str(tmp_path)]
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    url = f"http://127.0.0.1:{port}"
    headers = {"Authorization": f"Bearer {admin_key}"}
    try:
        wait_ready(process, url)
        deadline = time.monotonic() + 30
        with Client(url, admin_key) as client:
            client.register("pooled", classifier())
        deploy = {"model_name": "pooled", "endpoint_name": "pooled"}
        deployed = httpx.post(f"{url}/deployments/deploy", json=deploy, headers=headers, timeout=60)
        assert deployed.is_success, deployed.text
        body = {"model_name": "pooled", "input": [0.5, 0.8, 0.2]}
        sent = 0
        while sent < 40:  # a new connection each time, so both workers take some
            # Generous: the first request a worker serves may wait for its model to load.
            response = httpx.post(f"{url}/predict", json=body, headers=headers, timeout=60)
            if response.status_code == 404:  # the other worker has not synced yet
                assert time.monotonic() < deadline + 30
                time.sleep(0.1)
                continue
            assert response.status_code == 200, response.text
            sent += 1
        for _ in range(6):
            scrape = httpx.get(f"{url}/metrics", headers=headers, timeout=60).text
            counted = sum(
                float(line.rsplit(" ", 1)[1])
                for line in scrape.splitlines()
                if line.startswith("openmaas_inference_requests_total{")
                and 'model="pooled"' in line
            )
            assert counted == 40, scrape
        # A worker killed outright is replaced; its live gauges' files go, its counts stay.
        metrics_dir = tmp_path / "metrics"
        # The children are the two workers (with their files) and multiprocessing's tracker.
        workers = [
            pid
            for pid in _children(process.pid)
            if (metrics_dir / f"gauge_livesum_{pid}.db").exists()
        ]
        assert len(workers) == 2, sorted(p.name for p in metrics_dir.iterdir())
        victim = workers[0]
        os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + 60
        while (metrics_dir / f"gauge_livesum_{victim}.db").exists():
            assert time.monotonic() < deadline, sorted(p.name for p in metrics_dir.iterdir())
            time.sleep(0.5)
        scrape = httpx.get(f"{url}/metrics", headers=headers, timeout=60).text
        assert "openmaas_inference_requests_total" in scrape
    finally:
        process.terminate()
        output, _ = process.communicate(timeout=30)
    assert "Each of the 2 workers counts rate limits on its own" in output


def _children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(child) for child in (task / "children").read_text().split()]
    return found
