"""The first README command's core: ``openmaas serve --demo`` in a real process."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.servers import free_port


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
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 90
        while True:
            assert process.poll() is None, process.stdout.read() if process.stdout else ""
            try:
                if httpx.get(f"{url}/health/ready").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the server did not become ready"
            time.sleep(0.2)
        key = (tmp_path / "demo-admin-key").read_text().strip()
        models = httpx.get(f"{url}/models", headers={"Authorization": f"Bearer {key}"}).json()
        names = {m["name"]: m for m in models["models"]}
        assert names["binary_classifier"]["latest_version"] == 1
        assert names["quadratic_predictor"]["latest_version"] == 1
        assert httpx.get(f"{url}/models").status_code == 401
    finally:
        process.terminate()
        output, _ = process.communicate(timeout=30)
    assert url in output and "/docs" in output and key in output
    dev_key = (tmp_path / "demo-dev1-key").read_text().strip()
    assert "dev1 / openshift" in output and dev_key in output
