"""A Ray cluster on loopback for the ``ray`` test group, started once per session.

``ray start --head --block`` runs in the foreground: stopping that one process stops the
cluster it started (and nothing else on the machine, unlike ``ray stop``). Every port it
opens is chosen here, so that other clusters on the same machine are left alone.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from openmaas.app import create_app
from tests.conftest import ADMIN_KEY, make_settings
from tests.servers import ServerThread, free_port, unavailable

# Starting the cluster counts in the first test's time: more than the default on a busy
# machine.
pytestmark = [pytest.mark.ray, pytest.mark.timeout(900)]

# Ray reserves this many CPUs for its replicas: the machine is shared.
_CPUS = 2
_START_ATTEMPTS = 3


@dataclass
class RayPlatform:
    url: str
    address: str
    admin: httpx.Client
    anonymous: httpx.Client


def _ray_command() -> str | None:
    found = Path(sys.executable).with_name("ray")
    return str(found) if found.exists() else shutil.which("ray")


def _start_args(command: str, temp_dir: Path) -> tuple[list[str], str]:
    port = free_port()
    workers = random.randrange(20_000, 40_000, 100)
    args = [
        command,
        "start",
        "--head",
        "--block",
        f"--num-cpus={_CPUS}",
        "--node-ip-address=127.0.0.1",
        f"--port={port}",
        "--include-dashboard=false",
        "--disable-usage-stats",
        f"--temp-dir={temp_dir}",
        f"--node-manager-port={free_port()}",
        f"--object-manager-port={free_port()}",
        f"--ray-client-server-port={free_port()}",
        f"--dashboard-agent-listen-port={free_port()}",
        f"--dashboard-agent-grpc-port={free_port()}",
        f"--runtime-env-agent-port={free_port()}",
        f"--metrics-export-port={free_port()}",
        f"--min-worker-port={workers}",
        f"--max-worker-port={workers + 99}",
        "--object-store-memory=200000000",
    ]
    return args, f"127.0.0.1:{port}"


def _wait_for_cluster(process: subprocess.Popen[bytes], address: str, log: Path) -> str | None:
    """None once this process is connected to the cluster, else why it did not start."""
    import ray

    deadline = time.monotonic() + 180
    # ``ray start --block`` says so once its node has registered.
    while "Ray runtime started" not in log.read_text(errors="replace"):
        if process.poll() is not None:
            return "ray start exited"
        if time.monotonic() > deadline:
            return f"no cluster at {address} after 180 s"
        time.sleep(0.5)
    try:
        ray.init(
            address=address, namespace="openmaas", log_to_driver=False, configure_logging=False
        )
    except Exception as exc:
        ray.shutdown()
        return f"could not connect to {address}: {exc!r}"
    return None


def _stop(process: subprocess.Popen[bytes]) -> None:
    """Stop the ``ray start --block`` we started: it takes its cluster down with it."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=30)


@pytest.fixture(scope="session")
def ray_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The address of a fresh local cluster; this test process is connected to it."""
    try:
        import ray
        from ray import serve
    except ImportError as exc:
        unavailable("Ray", f"the ray extra is not installed: {exc}")
    command = _ray_command()
    if command is None:
        unavailable("Ray", "no ray command next to this Python")
    assert command is not None
    # The raylet gives its Python agents little time to register by default; on a busy
    # machine they take longer to import.
    env = {
        **os.environ,
        "RAY_USAGE_STATS_ENABLED": "0",
        "RAY_agent_register_timeout_ms": "120000",
    }
    process: subprocess.Popen[bytes] | None = None
    # Ray gives its node 30 s to register; on a loaded machine that can pass, so the
    # cluster gets a few tries (each with ports of its own) before the group gives up.
    for _ in range(_START_ATTEMPTS):
        temp_dir = tmp_path_factory.mktemp("ray")
        log = temp_dir / "start.log"
        args, address = _start_args(command, temp_dir)
        with log.open("wb") as output:
            process = subprocess.Popen(
                args, stdout=output, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )
        failure = _wait_for_cluster(process, address, log)
        if failure is None:
            break
        _stop(process)
        process = None
    if process is None:
        unavailable("Ray", f"{failure}: {log.read_text()[-2000:]}")
    assert process is not None
    try:
        yield address
    finally:
        try:
            if ray.is_initialized():
                serve.shutdown()
                ray.shutdown()
        finally:
            _stop(process)


@pytest.fixture(scope="session")
def ray_platform(
    ray_cluster: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RayPlatform]:
    """One gateway (SQLite) placing ``"engine": "ray"`` deployments on the cluster."""
    settings = make_settings(
        tmp_path_factory.mktemp("ray-platform"),
        "",
        ray_address=ray_cluster,
        ray_app_prefix=f"om-{os.getpid()}-",
    )
    server = ServerThread(create_app(settings))
    server.start()
    headers = {"Authorization": f"Bearer {ADMIN_KEY}"}
    try:
        with (
            httpx.Client(base_url=server.url, headers=headers, timeout=120) as admin,
            httpx.Client(base_url=server.url, timeout=60) as anonymous,
        ):
            yield RayPlatform(server.url, ray_cluster, admin, anonymous)
    finally:
        server.stop()
