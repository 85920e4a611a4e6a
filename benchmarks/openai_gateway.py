"""What a gateway adds on /v1/chat/completions: four targets side by side.

The backend called directly, the bare proxy (``bare_proxy.py``: the floor, FastAPI with
one pooled aiohttp session and a dictionary key check), OpenMaaS and LiteLLM Proxy, all
driven by the same wrk, in one run, in front of the same fast backend
(``fast_backend.py``). OpenMaaS runs with its full policy: an application key on a plan
with request and token limits (tokens reserved before the upstream call), and metering.
LiteLLM Proxy runs as its production guide recommends (a worker per core, verbose and
error logging off), without a database.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx

from benchmarks.loadgen import ADMIN_KEY, free_port, median_table, serve_openmaas, wait_ready, wrk

LITELLM_KEY = "sk-benchmark-master-key-0123456789abcdef"
BARE_KEY = "bare-proxy-benchmark-key"
# The production guide's settings that apply without a database: logging off.
LITELLM_CONFIG = """model_list:
  - model_name: echo
    litellm_params:
      model: openai/echo
      api_base: {backend}/v1
      api_key: sk-none
litellm_settings:
  set_verbose: false
  json_logs: true
general_settings:
  disable_error_logs: true
  disable_spend_logs: true
"""
HERE = Path(__file__).parent
BODY = {"model": "echo", "messages": [{"role": "user", "content": "Hello, how are you?"}]}
STREAM_BODY = {**BODY, "stream": True, "stream_options": {"include_usage": True}}


def start(command: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        command,
        env={**os.environ, **(env or {})},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def application_key(url: str, backend: str) -> str:
    """Register the backend as a model and give a developer an application key for it."""
    admin = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {ADMIN_KEY}"})
    endpoint = Path(tempfile.mkdtemp()) / "echo.openai.json"
    endpoint.write_text(json.dumps({"base_url": f"{backend}/v1", "model": "echo"}))
    admin.post("/models", json={"name": "echo", "task": "text-generation"}).raise_for_status()
    with endpoint.open("rb") as handle:
        admin.post(
            "/models/echo/versions", files={"artifact": (endpoint.name, handle)}
        ).raise_for_status()
    admin.post(
        "/deployments/deploy",
        json={"model_name": "echo", "endpoint_name": "echo", "max_concurrency": 1000},
    ).raise_for_status()
    plan = {
        "name": "bench",
        "requests_per_minute": 10_000_000,
        "tokens_per_minute": 1_000_000_000,
        "monthly_token_quota": 10**12,
    }
    admin.post("/plans", json=plan).raise_for_status()
    user = {"username": "bench", "email": "bench@example.org", "password": "benchmark pass"}
    admin.post("/admin/users", json=user).raise_for_status()
    developer = httpx.Client(base_url=url)
    login = developer.post("/auth/login", json={"username": "bench", "password": "benchmark pass"})
    developer.headers["X-CSRF-Token"] = login.raise_for_status().json()["csrf_token"]
    app = developer.post("/applications", json={"name": "bench", "plan": "bench"})
    key = developer.post(f"/applications/{app.raise_for_status().json()['id']}/keys", json={})
    return str(key.raise_for_status().json()["key"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--litellm", default=".peers/litellm/bin/litellm")
    parser.add_argument("--litellm-workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--seconds", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=3, help="runs per row; the median is kept")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="openmaas-gateway-"))
    ports = {name: free_port() for name in ("backend", "bare", "litellm")}
    backend = f"http://127.0.0.1:{ports['backend']}"
    processes = [start([sys.executable, str(HERE / "fast_backend.py"), str(ports["backend"])])]
    bare_proxy = [sys.executable, str(HERE / "bare_proxy.py"), str(ports["bare"])]
    processes.append(start([*bare_proxy, f"{backend}/v1", BARE_KEY]))
    config = work / "litellm.yaml"
    config.write_text(LITELLM_CONFIG.format(backend=backend))
    litellm_command = [args.litellm, "--config", str(config), "--port", str(ports["litellm"])]
    # Gunicorn: uvicorn's own supervisor kills workers that take over 5 s to start here.
    litellm_command += ["--num_workers", str(args.litellm_workers), "--run_gunicorn"]
    processes.append(
        start(
            litellm_command,
            # A master key, and no database: LiteLLM checks it without a key table.
            {
                "LITELLM_LOG": "ERROR",
                "LITELLM_MASTER_KEY": LITELLM_KEY,
                "LITELLM_LOCAL_MODEL_COST_MAP": "True",  # offline: no fetch at start
            },
        )
    )
    server, openmaas = serve_openmaas(work / "openmaas")
    processes.append(server)
    results: dict[tuple[str, int], list[dict[str, float]]] = {}
    try:
        litellm = f"http://127.0.0.1:{ports['litellm']}"
        wait_ready(f"{litellm}/health/liveliness", timeout=300)
        ready = httpx.post(
            f"{litellm}/v1/chat/completions",
            json=BODY,
            headers={"Authorization": f"Bearer {LITELLM_KEY}"},
            timeout=60,
        )
        ready.raise_for_status()
        key = application_key(openmaas, backend)
        bare = f"http://127.0.0.1:{ports['bare']}"
        wait_ready(f"{bare}/docs")
        targets = [
            ("direct", f"{backend}/v1/chat/completions", {}),
            ("bare proxy", f"{bare}/v1/chat/completions", {"Authorization": f"Bearer {BARE_KEY}"}),
            ("OpenMaaS", f"{openmaas}/v1/chat/completions", {"Authorization": f"Bearer {key}"}),
            (
                "LiteLLM Proxy",
                f"{litellm}/v1/chat/completions",
                {"Authorization": f"Bearer {LITELLM_KEY}"},
            ),
        ]
        for mode, body in (("plain", BODY), ("stream", STREAM_BODY)):
            for concurrency in (1, 32):
                # Rounds interleave the targets, so drifting background load hits them alike.
                for _ in range(args.rounds):
                    for name, url, headers in targets:
                        result = wrk(
                            url,
                            body,
                            concurrency=concurrency,
                            seconds=args.seconds,
                            headers=headers,
                        )
                        results.setdefault((f"{name}, {mode}", concurrency), []).append(result)
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=30)
    print(median_table(results, first="target, mode"))


if __name__ == "__main__":
    main()
