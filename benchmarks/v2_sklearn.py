"""V2 inference on binary_classifier: OpenMaaS against MLServer, side by side with wrk.

Three servers run at once: MLServer serving the model, OpenMaaS serving it (plain and
with dynamic batching), and a second OpenMaaS with the model among 10,000 registered
ones. Rounds interleave every row, so background load that drifts hits all of them
alike; the table keeps each row's median round and the spread.

Run from the repository root: ``.venv/bin/python -m benchmarks.v2_sklearn``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx
import joblib
import skops.io as sio

from benchmarks.loadgen import free_port, median_table, wait_ready, wrk
from openmaas.client import Client
from openmaas.demo.training import train_binary_classifier

ADMIN_KEY = "om_benchmark_admin_key"
BODY = {"inputs": [{"name": "input", "shape": [1, 3], "datatype": "FP64", "data": [0.5, 0.8, 0.2]}]}
AUTH = {"Authorization": f"Bearer {ADMIN_KEY}"}
Row = tuple[str, int, str, dict[str, str]]  # name, concurrency, url, headers


def start_openmaas(directory: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {**os.environ, "OPENMAAS_ADMIN_KEY": ADMIN_KEY, "OPENMAAS_LOG_LEVEL": "warning"}
    command = [sys.executable, "-m", "openmaas.cli", "serve", "--no-demo"]
    command += ["--port", str(port), "--data-dir", str(directory)]
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    url = f"http://127.0.0.1:{port}"
    wait_ready(f"{url}/health/ready")
    return process, url


def start_mlserver(binary: str, directory: Path, model_file: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    model_dir = directory / "binary_classifier"
    model_dir.mkdir(parents=True)
    shutil.copy(model_file, model_dir / "model.joblib")
    # parallel_workers=0: inference in the server process, as OpenMaaS does it; MLServer's
    # worker pool also fails to start on this Python ("no current event loop").
    settings = {"http_port": port, "grpc_port": free_port(), "metrics_port": free_port()}
    (directory / "settings.json").write_text(json.dumps({**settings, "parallel_workers": 0}))
    model_settings = {
        "name": "binary_classifier",
        "implementation": "mlserver_sklearn.SKLearnModel",
        "parameters": {"uri": "./model.joblib", "version": "v1"},
    }
    (model_dir / "model-settings.json").write_text(json.dumps(model_settings))
    process = subprocess.Popen(
        [binary, "start", str(directory)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    url = f"http://127.0.0.1:{port}"
    wait_ready(f"{url}/v2/models/binary_classifier/ready")
    return process, url


def provision(url: str, model_file: Path, registered: int) -> None:
    """Register and deploy the model (also batched), among ``registered`` models in all."""
    with Client(url, ADMIN_KEY) as client:
        client.register("binary_classifier", model_file, task="classification")
    with httpx.Client(base_url=url, headers=AUTH, timeout=60) as admin:
        for index in range(registered - 1):
            admin.post("/models", json={"name": f"filler{index}"}).raise_for_status()
        deploy = {"model_name": "binary_classifier", "endpoint_name": "binary_classifier"}
        admin.post("/deployments/deploy", json=deploy).raise_for_status()
        batched = {**deploy, "endpoint_name": "clf_batched", "max_batch_size": 64, "max_wait_ms": 2}
        admin.post("/deployments/deploy", json=batched).raise_for_status()


def rows(ml_url: str, url: str, crowded_url: str, registered: int) -> list[Row]:
    infer = "/v2/models/{}/infer"
    plain, batched = infer.format("binary_classifier"), infer.format("clf_batched")
    table: list[Row] = []
    for concurrency in (1, 32):
        table.append(("MLServer", concurrency, ml_url + plain, {}))
        table.append(("OpenMaaS", concurrency, url + plain, AUTH))
    table.append(("OpenMaaS, no batching", 64, url + plain, AUTH))
    table.append(("OpenMaaS, batching 64 rows / 2 ms", 64, url + batched, AUTH))
    for concurrency in (1, 32):
        name = f"OpenMaaS, {registered:,} models registered"
        table.append((name, concurrency, crowded_url + plain, AUTH))
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mlserver", default="/tmp/peers/bin/mlserver")
    parser.add_argument("--seconds", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=3, help="runs per row; the median is kept")
    parser.add_argument("--registered", type=int, default=10_000)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="openmaas-bench-"))
    skops_path, _ = train_binary_classifier(work)
    joblib_path = work / "model.joblib"
    joblib.dump(sio.load(skops_path), joblib_path)
    openmaas, url = start_openmaas(work / "openmaas")
    crowded, crowded_url = start_openmaas(work / "crowded")
    mlserver, ml_url = start_mlserver(args.mlserver, work / "mlserver", joblib_path)
    results: dict[tuple[str, int], list[dict[str, float]]] = {}
    try:
        provision(url, skops_path, 1)
        provision(crowded_url, skops_path, args.registered)
        for _ in range(args.rounds):
            for name, concurrency, target, headers in rows(
                ml_url, url, crowded_url, args.registered
            ):
                result = wrk(
                    target, BODY, concurrency=concurrency, seconds=args.seconds, headers=headers
                )
                results.setdefault((name, concurrency), []).append(result)
    finally:
        for process in (openmaas, crowded, mlserver):
            process.terminate()
            process.wait(timeout=30)
    print(median_table(results))


if __name__ == "__main__":
    main()
