"""binary_classifier in the gateway's process, on Ray Serve through the gateway, and on
Ray Serve directly: side by side in one run, at concurrency 1 and 32.

A local Ray cluster (``ray start --head``, CPUs bounded by ``--cpus``) runs the replicas.
The rows driven by wrk over HTTP:

- OpenMaaS, ``engine: local``: ``/v2`` with the model in the gateway's process;
- OpenMaaS, ``engine: ray`` with one and with two replicas: the same ``/v2`` request,
  the gateway calling the replicas through a deployment handle;
- Ray Serve directly: its HTTP proxy in front of a replica of the same class (JSON).

Then the hop itself, from one Python process, both ways the gateway could call a replica:
a deployment handle (tensors pickled) and Ray Serve's HTTP proxy (JSON over HTTP), at
concurrency 1 and 32. The gateway uses whichever this measures faster.

Run from the repository root: ``.venv/bin/python -m benchmarks.ray_serve``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from benchmarks.loadgen import ADMIN_KEY, free_port, median_table, serve_openmaas, wrk
from openmaas.client import Client
from openmaas.demo.training import train_binary_classifier
from openmaas.runtimes import ArtifactSpec

AUTH = {"Authorization": f"Bearer {ADMIN_KEY}"}
ROW = [0.5, 0.8, 0.2]
V2_BODY = {"inputs": [{"name": "input", "shape": [1, 3], "datatype": "FP64", "data": ROW}]}
PROXY_BODY = {"inputs": {"input": [ROW]}}


def start_cluster(cpus: int, directory: Path) -> tuple[subprocess.Popen, str]:
    """A head node of our own: every port chosen here; stopping the process stops it."""
    ray = str(Path(sys.executable).with_name("ray"))
    port = free_port()
    workers = 30_000 + (os.getpid() % 100) * 100
    command = [ray, "start", "--head", "--block", f"--num-cpus={cpus}"]
    command += ["--node-ip-address=127.0.0.1", f"--port={port}", "--include-dashboard=false"]
    command += ["--disable-usage-stats", f"--temp-dir={directory}"]
    for option in (
        "node-manager-port",
        "object-manager-port",
        "ray-client-server-port",
        "dashboard-agent-listen-port",
        "dashboard-agent-grpc-port",
        "runtime-env-agent-port",
        "metrics-export-port",
    ):
        command.append(f"--{option}={free_port()}")
    command += [f"--min-worker-port={workers}", f"--max-worker-port={workers + 99}"]
    process = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    return process, f"127.0.0.1:{port}"


def connect(address: str, proxy_port: int) -> None:
    import ray
    from ray import serve

    deadline = time.monotonic() + 120
    while True:
        try:
            ray.init(address=address, namespace="openmaas", log_to_driver=False)
            break
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(1)
    serve.start(http_options={"host": "127.0.0.1", "port": proxy_port})


def deploy_direct(model_file: Path) -> Any:
    """The replica class the gateway deploys, as a Serve application of its own."""
    from ray import serve

    from openmaas.serving.ray_replica import ModelReplica

    deployment: Any = serve.deployment(ModelReplica)
    replica = deployment.options(name="model", num_replicas=1, ray_actor_options={"num_cpus": 0.5})
    app = replica.bind("sklearn", ArtifactSpec(path=model_file))
    return serve.run(app, name="bench-direct", route_prefix="/direct")


def start_openmaas(directory: Path, address: str) -> tuple[subprocess.Popen, str]:
    env = {"OPENMAAS_RAY_ADDRESS": address, "OPENMAAS_RAY_APP_PREFIX": "bench-"}
    return serve_openmaas(directory, env)


def provision(url: str, model_file: Path) -> None:
    with Client(url, ADMIN_KEY) as client:
        client.register("binary_classifier", model_file, task="classification")
    with httpx.Client(base_url=url, headers=AUTH, timeout=300) as admin:
        for name, placement in (
            ("clf_local", {}),
            ("clf_ray1", {"engine": "ray", "num_replicas": 1}),
            ("clf_ray2", {"engine": "ray", "num_replicas": 2}),
        ):
            body = {"model_name": "binary_classifier", "endpoint_name": name, **placement}
            admin.post("/deployments/deploy", json=body).raise_for_status()


async def _drive(call: Any, concurrency: int, seconds: float) -> dict[str, float]:
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            await call()
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    latencies.sort()
    return {
        "rps": len(latencies) / elapsed,
        "p50": latencies[len(latencies) // 2] * 1000,
        "p99": latencies[int(len(latencies) * 0.99)] * 1000,
        "errors": 0.0,
    }


def measure_hop(handle: Any, proxy_url: str, seconds: float) -> dict[tuple[str, int], Any]:
    """The same call to the same replica, by handle and through the HTTP proxy."""
    inputs = {"input": np.asarray([ROW])}

    async def run() -> dict[tuple[str, int], Any]:
        results: dict[tuple[str, int], Any] = {}
        async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=64)) as http:

            async def by_handle() -> None:
                state, _ = await handle.infer.remote(inputs, None)
                assert state == "ok"

            async def by_proxy() -> None:
                response = await http.post(proxy_url, json=PROXY_BODY)
                response.raise_for_status()

            for concurrency in (1, 32):
                for name, call in (("deployment handle", by_handle), ("HTTP proxy", by_proxy)):
                    await _drive(call, concurrency, 1.0)  # warm up
                    results[(name, concurrency)] = [await _drive(call, concurrency, seconds)]
        return results

    return asyncio.run(run())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cpus", type=int, default=2, help="CPUs the Ray cluster may use")
    parser.add_argument("--seconds", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=3, help="runs per row; the median is kept")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="openmaas-bench-ray-"))
    model_file, _ = train_binary_classifier(work)
    cluster, address = start_cluster(args.cpus, work / "ray")
    openmaas = None
    try:
        proxy_port = free_port()
        connect(address, proxy_port)
        handle = deploy_direct(model_file)
        proxy_url = f"http://127.0.0.1:{proxy_port}/direct"
        openmaas, url = start_openmaas(work / "openmaas", address)
        provision(url, model_file)
        rows = [
            ("OpenMaaS, local", url + "/v2/models/clf_local/infer", V2_BODY, AUTH),
            ("OpenMaaS, Ray 1 replica", url + "/v2/models/clf_ray1/infer", V2_BODY, AUTH),
            ("OpenMaaS, Ray 2 replicas", url + "/v2/models/clf_ray2/infer", V2_BODY, AUTH),
            ("Ray Serve HTTP proxy, 1 replica", proxy_url, PROXY_BODY, {}),
        ]
        results: dict[tuple[str, int], list[dict[str, float]]] = {}
        for _ in range(args.rounds):
            for concurrency in (1, 32):
                for name, target, body, headers in rows:
                    result = wrk(
                        target, body, concurrency=concurrency, seconds=args.seconds, headers=headers
                    )
                    results.setdefault((name, concurrency), []).append(result)
        print(median_table(results))
        print()
        print(
            median_table(measure_hop(handle, proxy_url, args.seconds), first="gateway to replica")
        )
    finally:
        if openmaas is not None:
            openmaas.terminate()
            openmaas.wait(timeout=30)
        import ray

        if ray.is_initialized():
            ray.shutdown()
        cluster.send_signal(signal.SIGTERM)
        cluster.wait(timeout=60)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
