"""V2 inference on binary_classifier: OpenMaaS against MLServer, side by side with wrk."""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import joblib
import skops.io as sio

from openmaas.client import Client
from openmaas.demo.training import train_binary_classifier

ADMIN_KEY = "om_benchmark_admin_key"
BODY = {"inputs": [{"name": "input", "shape": [1, 3], "datatype": "FP64", "data": [0.5, 0.8, 0.2]}]}


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_ready(url: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"{url} did not become ready")


def wrk(url: str, concurrency: int, seconds: int, headers: dict[str, str]) -> dict[str, float]:
    script = Path(tempfile.mkdtemp()) / "post.lua"
    lines = ['wrk.method = "POST"', f"wrk.body = {json.dumps(json.dumps(BODY))}"]
    lines.append('wrk.headers["Content-Type"] = "application/json"')
    lines += [f'wrk.headers["{k}"] = "{v}"' for k, v in headers.items()]
    script.write_text("\n".join(lines) + "\n")
    command = [
        "wrk",
        "-t1",
        f"-c{concurrency}",
        f"-d{seconds}s",
        "--latency",
        "-s",
        str(script),
        url,
    ]
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    percentiles = {
        p: _ms(re.search(rf"\s{p}%\s+([\d.]+\w+)", output).group(1)) for p in ("50", "99")
    }
    return {
        "rps": rps,
        "p50": percentiles["50"],
        "p99": percentiles["99"],
        "errors": float(errors.group(1)) if errors else 0.0,
    }


def _ms(text: str) -> float:
    value, unit = re.match(r"([\d.]+)(\w+)", text).groups()
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def start_openmaas(directory: Path, workers: int) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {**os.environ, "OPENMAAS_ADMIN_KEY": ADMIN_KEY, "OPENMAAS_LOG_LEVEL": "warning"}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "openmaas.cli",
            "serve",
            "--no-demo",
            "--port",
            str(port),
            "--data-dir",
            str(directory),
            "--workers",
            str(workers),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    wait_ready(f"{url}/health/ready")
    return process, url


def start_mlserver(binary: str, directory: Path, model_file: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    model_dir = directory / "binary_classifier"
    model_dir.mkdir(parents=True)
    shutil.copy(model_file, model_dir / "model.joblib")
    (directory / "settings.json").write_text(
        # parallel_workers=0: inference in the server process, as OpenMaaS does it; MLServer's
        # worker pool also fails to start on this Python ("no current event loop").
        json.dumps(
            {
                "http_port": port,
                "grpc_port": free_port(),
                "metrics_port": free_port(),
                "parallel_workers": 0,
            }
        )
    )
    (model_dir / "model-settings.json").write_text(
        json.dumps(
            {
                "name": "binary_classifier",
                "implementation": "mlserver_sklearn.SKLearnModel",
                "parameters": {"uri": "./model.joblib", "version": "v1"},
            }
        )
    )
    process = subprocess.Popen(
        [binary, "start", str(directory)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    url = f"http://127.0.0.1:{port}"
    wait_ready(f"{url}/v2/models/binary_classifier/ready")
    return process, url


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mlserver", default="/tmp/peers/bin/mlserver")
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--registered", type=int, default=10_000)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="openmaas-bench-"))
    skops_path, _ = train_binary_classifier(work)
    joblib_path = work / "model.joblib"
    joblib.dump(sio.load(skops_path), joblib_path)
    rows: list[tuple[str, int, dict[str, float]]] = []
    auth = {"Authorization": f"Bearer {ADMIN_KEY}"}

    openmaas, url = start_openmaas(work / "openmaas", workers=1)
    mlserver, ml_url = start_mlserver(args.mlserver, work / "mlserver", joblib_path)
    try:
        with Client(url, ADMIN_KEY) as client:
            client.register("binary_classifier", skops_path, task="classification")
        deploy = {"model_name": "binary_classifier", "endpoint_name": "binary_classifier"}
        httpx.post(f"{url}/deployments/deploy", json=deploy, headers=auth).raise_for_status()
        batched = {**deploy, "endpoint_name": "clf_batched", "max_batch_size": 64, "max_wait_ms": 2}
        httpx.post(f"{url}/deployments/deploy", json=batched, headers=auth).raise_for_status()
        target = f"{url}/v2/models/binary_classifier/infer"
        ml_target = f"{ml_url}/v2/models/binary_classifier/infer"
        for concurrency in (1, 32):
            rows.append(("MLServer", concurrency, wrk(ml_target, concurrency, args.seconds, {})))
            rows.append(("OpenMaaS", concurrency, wrk(target, concurrency, args.seconds, auth)))
        rows.append(("OpenMaaS, no batching", 64, wrk(target, 64, args.seconds, auth)))
        batched_target = f"{url}/v2/models/clf_batched/infer"
        rows.append(("OpenMaaS, batching 64/2 ms", 64, wrk(batched_target, 64, args.seconds, auth)))
        with httpx.Client(base_url=url, headers=auth, timeout=30) as http:
            for index in range(args.registered - 1):
                http.post("/models", json={"name": f"filler{index}"}).raise_for_status()
        for concurrency in (1, 32):
            result = wrk(target, concurrency, args.seconds, auth)
            rows.append((f"OpenMaaS, {args.registered} models registered", concurrency, result))
    finally:
        for process in (openmaas, mlserver):
            process.terminate()
            process.wait(timeout=30)
    print("| server | concurrency | requests/s | p50 ms | p99 ms | errors |")
    print("|---|---|---|---|---|---|")
    for name, concurrency, result in rows:
        print(
            f"| {name} | {concurrency} | {result['rps']:.0f} | {result['p50']:.2f} | "
            f"{result['p99']:.2f} | {result['errors']:.0f} |"
        )


if __name__ == "__main__":
    main()
