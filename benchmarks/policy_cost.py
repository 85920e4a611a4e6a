"""What the policy (authentication, limits, metering) costs on the inference path.

One V2 request on ``binary_classifier``, side by side with wrk, four ways:

* no policy: the same V2 handler and data plane, without admission or metering; served
  only by the application this script builds (the product has no such route);
* the admin key: authentication and metering, no limits;
* an application key on a plan with rate limits, counted in memory, metered;
* the same with the limits counted in Redis (``OPENMAAS_REDIS_URL``).

And one ``/v1/chat/completions`` in front of a canned backend (``fast_backend.py``) on a
plan with request and token limits (the prompt counted, a reservation taken and settled),
in memory and in Redis.

Run from the repository root: ``.venv/bin/python -m benchmarks.policy_cost``.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx
from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from benchmarks.loadgen import free_port, median_table, wait_ready, wrk
from benchmarks.v2_sklearn import ADMIN_KEY, BODY
from openmaas.api import v2
from openmaas.api.admission import Call
from openmaas.api.v2_codec import HEADER_LENGTH, parse_request
from openmaas.app import create_app
from openmaas.client import Client
from openmaas.demo.training import train_binary_classifier
from openmaas.platform import Platform
from openmaas.settings import Settings

BARE = "/bare/v2/models/"
PASSWORD = "benchmark password 1"
PLAN = {
    "requests_per_minute": 100_000_000,
    "requests_per_day": 1_000_000_000,
    # Token limits apply to /v1 only: V2 requests count against the request limits.
    "tokens_per_minute": 10**12,
    "output_tokens_per_day": 10**13,
}
CHAT = {"model": "echo", "messages": [{"role": "user", "content": "Say hello."}], "max_tokens": 16}


class WithoutPolicy:
    """``POST /bare/v2/models/{name}/infer``: V2 inference minus admission and metering.

    Mounted in front of the application, as the product's front door is, so neither request
    crosses FastAPI's middleware; only the policy (and the body size limit) differs.
    """

    def __init__(self, app: ASGIApp, *, platform: Platform) -> None:
        self.app = app
        self.platform = platform

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope["path"] if scope["type"] == "http" else ""
        if not path.startswith(BARE):
            await self.app(scope, receive, send)
            return
        name = path[len(BARE) :].split("/")[0]
        request = Request(scope, receive)
        parsed = parse_request(await request.body(), request.headers.get(HEADER_LENGTH))
        endpoint = self.platform.serving.table.resolve(name)
        response = await v2._run(self.platform, Call(name, "v2"), endpoint, parsed, name)
        await response(scope, receive, send)


def create_benchmark_app() -> ASGIApp:
    """Factory for uvicorn: the product's application, with the policy-free route in front
    of it, where the product's own front door sends inference requests."""
    app = create_app(Settings())
    return WithoutPolicy(app, platform=app.state.platform)


def start_server(directory: Path, redis_url: str | None) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {
        **os.environ,
        "OPENMAAS_ADMIN_KEY": ADMIN_KEY,
        "OPENMAAS_DATA_DIR": str(directory),
        "OPENMAAS_LOG_LEVEL": "warning",
        # Counters of earlier runs must not count against this one.
        "OPENMAAS_REDIS_PREFIX": f"bench-{secrets.token_hex(4)}",
    }
    if redis_url:
        env["OPENMAAS_REDIS_URL"] = redis_url
    command = [sys.executable, "-m", "uvicorn", "--factory", "--port", str(port)]
    command += ["--log-level", "warning", "--no-access-log"]
    command += ["benchmarks.policy_cost:create_benchmark_app"]
    process = subprocess.Popen(command, env=env, cwd=Path(__file__).resolve().parent.parent)
    url = f"http://127.0.0.1:{port}"
    wait_ready(f"{url}/health/ready")
    return process, url


def provision(url: str, model_file: Path, backend: str) -> str:
    """Deploy the models, and give a developer an application on a limited plan: its key."""
    auth = {"Authorization": f"Bearer {ADMIN_KEY}"}
    endpoint = model_file.parent / "echo.openai.json"
    endpoint.write_text(json.dumps({"base_url": f"{backend}/v1", "model": "echo"}))
    with Client(url, ADMIN_KEY) as client:
        client.register("binary_classifier", model_file, task="classification")
        client.register("echo", endpoint, task="text-generation")
    with httpx.Client(base_url=url, headers=auth, timeout=60) as admin:
        deploy = {"model_name": "binary_classifier", "endpoint_name": "binary_classifier"}
        admin.post("/deployments/deploy", json=deploy).raise_for_status()
        chat = {"model_name": "echo", "endpoint_name": "echo", "max_concurrency": 1000}
        admin.post("/deployments/deploy", json=chat).raise_for_status()
        admin.post("/plans", json={"name": "bench", "models": ["*"], **PLAN}).raise_for_status()
        user = {"username": "bench", "email": "bench@example.org", "password": PASSWORD}
        admin.post("/admin/users", json=user).raise_for_status()
    with httpx.Client(base_url=url, timeout=60) as developer:
        login = developer.post("/auth/login", json={"username": "bench", "password": PASSWORD})
        login.raise_for_status()
        developer.headers["X-CSRF-Token"] = login.json()["csrf_token"]
        app = developer.post("/applications", json={"name": "bench", "plan": "bench"})
        app.raise_for_status()
        key = developer.post(f"/applications/{app.json()['id']}/keys", json={})
        key.raise_for_status()
        return str(key.json()["key"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3, help="runs per row; the median is kept")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="openmaas-policy-"))
    model_file, _ = train_binary_classifier(work)
    backend_port = free_port()
    backend = subprocess.Popen(
        [sys.executable, str(Path(__file__).parent / "fast_backend.py"), str(backend_port)]
    )
    memory, memory_url = start_server(work / "memory", None)
    redis, redis_url = start_server(work / "redis", args.redis_url)
    try:
        backend_url = f"http://127.0.0.1:{backend_port}"
        memory_key = provision(memory_url, model_file, backend_url)
        redis_key = provision(redis_url, model_file, backend_url)
        infer = "/v2/models/binary_classifier/infer"
        chat = "/v1/chat/completions"
        variants = [
            ("no policy", memory_url + BARE + "binary_classifier/infer", None, BODY),
            ("admin key: authentication, metering", memory_url + infer, ADMIN_KEY, BODY),
            (
                "application key, plan limits in memory, metering",
                memory_url + infer,
                memory_key,
                BODY,
            ),
            (
                "application key, plan limits in Redis, metering",
                redis_url + infer,
                redis_key,
                BODY,
            ),
            ("/v1 chat, request and token limits in memory", memory_url + chat, memory_key, CHAT),
            ("/v1 chat, request and token limits in Redis", redis_url + chat, redis_key, CHAT),
        ]
        results: dict[tuple[str, int], list[dict[str, float]]] = {}
        for concurrency in (1, 32):
            # Rounds interleave the variants, so drifting background load hits them alike.
            for _ in range(args.rounds):
                for name, target, key, body in variants:
                    headers = {"Authorization": f"Bearer {key}"} if key else {}
                    result = wrk(
                        target, body, concurrency=concurrency, seconds=args.seconds, headers=headers
                    )
                    results.setdefault((name, concurrency), []).append(result)
    finally:
        for process in (memory, redis, backend):
            process.terminate()
            process.wait(timeout=30)
    print(median_table(results, first="request"))


if __name__ == "__main__":
    main()
