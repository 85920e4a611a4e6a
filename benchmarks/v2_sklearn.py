"""V2 inference on binary_classifier: OpenMaaS against its peers, side by side with wrk.

Four servers run at once, each serving the same scikit-learn model: MLServer and KServe's
Python ``ModelServer`` (each in its own virtual environment), the bare floor
(``bare_v2.py``: raw ASGI, orjson and ``predict``, no authentication or metrics), and
OpenMaaS with its policy (the admin key: authentication and metering), plain and with
dynamic batching. Rounds interleave every row, so background load that drifts hits all
of them alike; the table keeps each row's median round and the spread. The scale
figures (many models, deployments and a bounded cache) are ``benchmarks/scale.py``'s.

Run from the repository root: ``.venv/bin/python -m benchmarks.v2_sklearn``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx
import joblib
import skops.io as sio

from benchmarks.loadgen import ADMIN_KEY, free_port, median_table, serve_openmaas, wait_ready, wrk
from openmaas.client import Client
from openmaas.demo.training import train_binary_classifier

BODY = {"inputs": [{"name": "input", "shape": [1, 3], "datatype": "FP64", "data": [0.5, 0.8, 0.2]}]}
AUTH = {"Authorization": f"Bearer {ADMIN_KEY}"}
Row = tuple[str, int, str, dict[str, str]]  # name, concurrency, url, headers


def start_openmaas(directory: Path) -> tuple[subprocess.Popen, str]:
    return serve_openmaas(directory)


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


def start_script(python: str, script: str, model_file: Path) -> tuple[subprocess.Popen, str]:
    """A peer of ``benchmarks/`` run by its own interpreter: ``script PORT MODEL``."""
    port = free_port()
    command = [python, str(Path(__file__).parent / script), str(port), str(model_file)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    wait_ready(f"{url}/v2/models/binary_classifier/ready", timeout=180)
    return process, url


def provision(url: str, model_file: Path) -> None:
    """Register and deploy the model, plain and batched."""
    with Client(url, ADMIN_KEY) as client:
        client.register("binary_classifier", model_file, task="classification")
    with httpx.Client(base_url=url, headers=AUTH, timeout=60) as admin:
        deploy = {"model_name": "binary_classifier", "endpoint_name": "binary_classifier"}
        admin.post("/deployments/deploy", json=deploy).raise_for_status()
        batched = {**deploy, "endpoint_name": "clf_batched", "max_batch_size": 64, "max_wait_ms": 2}
        admin.post("/deployments/deploy", json=batched).raise_for_status()


def rows(peers: dict[str, str], url: str) -> list[Row]:
    infer = "/v2/models/{}/infer"
    plain, batched = infer.format("binary_classifier"), infer.format("clf_batched")
    table: list[Row] = []
    for concurrency in (1, 32):
        for name, peer_url in peers.items():
            table.append((name, concurrency, peer_url + plain, {}))
        table.append(("OpenMaaS", concurrency, url + plain, AUTH))
    table.append(("OpenMaaS, no batching", 64, url + plain, AUTH))
    table.append(("OpenMaaS, batching 64 rows / 2 ms", 64, url + batched, AUTH))
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mlserver", default=".peers/mlserver/bin/mlserver")
    parser.add_argument("--kserve-python", default=".peers/kserve/bin/python")
    parser.add_argument("--seconds", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=3, help="runs per row; the median is kept")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="openmaas-bench-"))
    skops_path, _ = train_binary_classifier(work)
    joblib_path = work / "model.joblib"
    joblib.dump(sio.load(skops_path), joblib_path)
    openmaas, url = start_openmaas(work / "openmaas")
    mlserver, ml_url = start_mlserver(args.mlserver, work / "mlserver", joblib_path)
    kserve, kserve_url = start_script(args.kserve_python, "kserve_server.py", joblib_path)
    bare, bare_url = start_script(sys.executable, "bare_v2.py", joblib_path)
    peers = {"MLServer": ml_url, "KServe ModelServer": kserve_url, "bare floor": bare_url}
    results: dict[tuple[str, int], list[dict[str, float]]] = {}
    try:
        provision(url, skops_path)
        for _ in range(args.rounds):
            for name, concurrency, target, headers in rows(peers, url):
                result = wrk(
                    target, BODY, concurrency=concurrency, seconds=args.seconds, headers=headers
                )
                results.setdefault((name, concurrency), []).append(result)
    finally:
        for process in (openmaas, mlserver, kserve, bare):
            process.terminate()
            process.wait(timeout=30)
    print(median_table(results))


if __name__ == "__main__":
    main()
