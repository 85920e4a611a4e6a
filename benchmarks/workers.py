"""Two worker processes against one, with the plan's limits shared in Redis.

Two OpenMaaS servers run side by side (``openmaas serve --workers 1`` and ``--workers
2``), both with ``OPENMAAS_REDIS_URL`` (limits counted in Redis, as several workers
need), each with a developer's application key on a plan with request and token limits
(``policy_cost.PLAN``). Rows: V2 inference on ``binary_classifier`` and
``/v1/chat/completions`` in front of the canned backend (``fast_backend.py``), at
concurrency 32 and 64. Rounds interleave the rows; each keeps its median round.

On a machine with few cores the load generator, Redis, the backend and the workers share
them: the table says what a second worker buys there, not what it buys on a server.

Run from the repository root: ``.venv/bin/python -m benchmarks.workers``.
"""

from __future__ import annotations

import argparse
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from benchmarks.loadgen import free_port, median_table, serve_openmaas, wrk
from benchmarks.policy_cost import CHAT, provision
from benchmarks.v2_sklearn import BODY
from openmaas.demo.training import train_binary_classifier

INFER = "/v2/models/binary_classifier/infer"
COMPLETIONS = "/v1/chat/completions"


def start(directory: Path, workers: int, redis_url: str) -> tuple[subprocess.Popen[bytes], str]:
    env = {
        "OPENMAAS_REDIS_URL": redis_url,
        # Counters of earlier runs must not count against this one.
        "OPENMAAS_REDIS_PREFIX": f"bench-{secrets.token_hex(4)}",
    }
    return serve_openmaas(directory, env, workers=workers)


def wait_all_workers(url: str, key: str, timeout: float = 120) -> None:
    """Until every worker knows the key and the models: new connections land on any."""
    headers = {"Authorization": f"Bearer {key}"}
    deadline = time.monotonic() + timeout
    streak = 0
    while streak < 40:
        if time.monotonic() > deadline:
            raise RuntimeError(f"the workers of {url} did not all learn the key")
        with httpx.Client(base_url=url, headers=headers, timeout=30) as fresh:
            ok = fresh.post(INFER, json=BODY).status_code == 200
            ok = ok and fresh.post(COMPLETIONS, json=CHAT).status_code == 200
        streak = streak + 1 if ok else 0
        if not ok:
            time.sleep(0.5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3, help="runs per row; the median is kept")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="openmaas-workers-"))
    model_file, _ = train_binary_classifier(work)
    backend_port = free_port()
    backend = subprocess.Popen(
        [sys.executable, str(Path(__file__).parent / "fast_backend.py"), str(backend_port)]
    )
    servers = {n: start(work / f"workers-{n}", n, args.redis_url) for n in (1, 2)}
    try:
        backend_url = f"http://127.0.0.1:{backend_port}"
        keys = {}
        for n, (_process, url) in servers.items():
            keys[n] = provision(url, model_file, backend_url)
            wait_all_workers(url, keys[n])
        results: dict[tuple[str, int], list[dict[str, float]]] = {}
        for concurrency in (32, 64):
            # Rounds interleave the rows, so drifting background load hits them alike.
            for _ in range(args.rounds):
                for what, path, body in (("V2", INFER, BODY), ("/v1 chat", COMPLETIONS, CHAT)):
                    for n, (_process, url) in servers.items():
                        result = wrk(
                            url + path,
                            body,
                            concurrency=concurrency,
                            seconds=args.seconds,
                            headers={"Authorization": f"Bearer {keys[n]}"},
                        )
                        row = f"{what}, {n} worker{'s' if n > 1 else ''}, limits in Redis"
                        results.setdefault((row, concurrency), []).append(result)
    finally:
        for process, _url in servers.values():
            process.terminate()
        for process, _url in servers.values():
            process.wait(timeout=60)
        backend.terminate()
        backend.wait(timeout=30)
    print(median_table(results, first="request, server"))


if __name__ == "__main__":
    main()
