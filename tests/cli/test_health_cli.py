"""``openmaas health``: the container's health check, against a real server."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from openmaas.app import create_app
from tests.conftest import make_settings
from tests.servers import free_port, running


def _health(port: int, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENMAAS_")}
    env["OPENMAAS_PORT"] = str(port)
    command = [sys.executable, "-m", "openmaas.cli", "health", *args]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)


def test_health_answers_for_a_running_server_and_fails_without_one(tmp_path: Path) -> None:
    with running(create_app(make_settings(tmp_path))) as server:
        for args in ((), ("--ready",)):
            done = _health(server.port, *args)
            assert done.returncode == 0, done.stdout + done.stderr
            assert " 200 " in done.stdout
    gone = _health(free_port())
    assert gone.returncode == 1
    assert "ConnectError" in gone.stderr
